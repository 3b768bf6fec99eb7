"""Drawn rebar cages follow the detailing rules (checked on geometry, not on parameters)."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from data_tools.rebar.cages import ELEMENTS, ColumnParams, WallParams, make_scene
from data_tools.rebar.model import Scene

N_DRAWS = 100
METRIC_MM = {6, 8, 10, 12, 16, 20, 25, 32, 40}
LOOPS = ("tie", "stirrup", "hoop")  # closed transverse bars that must enclose the main bars
HOOKED = ("tie", "stirrup", "hoop", "crosstie", "link")
TIED = ("column", "circular_column", "beam", "footing")


@functools.cache
def draws(element: str) -> tuple[Scene, ...]:
    return tuple(make_scene(element, seed) for seed in range(N_DRAWS))


def bars(scene: Scene, *kinds: str):
    return [b for b in scene.bars if b.kind in kinds]


def d_mm(bar) -> float:
    return 2000 * bar.radius


def longitudinal(scene: Scene):
    return bars(scene, "longitudinal", "top", "bottom")


def plane(scene: Scene, pts: np.ndarray) -> np.ndarray:
    """Coordinates in the plane of the ties (column: xy, beam: yz)."""
    return pts[..., [1, 2]] if scene.params["axis"] == 0 else pts[..., :2]


def along(scene: Scene, pts: np.ndarray) -> np.ndarray:
    return pts[..., scene.params["axis"]]


def least_dim(scene: Scene) -> float:
    p = scene.params
    if scene.element == "footing":
        return min(p["column"]["width"], p["column"]["depth"])
    lo, hi = np.array(p["bounds"])
    return float(np.min(np.delete(hi - lo, p["axis"])))


def inside(points: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Non-zero winding of (K, 2) points in a closed (M, 2) polygon. Winding, not even-odd:
    both hooks wrap the same corner, so the corner bar is encircled twice."""
    a = poly[None, :, :] - points[:, None, :]
    b = np.roll(poly, -1, axis=0)[None, :, :] - points[:, None, :]
    cross = a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]
    dot = (a * b).sum(-1)
    return np.abs(np.round(np.arctan2(cross, dot).sum(1) / (2 * np.pi))) >= 1


def seg_dist(p: np.ndarray, poly: np.ndarray) -> float:
    """Distance from point p to a polyline (any dimension)."""
    a, b = poly[:-1], poly[1:]
    ab = b - a
    t = np.clip(((p - a) * ab).sum(1) / np.maximum((ab * ab).sum(1), 1e-30), 0, 1)
    return float(np.min(np.linalg.norm(a + t[:, None] * ab - p, axis=1)))


@pytest.mark.parametrize("element", list(ELEMENTS))
def test_bar_diameters_are_metric(element):
    sizes = {round(d_mm(b), 6) for s in draws(element) for b in s.bars}
    assert sizes <= METRIC_MM, sizes - METRIC_MM


@pytest.mark.parametrize("element", TIED)
def test_tie_diameter_follows_ec2(element):
    for s in draws(element):
        d_long = max(d_mm(b) for b in longitudinal(s))
        d_ties = [d_mm(b) for b in s.bars if b.role == "tie"]
        assert d_ties and min(d_ties) >= max(6.0, d_long / 4) - 1e-9, (s.seed, d_long, min(d_ties))


@pytest.mark.parametrize("element", TIED)
def test_tie_spacing_within_aci(element):
    checked = 0
    for s in draws(element):
        d_long = min(d_mm(b) for b in longitudinal(s)) / 1000
        ties = bars(s, *LOOPS)
        if ties:
            levels = np.sort([along(s, t.polyline).min() for t in ties])
            gaps = np.diff(levels)
            d_tie = 2 * ties[0].radius
        else:  # spiral: rise per turn
            spiral = bars(s, "spiral")[0]
            z = spiral.polyline[:, 2]
            per_turn = int(round(2 * np.pi / np.deg2rad(10)))
            gaps = (z[per_turn:] - z[:-per_turn])[z[:-per_turn] > z.min() + 1e-9]
            gaps = gaps[gaps > 1e-9]
            d_tie = 2 * spiral.radius
            assert 0.025 - 1e-6 <= gaps.max() - d_tie <= 0.075 + 1e-6  # ACI clear pitch
        assert len(gaps) >= (2 if element == "footing" else 3)
        limit = min(16 * d_long, 48 * d_tie, least_dim(s))
        assert gaps.max() <= limit + 1e-6, (s.seed, gaps.max(), limit)
        checked += 1
    assert checked == N_DRAWS


