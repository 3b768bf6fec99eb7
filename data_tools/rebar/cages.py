"""Parametric rebar cages, one generator per element type.

Each ``make_<element>(rng, params=None) -> Scene`` builds bars (role main or tie) and
background context; ``<Element>Params.sample_params(rng)`` draws parameters inside the
rules of ``data_tools.rebar.rules``, and ``validate()`` rejects hand-made ones outside.

Coordinates: metres, z up, ground at z = 0. Columns stand on the ground centred on the
z axis; beams run along +x; walls along +x with their thickness in y; slabs and footings
lie in the xy plane. ``Scene.params`` holds the parameters plus ``bounds`` (the concrete
outline, for cover checks) and ``axis`` (the direction ties are wrapped around).

Labelling rule for grids (walls, slabs, footing mats): both directions of a grid carry
load, so every grid bar is **main** (1). The wire twists at crossings are not modelled
(a few millimetres of wire; they would be noise at any useful density). Wall links
(S-shaped crossties holding the two layers together) and column ties on footing starter
bars are real transverse reinforcement and are **tie** (2); slabs have no ties.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from data_tools.rebar import context as ctx
from data_tools.rebar.geometry import Path, box_mesh, circular_hoop, crosstie, helix, rect_tie
from data_tools.rebar.model import Bar, Scene, Solid
from data_tools.rebar.rules import (
    COLUMN_BAR_MM,
    MAX_CLEAR_TO_HELD,
    METRIC_MM,
    bend_radius,
    max_tie_spacing,
    min_column_clear,
    min_tie_mm,
    mm,
    tie_choices,
)

__all__ = ["ELEMENTS", "BeamParams", "CircularColumnParams", "ColumnParams", "FootingParams",
           "SlabParams", "WallParams", "make_beam", "make_circular_column", "make_column",
           "make_footing", "make_scene", "make_slab", "make_wall"]


def _r3(x: float) -> float:
    return round(float(x), 3)  # millimetre parameters: readable manifests, exact replays


def _spacing(rng: np.random.Generator, lo: float, hi: float, step: float = 0.025) -> float:
    """A spacing in [lo, hi] on a `step` grid (sites set out in 25 mm steps)."""
    k = rng.integers(int(np.ceil(lo / step - 1e-9)), int(np.floor(hi / step + 1e-9)) + 1)
    return _r3(k * step)


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ValueError(msg)


def _check_mm(*ds: int) -> None:
    for d in ds:
        _check(d in METRIC_MM, f"bar diameter {d} mm is not metric {METRIC_MM}")


def _steel(rng: np.random.Generator) -> str:
    return "rusty_steel" if rng.random() < 0.8 else "steel"


def _straight(p0, p1) -> np.ndarray:
    return np.array([p0, p1], dtype=float)


def _place_crosstie(p0, p1, z: float, d: float) -> np.ndarray:
    """Crosstie in the plane z hooking round bars whose centres (x, y) are p0 and p1."""
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    dirn = (p1 - p0) / np.linalg.norm(p1 - p0)
    c, s = dirn[1], -dirn[0]  # rotation taking local +y onto dirn
    rot = np.array([[c, -s], [s, c]])
    local = crosstie(float(np.linalg.norm(p1 - p0)), d)
    xy = local[:, :2] @ rot.T
    # local bend centre (-r, 0) must land on the held bar p0
    xy += p0 - rot @ np.array([-bend_radius(d), 0.0])
    return np.column_stack([xy, np.full(len(xy), z)])


def _face_positions(extent: float, n: int) -> np.ndarray:
    return np.linspace(-extent, extent, n)


def held_along_face(n: int, pitch: float, d_long: float) -> list[bool]:
    """Which of n bars along one face a tie corner or crosstie holds (ACI 25.7.2.3).

    Corners are held; an intermediate bar may go unheld only if its neighbour before it
    is held (alternate bars) and it lies within 150 mm clear of that held bar.
    """
    held = [True] + [False] * (n - 2) + [True] if n >= 2 else [True] * n
    for i in range(1, n - 1):
        if not held[i - 1] or pitch - d_long > MAX_CLEAR_TO_HELD:
            held[i] = True
    return held


# ----------------------------------------------------------------------------- column


@dataclass
class ColumnParams:
    width: float = 0.40  # x, outer concrete size
    depth: float = 0.40  # y
    height: float = 2.50
    cover: float = 0.040  # to the tie's outer surface
    d_long_mm: int = 20
    d_tie_mm: int = 10
    bars_x: int = 3  # bars on each face parallel to x, corners included
    bars_y: int = 3
    tie_spacing: float = 0.25

    @classmethod
    def sample_params(cls, rng: np.random.Generator) -> ColumnParams:
        width = _r3(rng.integers(6, 17) * 0.05)  # 300-800 mm
        depth = width if rng.random() < 0.5 else _r3(rng.integers(6, 17) * 0.05)
        d_long = int(rng.choice(COLUMN_BAR_MM))
        d_tie = int(rng.choice(tie_choices(d_long)))
        cover = _r3(rng.integers(5, 11) * 0.005)  # 25-50 mm
        p = cls(width, depth, _r3(rng.uniform(1.5, 3.0)), cover, d_long, d_tie, 2, 2, 0.1)
        p.bars_x = int(rng.choice(_bar_counts(p.width, p)))
        p.bars_y = int(rng.choice(_bar_counts(p.depth, p)))
        smax = max_tie_spacing(mm(d_long), mm(d_tie), min(width, depth))
        p.tie_spacing = _spacing(rng, 0.10, min(smax, 0.30))
        return p

    def bar_extent(self, size: float) -> float:
        """Half the centre-to-centre span of the corner bars across `size`."""
        return size / 2 - self.cover - mm(self.d_tie_mm) - mm(self.d_long_mm) / 2

    def validate(self) -> None:
        _check_mm(self.d_long_mm, self.d_tie_mm)
        _check(self.d_tie_mm >= min_tie_mm(self.d_long_mm), "tie too thin for the bars")
        _check(0.025 <= self.cover <= 0.050 + 1e-9, f"cover {self.cover} outside 25-50 mm")
        smax = max_tie_spacing(mm(self.d_long_mm), mm(self.d_tie_mm), min(self.width, self.depth))
        _check(self.tie_spacing <= smax + 1e-9, f"tie spacing {self.tie_spacing} > {smax:.3f}")
        for size, n in ((self.width, self.bars_x), (self.depth, self.bars_y)):
            _check(n in _bar_counts(size, self), f"{n} bars do not fit a {size} m face")


def _bar_counts(size: float, p) -> list[int]:
    """Bar counts per face whose pitch keeps clear spacing >= max(40 mm, 1.5 d) and the
    centre spacing <= 300 mm."""
    d = mm(p.d_long_mm)
    span = 2 * (size / 2 - p.cover - mm(p.d_tie_mm) - d / 2)
    ok = [n for n in range(2, 12) if span / (n - 1) - d >= min_column_clear(d) - 1e-9
          and span / (n - 1) <= 0.300 + 1e-9]
    return ok or [2]


def _tie_levels(z0: float, z1: float, s: float) -> np.ndarray:
    """First tie s/2 above the base (ACI 25.7.2.4), then every s, none past the top."""
    return np.arange(z0 + s / 2, z1 - 0.02, s)


def column_bars(p: ColumnParams, material: str = "rusty_steel", z0: float = 0.0) -> list[Bar]:
    d, dt = mm(p.d_long_mm), mm(p.d_tie_mm)
    ex, ey = p.bar_extent(p.width), p.bar_extent(p.depth)
    xs, ys = _face_positions(ex, p.bars_x), _face_positions(ey, p.bars_y)
    held_x = held_along_face(p.bars_x, xs[1] - xs[0], d)
    held_y = held_along_face(p.bars_y, ys[1] - ys[0], d)
    ring = [(x, y) for y in (-ey, ey) for x in xs] + [(x, y) for x in (-ex, ex) for y in ys[1:-1]]
    bars = [Bar(_straight((x, y, z0), (x, y, z0 + p.height)), d / 2, "main", material, "longitudinal")
            for x, y in ring]
    loop = rect_tie(p.width - 2 * p.cover - dt, p.depth - 2 * p.cover - dt, dt)
    flipped = loop * (-1, -1, 1)  # hooks alternate between opposite corners, as on site
    # Crossties sit just above their (rising) tie and each other so no two bars intersect.
    cross = [_place_crosstie((xs[i], -ey), (xs[i], ey), 2.5 * dt, dt)
             for i in np.flatnonzero(held_x[1:-1]) + 1]
    cross += [_place_crosstie((ex, ys[j]), (-ex, ys[j]), 3.5 * dt, dt)
              for j in np.flatnonzero(held_y[1:-1]) + 1]
    for k, z in enumerate(_tie_levels(z0, z0 + p.height, p.tie_spacing)):
        bars.append(Bar((flipped if k % 2 else loop) + (0, 0, z), dt / 2, "tie", material, "tie"))
        bars += [Bar(c + (0, 0, z), dt / 2, "tie", material, "crosstie") for c in cross]
    return bars


def _site(rng: np.random.Generator, lo, hi, margin: float, z: float = 0.0,
          materials=("concrete", "soil", "gravel")) -> list[Solid]:
    """Ground around the element footprint plus boards and pipes lying on it."""
    lo_s, hi_s = np.asarray(lo[:2]) - margin, np.asarray(hi[:2]) + margin
    out = [ctx.ground(rng, lo_s, hi_s, z, materials)]
    out += ctx.distractors(rng, lo_s, hi_s, np.asarray(lo[:2]) - 0.05, np.asarray(hi[:2]) + 0.05, z)
    return out


def _column_context(rng: np.random.Generator, p, half_x: float, half_y: float,
                    z0: float = 0.0, ground: bool = True) -> list[Solid]:
    lo, hi = (-half_x, -half_y, z0), (half_x, half_y, z0 + p.height)
    out = _site(rng, lo, hi, rng.uniform(0.3, 0.6), z0) if ground else []
    if rng.random() < 0.6:  # one formwork panel standing off one face, ready to close
        side = int(rng.integers(4))
        gap, h = rng.uniform(0.05, 0.25), p.height * rng.uniform(0.5, 1.0)
        w = (2 * half_x if side < 2 else 2 * half_y) + 0.1
        out.append(_side_panel(side, half_x, half_y, gap, w, z0, h, 0.018))
    for z in _tie_levels(z0, z0 + p.height, p.tie_spacing)[:: int(rng.integers(2, 4))]:
        out.append(ctx.wheel_spacer((half_x - p.cover / 2 - 0.004, 0.0, z), (1, 0, 0), p.cover / 2))
    return out


def _side_panel(side: int, hx: float, hy: float, gap: float, w: float, z0: float, h: float,
                t: float) -> Solid:
    """Panel parallel to face `side` (0 -y, 1 +y, 2 -x, 3 +x) standing `gap` off it."""
    if side < 2:
        y = (-1 if side == 0 else 1) * (hy + gap)
        lo, hi = (-w / 2, min(y, y + np.sign(y) * t), z0), (w / 2, max(y, y + np.sign(y) * t), z0 + h)
    else:
        x = (-1 if side == 2 else 1) * (hx + gap)
        lo, hi = (min(x, x + np.sign(x) * t), -w / 2, z0), (max(x, x + np.sign(x) * t), w / 2, z0 + h)
    return ctx.formwork_panel(lo, hi, "plywood")


def make_column(rng: np.random.Generator, params: ColumnParams | None = None) -> Scene:
    p = params or ColumnParams.sample_params(rng)
    p.validate()
    bars = column_bars(p, _steel(rng))
    context = _column_context(rng, p, p.width / 2, p.depth / 2)
    bounds = [[-p.width / 2, -p.depth / 2, 0.0], [p.width / 2, p.depth / 2, p.height]]
    return Scene(bars, context, "column", {**asdict(p), "bounds": bounds, "axis": 2})


# ----------------------------------------------------------------------------- circular column


@dataclass
class CircularColumnParams:
    diameter: float = 0.50
    height: float = 2.50
    cover: float = 0.040
    d_long_mm: int = 20
    n_bars: int = 8
    d_tie_mm: int = 10
    spiral: bool = True
    tie_spacing: float = 0.075  # spiral pitch, or hoop spacing

    @classmethod
    def sample_params(cls, rng: np.random.Generator) -> CircularColumnParams:
        d_long = int(rng.choice(COLUMN_BAR_MM))
        p = cls(_r3(rng.integers(6, 17) * 0.05), _r3(rng.uniform(1.5, 3.0)),
                _r3(rng.integers(5, 11) * 0.005), d_long, 6, int(rng.choice(tie_choices(d_long))),
                bool(rng.random() < 0.5), 0.1)
        p.n_bars = int(rng.choice(_ring_counts(p)))
        dt = mm(p.d_tie_mm)
        if p.spiral:  # ACI 25.7.3.1: clear pitch 25-75 mm
            p.tie_spacing = _r3(dt + rng.uniform(0.025, 0.075))
        else:
            smax = max_tie_spacing(mm(d_long), dt, p.diameter)
            p.tie_spacing = _spacing(rng, 0.10, min(smax, 0.30))
        return p

    def bar_radius(self) -> float:
        return self.diameter / 2 - self.cover - mm(self.d_tie_mm) - mm(self.d_long_mm) / 2

    def validate(self) -> None:
        _check_mm(self.d_long_mm, self.d_tie_mm)
        _check(self.d_tie_mm >= min_tie_mm(self.d_long_mm), "tie too thin for the bars")
        _check(0.025 <= self.cover <= 0.050 + 1e-9, f"cover {self.cover} outside 25-50 mm")
        _check(self.n_bars in _ring_counts(self), f"{self.n_bars} bars do not fit the circle")
        smax = max_tie_spacing(mm(self.d_long_mm), mm(self.d_tie_mm), self.diameter)
        _check(self.tie_spacing <= smax + 1e-9, f"tie spacing {self.tie_spacing} > {smax:.3f}")


def _ring_counts(p: CircularColumnParams) -> list[int]:
    """At least 6 bars in a circle (ACI 10.7.3.1), clear >= max(40 mm, 1.5 d), pitch <= 300 mm."""
    d, r = mm(p.d_long_mm), p.bar_radius()
    ok = [n for n in range(6, 25) if 2 * r * np.sin(np.pi / n) - d >= min_column_clear(d) - 1e-9
          and 2 * r * np.sin(np.pi / n) <= 0.300]
    return ok or [6]


def make_circular_column(rng: np.random.Generator,
                         params: CircularColumnParams | None = None) -> Scene:
    p = params or CircularColumnParams.sample_params(rng)
    p.validate()
    steel, d, dt = _steel(rng), mm(p.d_long_mm), mm(p.d_tie_mm)
    rb, rt = p.bar_radius(), p.diameter / 2 - p.cover - dt / 2
    ang = 2 * np.pi * np.arange(p.n_bars) / p.n_bars
    bars = [Bar(_straight((rb * np.cos(a), rb * np.sin(a), 0), (rb * np.cos(a), rb * np.sin(a), p.height)),
                d / 2, "main", steel, "longitudinal") for a in ang]
    if p.spiral:
        pts = helix(rt, p.tie_spacing, 0.05, p.height - 0.05, flat_turns=1.5)
        bars.append(Bar(pts, dt / 2, "tie", steel, "spiral"))
    else:
        for k, z in enumerate(_tie_levels(0.0, p.height, p.tie_spacing)):
            loop = circular_hoop(rt, dt)
            a = k * 2.4  # turn each hoop so the laps do not line up on one side
            rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
            loop[:, :2] = loop[:, :2] @ rot.T
            bars.append(Bar(loop + (0, 0, z), dt / 2, "tie", steel, "hoop"))
    p_ctx = ColumnParams(p.diameter, p.diameter, p.height, p.cover, tie_spacing=p.tie_spacing * 3)
    context = _column_context(rng, p_ctx, p.diameter / 2, p.diameter / 2)
    bounds = [[-p.diameter / 2, -p.diameter / 2, 0.0], [p.diameter / 2, p.diameter / 2, p.height]]
    return Scene(bars, context, "circular_column", {**asdict(p), "bounds": bounds, "axis": 2})


# ----------------------------------------------------------------------------- beam


@dataclass
class BeamParams:
    width: float = 0.30  # y
    depth: float = 0.50  # z
    length: float = 3.0  # x
    cover: float = 0.035
    d_bottom_mm: int = 20
    n_bottom: int = 3
    d_top_mm: int = 16
    n_top: int = 2
    d_stirrup_mm: int = 10
    stirrup_spacing: float = 0.20

    @classmethod
    def sample_params(cls, rng: np.random.Generator) -> BeamParams:
        d_bot = int(rng.choice((16, 20, 25, 32)))
        d_top = int(rng.choice([d for d in (12, 16, 20, 25) if d <= d_bot]))
        p = cls(_r3(rng.integers(5, 9) * 0.05), _r3(rng.integers(8, 17) * 0.05),
                _r3(rng.uniform(2.0, 4.0)), _r3(rng.integers(5, 11) * 0.005), d_bot, 2, d_top, 2,
                int(rng.choice(tie_choices(d_bot))), 0.1)
        p.n_bottom = int(rng.choice(_beam_counts(p, p.d_bottom_mm)))
        p.n_top = int(rng.choice(_beam_counts(p, p.d_top_mm)[:3]))
        p.stirrup_spacing = _spacing(rng, 0.10, p.max_spacing())
        return p

    def max_spacing(self) -> float:
        """min(d/2 (ACI 9.7.6.2.2), 16 d_long, 48 d_stirrup, width); d = effective depth."""
        d_eff = self.depth - self.cover - mm(self.d_stirrup_mm) - mm(self.d_bottom_mm) / 2
        d_min = mm(min(self.d_bottom_mm, self.d_top_mm))
        return min(d_eff / 2, max_tie_spacing(d_min, mm(self.d_stirrup_mm), self.width), 0.30)

    def validate(self) -> None:
        _check_mm(self.d_bottom_mm, self.d_top_mm, self.d_stirrup_mm)
        _check(self.d_stirrup_mm >= min_tie_mm(max(self.d_bottom_mm, self.d_top_mm)),
               "stirrup too thin for the bars")
        _check(0.025 <= self.cover <= 0.050 + 1e-9, f"cover {self.cover} outside 25-50 mm")
        _check(self.stirrup_spacing <= self.max_spacing() + 1e-9, "stirrup spacing too large")
        _check(self.n_bottom in _beam_counts(self, self.d_bottom_mm), "bottom bars do not fit")
        _check(self.n_top in _beam_counts(self, self.d_top_mm), "top bars do not fit")


def _beam_counts(p: BeamParams, d_mm: int) -> list[int]:
    """Bars in one layer with clear spacing >= max(25 mm, d) (ACI 25.2.1)."""
    d = mm(d_mm)
    span = p.width - 2 * (p.cover + mm(p.d_stirrup_mm)) - d
    return [n for n in range(2, 8) if span / (n - 1) - d >= max(0.025, d) - 1e-9] or [2]


def make_beam(rng: np.random.Generator, params: BeamParams | None = None) -> Scene:
    p = params or BeamParams.sample_params(rng)
    p.validate()
    steel, dt = _steel(rng), mm(p.d_stirrup_mm)
    z0 = _r3(rng.uniform(0.05, 0.12))  # cage on timber bearers, off the ground
    bars = []
    for n, d_mm, top in ((p.n_bottom, p.d_bottom_mm, False), (p.n_top, p.d_top_mm, True)):
        d = mm(d_mm)
        e = p.width / 2 - p.cover - dt - d / 2
        z = z0 + (p.depth - p.cover - dt - d / 2 if top else p.cover + dt + d / 2)
        bars += [Bar(_straight((0, y, z), (p.length, y, z)), d / 2, "main", steel,
                     "top" if top else "bottom") for y in _face_positions(e, n)]
    wc, hc = p.width - 2 * p.cover - dt, p.depth - 2 * p.cover - dt
    for k, x in enumerate(np.arange(0.05, p.length - 0.02, p.stirrup_spacing)):
        loop = rect_tie(wc, hc, dt)  # local u -> y, v -> -z (hooks at a top corner), w -> x
        u = loop[:, 0] * (-1 if k % 2 else 1)
        pts = np.column_stack([x + loop[:, 2], u, z0 + p.depth / 2 - loop[:, 1]])
        bars.append(Bar(pts, dt / 2, "tie", steel, "stirrup"))
    lo, hi = (0.0, -p.width / 2, z0), (p.length, p.width / 2, z0 + p.depth)
    context = _site(rng, lo, hi, rng.uniform(0.1, 0.3))
    for x in np.linspace(0.3, p.length - 0.3, int(rng.integers(2, 4))):  # bearers under the cage
        v_lo, v_hi = (x - 0.05, -p.width / 2 - 0.15, 0.0), (x + 0.05, p.width / 2 + 0.15, z0)
        context.append(Solid(*box_mesh(v_lo, v_hi), "timber_formwork", "board"))
    for x in np.arange(0.4, p.length, 1.0):  # spacer blocks under the bottom of the stirrups
        context.append(ctx.spacer_block((x, 0.0), z0, p.cover, 0.04))
    if rng.random() < 0.5:
        side = int(rng.integers(2))
        y = (p.width / 2 + rng.uniform(0.05, 0.2)) * (1 if side else -1)
        context.append(ctx.formwork_panel((0.0, min(y, y + 0.018 * np.sign(y)), 0.0),
                                          (p.length, max(y, y + 0.018 * np.sign(y)), z0 + p.depth)))
    return Scene(bars, context, "beam", {**asdict(p), "bounds": [list(lo), list(hi)], "axis": 0,
                                          "z0": z0})


# ----------------------------------------------------------------------------- wall


@dataclass
class WallParams:
    length: float = 3.0  # x
    height: float = 2.5  # z
    thickness: float = 0.20  # y
    cover: float = 0.030
    d_vert_mm: int = 12
    d_horz_mm: int = 10
    s_vert: float = 0.20
    s_horz: float = 0.20
    links: bool = True  # S-links through the wall every other crossing each way

    @classmethod
    def sample_params(cls, rng: np.random.Generator) -> WallParams:
        d_v = int(rng.choice((10, 12, 16)))
        return cls(_r3(rng.uniform(1.5, 3.5)), _r3(rng.uniform(1.5, 3.0)),
                   _r3(rng.integers(3, 7) * 0.05), _r3(rng.integers(5, 11) * 0.005),
                   d_v, int(rng.choice([d for d in (8, 10, 12) if d <= d_v])),
                   _spacing(rng, 0.10, 0.30), _spacing(rng, 0.10, 0.30), bool(rng.random() < 0.6))

    def validate(self) -> None:
        _check_mm(self.d_vert_mm, self.d_horz_mm)
        _check(0.025 <= self.cover <= 0.050 + 1e-9, f"cover {self.cover} outside 25-50 mm")
        for s in (self.s_vert, self.s_horz):
            _check(0.10 - 1e-9 <= s <= 0.30 + 1e-9, f"grid spacing {s} outside 100-300 mm")


def _grid_positions(lo: float, hi: float, s: float) -> np.ndarray:
    """Bars at exact spacing s, centred in [lo, hi] (the leftover split at both edges)."""
    n = int(np.floor((hi - lo) / s + 1e-9)) + 1
    return (lo + hi) / 2 + (np.arange(n) - (n - 1) / 2) * s


def make_wall(rng: np.random.Generator, params: WallParams | None = None) -> Scene:
    p = params or WallParams.sample_params(rng)
    p.validate()
    steel, dv, dh = _steel(rng), mm(p.d_vert_mm), mm(p.d_horz_mm)
    edge = p.cover + 0.03  # bar ends stop short of the wall ends
    xs = _grid_positions(edge, p.length - edge, p.s_vert)
    zs = _grid_positions(0.05, p.height - 0.05, p.s_horz)
    bars = []
    for side in (-1, 1):  # horizontal bars outside, vertical bars inside them
        yh = side * (p.thickness / 2 - p.cover - dh / 2)
        yv = side * (p.thickness / 2 - p.cover - dh - dv / 2)
        bars += [Bar(_straight((x, yv, 0.0), (x, yv, p.height)), dv / 2, "main", steel, "grid_v") for x in xs]
        bars += [Bar(_straight((p.cover, yh, z), (p.length - p.cover, yh, z)), dh / 2, "main", steel,
                     "grid_h") for z in zs]
    if p.links:
        yv = p.thickness / 2 - p.cover - dh - dv / 2
        dl = mm(8)
        for x in xs[1::2]:
            for z in zs[1::2]:
                pts = _place_crosstie((x, -yv), (x, yv), z + dh / 2 + dl, dl)
                bars.append(Bar(pts, dl / 2, "tie", steel, "link"))
    lo, hi = (0.0, -p.thickness / 2, 0.0), (p.length, p.thickness / 2, p.height)
    context = _site(rng, lo, hi, rng.uniform(0.3, 0.5))
    for x in xs[::4]:
        for z in zs[1::4]:
            yh = p.thickness / 2 - p.cover / 2
            context.append(ctx.wheel_spacer((x + p.s_vert / 2, -yh, z), (0, 1, 0), p.cover / 2))
    if rng.random() < 0.6:
        y = p.thickness / 2 + rng.uniform(0.1, 0.3)
        context.append(ctx.formwork_panel((0.0, y, 0.0), (p.length * rng.uniform(0.4, 1.0), y + 0.018,
                                                          p.height * rng.uniform(0.6, 1.0))))
    return Scene(bars, context, "wall", {**asdict(p), "bounds": [list(lo), list(hi)], "axis": -1})


# ----------------------------------------------------------------------------- slab


@dataclass
class SlabParams:
    size_x: float = 3.0
    size_y: float = 3.0
    thickness: float = 0.20
    cover: float = 0.030
    d_bottom_mm: int = 12
    d_top_mm: int = 10
    s_bottom: float = 0.15
    s_top: float = 0.20

    @classmethod
    def sample_params(cls, rng: np.random.Generator) -> SlabParams:
        d_b = int(rng.choice((10, 12, 16)))
        return cls(_r3(rng.uniform(1.5, 3.0)), _r3(rng.uniform(1.5, 3.0)),
                   _r3(rng.integers(3, 7) * 0.05), _r3(rng.integers(5, 11) * 0.005), d_b,
                   int(rng.choice([d for d in (8, 10, 12) if d <= d_b])),
                   _spacing(rng, 0.10, 0.30), _spacing(rng, 0.10, 0.30))

    def validate(self) -> None:
        _check_mm(self.d_bottom_mm, self.d_top_mm)
        _check(0.025 <= self.cover <= 0.050 + 1e-9, f"cover {self.cover} outside 25-50 mm")
        for s in (self.s_bottom, self.s_top):
            _check(0.10 - 1e-9 <= s <= 0.30 + 1e-9, f"grid spacing {s} outside 100-300 mm")


def _mat(size_x: float, size_y: float, edge: float, s: float, d: float, z_first: float,
         upward: bool, steel: str, kind: str) -> list[Bar]:
    """Two-way mat: bars along x (spaced in y) then, stacked on them, bars along y."""
    z_second = z_first + (d if upward else -d)
    ys = _grid_positions(edge, size_y - edge, s)
    xs = _grid_positions(edge, size_x - edge, s)
    bars = [Bar(_straight((edge, y, z_first), (size_x - edge, y, z_first)), d / 2, "main", steel,
                f"{kind}_x") for y in ys]
    bars += [Bar(_straight((x, edge, z_second), (x, size_y - edge, z_second)), d / 2, "main", steel,
                 f"{kind}_y") for x in xs]
    return bars


def make_slab(rng: np.random.Generator, params: SlabParams | None = None) -> Scene:
    p = params or SlabParams.sample_params(rng)
    p.validate()
    steel, db, dtop = _steel(rng), mm(p.d_bottom_mm), mm(p.d_top_mm)
    edge = p.cover + 0.02
    bars = _mat(p.size_x, p.size_y, edge, p.s_bottom, db, p.cover + db / 2, True, steel, "bottom")
    bars += _mat(p.size_x, p.size_y, edge, p.s_top, dtop, p.thickness - p.cover - dtop / 2, False,
                 steel, "top")
    # Plywood deck a little larger than the slab, edge boards on some sides.
    context = [ctx.ground(rng, (-0.2, -0.2), (p.size_x + 0.2, p.size_y + 0.2), 0.0, ("plywood",))]
    for side in np.flatnonzero(rng.random(4) < 0.5):
        lo, hi = [((-0.03, -0.03), (p.size_x + 0.03, 0.0)), ((-0.03, p.size_y), (p.size_x + 0.03, p.size_y + 0.03)),
                  ((-0.03, 0.0), (0.0, p.size_y)), ((p.size_x, 0.0), (p.size_x + 0.03, p.size_y))][side]
        context.append(ctx.formwork_panel((*lo, 0.0), (*hi, p.thickness), "timber_formwork"))
    z_top_mat = p.thickness - p.cover - 2 * dtop
    for x in np.arange(0.4, p.size_x - 0.2, 0.8):  # spacers under the bottom mat, chairs between mats
        for y in np.arange(0.4, p.size_y - 0.2, 0.8):
            context.append(ctx.spacer_block((x, y), 0.0, p.cover, 0.04))
            context.append(ctx.spacer_block((x + 0.1, y + 0.1), p.cover + 2 * db,
                                            z_top_mat - p.cover - 2 * db, 0.02, "steel"))
    lo, hi = (0.0, 0.0, 0.0), (p.size_x, p.size_y, p.thickness)
    return Scene(bars, context, "slab", {**asdict(p), "bounds": [list(lo), list(hi)], "axis": -1})


# ----------------------------------------------------------------------------- footing


@dataclass
class FootingParams:
    size_x: float = 1.8
    size_y: float = 1.8
    thickness: float = 0.50
    cover: float = 0.060  # cast against soil: 50-75 mm
    d_mat_mm: int = 16
    s_mat: float = 0.20
    column: ColumnParams | None = None  # starter bars + ties; height = projection above footing

    def __post_init__(self) -> None:
        if isinstance(self.column, dict):  # from a manifest
            self.column = ColumnParams(**self.column)
        if self.column is None:
            self.column = ColumnParams(height=0.8)

    @classmethod
    def sample_params(cls, rng: np.random.Generator) -> FootingParams:
        col = ColumnParams.sample_params(rng)
        col.width, col.depth = min(col.width, 0.5), min(col.depth, 0.5)
        col.bars_x = min(col.bars_x, max(_bar_counts(col.width, col)))
        col.bars_y = min(col.bars_y, max(_bar_counts(col.depth, col)))
        col.tie_spacing = min(col.tie_spacing, max_tie_spacing(
            mm(col.d_long_mm), mm(col.d_tie_mm), min(col.width, col.depth)))
        col.tie_spacing = _r3(np.floor(col.tie_spacing / 0.025) * 0.025)
        col.height = _r3(rng.uniform(0.6, 1.2))
        size = _r3(rng.uniform(1.2, 2.4))
        return cls(size, _r3(size * rng.uniform(0.8, 1.0)), _r3(rng.integers(8, 17) * 0.05),
                   _r3(rng.integers(10, 16) * 0.005), int(rng.choice((12, 16, 20))),
                   _spacing(rng, 0.10, 0.30), col)

    def validate(self) -> None:
        _check_mm(self.d_mat_mm)
        _check(0.050 - 1e-9 <= self.cover <= 0.075 + 1e-9, f"cover {self.cover} outside 50-75 mm")
        _check(0.10 - 1e-9 <= self.s_mat <= 0.30 + 1e-9, f"grid spacing {self.s_mat} outside 100-300 mm")
        self.column.validate()


def make_footing(rng: np.random.Generator, params: FootingParams | None = None) -> Scene:
    p = params or FootingParams.sample_params(rng)
    p.validate()
    c, steel, dm = p.column, _steel(rng), mm(p.d_mat_mm)
    z_blind = 0.05  # lean-concrete blinding the footing is cast on
    edge = p.cover + 0.02
    bars = _mat(p.size_x, p.size_y, edge, p.s_mat, dm, z_blind + p.cover + dm / 2, True, steel, "mat")
    centre = np.array([p.size_x / 2, p.size_y / 2, 0.0])
    z_foot = z_blind + p.cover + 2 * dm + mm(c.d_long_mm) / 2  # starters rest on the mat
    top = z_blind + p.thickness
    col = ColumnParams(**{**asdict(c), "height": top + c.height - z_foot})
    for b in column_bars(col, steel, z_foot):
        b.polyline = b.polyline + centre
        if b.kind == "longitudinal":
            b.polyline = _with_foot(b.polyline, centre, mm(c.d_long_mm))
        bars.append(b)
    lo, hi = (0.0, 0.0, z_blind), (p.size_x, p.size_y, top)
    # The blinding is the ground here: the soil around the pit is out of the picture.
    context = _site(rng, (0.0, 0.0, 0.0), (p.size_x, p.size_y, 0.0), rng.uniform(0.1, 0.3),
                    z_blind, ("concrete",))
    for side in rng.permutation(4)[: int(rng.integers(0, 3))]:  # side forms on up to two faces
        panel = _side_panel(int(side), p.size_x / 2, p.size_y / 2, 0.0, p.size_x + 0.1, z_blind,
                            p.thickness, 0.025)
        panel.vertices = panel.vertices + centre
        context.append(panel)
    for x in np.arange(0.3, p.size_x - 0.1, 0.6):
        for y in np.arange(0.3, p.size_y - 0.1, 0.6):
            context.append(ctx.spacer_block((x, y), z_blind, p.cover, 0.05, "concrete"))
    params = {**asdict(p), "bounds": [list(lo), list(hi)], "axis": 2, "centre": centre.tolist(),
              "z_blind": z_blind}
    return Scene(bars, context, "footing", params)


def _with_foot(line: np.ndarray, centre: np.ndarray, d: float) -> np.ndarray:
    """Starter bar with a 90-degree bend at its foot, the leg (12 d, ACI 25.3.1) pointing out."""
    out = line[0, :2] - centre[:2]
    out = out / np.linalg.norm(out)
    leg, r = 12 * d, bend_radius(d, bent_main=True)
    start = line[0] + np.array([*(out * (leg + r)), 0.0])
    normal = np.cross([*(-out), 0.0], [0.0, 0.0, 1.0])
    path = Path(start, [*(-out), 0.0], normal).straight(leg).bend(np.pi / 2, r)
    path.straight(float(line[1, 2] - path.pos[2]))
    return path.points()


# ----------------------------------------------------------------------------- registry

ELEMENTS: dict[str, Callable[..., Scene]] = {
    "column": make_column,
    "circular_column": make_circular_column,
    "beam": make_beam,
    "wall": make_wall,
    "slab": make_slab,
    "footing": make_footing,
}


def make_scene(element: str, seed: int) -> Scene:
    """The scene an element and a seed name: same seed, same scene, on any machine."""
    if element not in ELEMENTS:
        raise ValueError(f"unknown element {element!r}; choose from {', '.join(ELEMENTS)}")
    scene = ELEMENTS[element](np.random.default_rng(seed))
    scene.seed = int(seed)
    return scene