def _cover_ties(s: Scene) -> float:
    """Least distance from a tie's outer surface to the concrete outline."""
    if s.element == "circular_column":
        t = [b for b in s.bars if b.role == "tie"]
        return min(s.params["diameter"] / 2 - np.linalg.norm(b.polyline[:, :2], axis=1).max() - b.radius
                   for b in t)
    if s.element == "footing":
        c, centre = s.params["column"], np.array(s.params["centre"][:2])
        lo, hi = centre - [c["width"] / 2, c["depth"] / 2], centre + [c["width"] / 2, c["depth"] / 2]
    else:
        lo, hi = (plane(s, np.array(x)) for x in s.params["bounds"])
    return min(np.min(np.minimum(plane(s, b.polyline) - lo, hi - plane(s, b.polyline))) - b.radius
               for b in bars(s, *LOOPS, "spiral"))


def _cover_grid(s: Scene) -> float:
    """Least distance from any grid bar's surface to the faces it is covered by."""
    lo, hi = np.array(s.params["bounds"])
    ax = 1 if s.element == "wall" else 2  # wall faces are y = const; slab/footing: z = const
    return min(min(b.polyline[:, ax].min() - lo[ax], hi[ax] - b.polyline[:, ax].max()) - b.radius
               for b in s.bars if b.kind.startswith(("grid", "bottom", "top", "mat")))


@pytest.mark.parametrize("element", list(ELEMENTS))
def test_cover(element):
    for s in draws(element):
        if element in ("wall", "slab"):
            assert 0.025 - 1e-6 <= _cover_grid(s) <= 0.050 + 1e-6, s.seed
        else:
            assert 0.025 - 1e-6 <= _cover_ties(s) <= 0.050 + 1e-6, (s.seed, _cover_ties(s))
        if element == "footing":  # cast against blinding/soil: the mat's bottom cover
            mat = bars(s, "mat_x")
            bottom = min(b.polyline[:, 2].min() - b.radius for b in mat) - s.params["z_blind"]
            assert 0.050 - 1e-6 <= bottom <= 0.075 + 1e-6


@pytest.mark.parametrize("element", ["column", "beam", "footing", "circular_column"])
def test_ties_enclose_main_bars(element):
    n_loops = 0
    for s in draws(element):
        mains = longitudinal(s)
        for t in bars(s, *LOOPS):
            level = along(s, t.polyline).mean()
            pts = np.array([plane(s, b.polyline[-1]) for b in mains
                            if along(s, b.polyline).min() < level < along(s, b.polyline).max()])
            assert len(pts) == len(mains) or element == "footing"
            assert inside(pts, plane(s, t.polyline)).all(), (s.seed, t.kind)
            n_loops += 1
        if element == "circular_column" and s.params["spiral"]:
            sp = bars(s, "spiral")[0]
            r_main = max(np.linalg.norm(b.polyline[0, :2]) for b in mains)
            assert r_main < np.linalg.norm(sp.polyline[:, :2], axis=1).min()
    assert n_loops > N_DRAWS


@pytest.mark.parametrize("element", ["column", "footing"])
def test_no_column_bar_far_from_a_held_bar(element):
    crossties = 0
    for s in draws(element):
        mains = longitudinal(s)
        xy = np.array([b.polyline[-1, :2] for b in mains])
        lo, hi = xy.min(0), xy.max(0)
        corner = (np.isclose(xy, lo) | np.isclose(xy, hi)).all(axis=1)
        cross = bars(s, "crosstie")
        crossties += len(cross)
        held = corner.copy()
        for i, p in enumerate(xy):  # a crosstie wraps a held bar at its bend radius
            held[i] |= any(seg_dist(p, c.polyline[:, :2]) <= 2.5 * 2 * c.radius + 1e-3 for c in cross)
        d = 2 * mains[0].radius
        for p in xy[~held]:
            clear = np.linalg.norm(xy[held] - p, axis=1).min() - d
            assert clear <= 0.150 + 1e-6, (s.seed, clear)
    assert crossties > 0  # the rule is exercised, not vacuously true


@pytest.mark.parametrize("element", ["wall", "slab", "footing"])
def test_grid_spacing(element):
    for s in draws(element):
        groups: dict[tuple, list[float]] = {}
        for b in s.bars:
            if not b.kind.startswith(("grid", "bottom", "top", "mat")):
                continue
            direction = int(np.argmax(np.abs(b.polyline[-1] - b.polyline[0])))
            # parallel bars are spaced along: wall horizontals in z, others in the plan axis
            across = {0: 2 if element == "wall" else 1, 1: 0, 2: 0}[direction]
            face = bool(b.polyline[0, 1] > 0) if element == "wall" else None
            groups.setdefault((b.kind, direction, face), []).append(b.polyline[0, across])
        assert len(groups) == (2 if element == "footing" else 4)
        for pos in groups.values():
            gaps = np.diff(np.sort(pos))
            assert len(gaps) >= 2 and gaps.min() >= 0.100 - 1e-6 and gaps.max() <= 0.300 + 1e-6, s.seed


def _hook_angle(pts: np.ndarray) -> tuple[float, float]:
    """Turn (degrees) from the last long leg to the end leg, and the end leg's length."""
    seg = np.diff(pts, axis=0)
    length = np.linalg.norm(seg, axis=1)
    chord = length[-2]  # a segment of the hook bend
    k = len(seg) - 2
    while length[k] <= 2 * chord + 1e-12:
        k -= 1
    ref = seg[k] / length[k]
    if length[k - 1] > 2 * chord:  # leg k is a chord of a hoop: take the tangent at its end
        ref = 1.5 * ref - 0.5 * seg[k - 1] / length[k - 1]
    cos = ref @ seg[-1] / (np.linalg.norm(ref) * length[-1])
    return float(np.degrees(np.arccos(np.clip(cos, -1, 1)))), float(length[-1])


@pytest.mark.parametrize("element", ["column", "circular_column", "beam", "wall", "footing"])
def test_hooks_are_135_degrees_with_extension(element):
    hooks = 0
    for s in draws(element):
        for b in bars(s, *HOOKED):
            d = 2 * b.radius
            for pts in (b.polyline, b.polyline[::-1]):
                angle, leg = _hook_angle(pts)
                assert abs(angle - 135) < 2.0, (s.seed, b.kind, angle)
                assert leg >= max(6 * d, 0.075) - 1e-9
                hooks += 1
    assert hooks > N_DRAWS


@pytest.mark.parametrize("element", list(ELEMENTS))
def test_same_seed_same_scene_other_seed_other_scene(element):
    a, b, c = make_scene(element, 11), make_scene(element, 11), make_scene(element, 12)
    assert a.params == b.params and len(a.bars) == len(b.bars)
    for x, y in zip(a.bars, b.bars):
        assert np.array_equal(x.polyline, y.polyline) and x.radius == y.radius and x.role == y.role
    for x, y in zip(a.context, b.context):
        assert np.array_equal(x.vertices, y.vertices) and x.material == y.material
    same = len(a.bars) == len(c.bars) and all(
        np.array_equal(x.polyline, y.polyline) for x, y in zip(a.bars, c.bars))
    assert not same and a.params != c.params


def test_params_outside_the_rules_are_rejected():
    with pytest.raises(ValueError, match="spacing"):
        ColumnParams(tie_spacing=0.45).validate()  # > 16 x 20 mm
    with pytest.raises(ValueError, match="tie too thin"):
        ColumnParams(d_long_mm=32, d_tie_mm=6).validate()
    with pytest.raises(ValueError, match="metric"):
        ColumnParams(d_long_mm=18).validate()
    with pytest.raises(ValueError, match="grid spacing"):
        WallParams(s_vert=0.35).validate()
    with pytest.raises(ValueError, match="unknown element"):
        make_scene("bridge", 0)
