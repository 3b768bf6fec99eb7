"""Levelling a cloud: +Z up and the ground at z = 0, with a report that says how sure it is.

A photogrammetric cloud comes in the frame of its first camera, or of whatever the SfM
program chose: the model, trained on clouds standing upright on the ground, needs them
levelled. Three ways, the first automatic:

- `up="auto"`: the ground is the plane that carries the scene. Up to `max_planes` planes
  are taken out of the cloud one after another (RANSAC, `prepare.fit_ground_plane`); each
  is scored by its SUPPORT - the share of the other points whose projection onto the plane
  lands on an occupied cell of it (a ground reaches under everything that stands on it; a
  formwork panel or a wall beside the cage does not reach under the ground in front of
  it) - times the share of points NOT below it (the ground is the lowest surface). The
  best plane's normal becomes +Z and the plane z = 0. The largest plane alone (the old
  rule) picked a formwork panel on the project's own clouds.
- `up="x" | "-y" | "0.1,0.9,0"` (a vector in the cloud's frame): that direction is rotated
  onto +Z; the ground is then the best-supported plane within 10 degrees of horizontal, or
  where there is none, the 1st percentile of the heights (the lowest points taken for
  ground - an ASSUMPTION the report states).
- `transform`: a 4x4 matrix the user knows (from a survey, a total station, their SfM
  program's georeferencing), applied as it is.

`Levelling` records what was done and `line()` says it in one line (the chosen normal,
the plane's share of the points, the share below it, the height range after levelling);
`warnings` lists what looks wrong: no plane with the cloud above it, a ground plane that
supports little of the scene, a height range no rebar scene has.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from data_tools.io import PointCloud
from data_tools.prepare import fit_ground_plane, rotation_to_z, transform_cloud

AXES = {"x": (1.0, 0.0, 0.0), "y": (0.0, 1.0, 0.0), "z": (0.0, 0.0, 1.0)}
MAX_EVAL_POINTS = 200_000  # plane search and support on a seeded subsample of big clouds


@dataclass
class Plane:
    normal: np.ndarray  # unit, pointing to the side holding most of the other points
    d: float  # plane: normal . x + d = 0
    share: float  # of the (sub)sampled points within the inlier distance
    below: float  # share of points more than 3 inlier distances under it
    support: float  # share of off-plane points standing on an occupied cell of it

    @property
    def score(self) -> float:
        return self.support * (1.0 - self.below)


@dataclass
class Levelling:
    """What `level` did to one cloud."""

    method: str  # auto | up | transform
    transform: np.ndarray  # 4x4, applied to the cloud's coordinates
    up: list[float]  # the cloud's up direction, in its own frame
    plane_share: float | None = None  # share of points on the ground plane
    below_share: float | None = None  # share of points under it
    support: float | None = None
    height_range: tuple[float, float] = (0.0, 0.0)  # 1st and 99th percentile of z after
    warnings: list[str] = field(default_factory=list)

    def line(self) -> str:
        up = ", ".join(f"{v:+.3f}" for v in self.up)
        parts = [f"{self.method}: up ({up})"]
        if self.plane_share is not None:
            parts.append(f"ground plane {100 * self.plane_share:.1f}% of points, {100 * self.below_share:.1f}% "
                         f"below it, supports {100 * self.support:.0f}%")
        parts.append(f"heights {self.height_range[0]:.2f} .. {self.height_range[1]:.2f}")
        return "; ".join(parts)

    def to_json(self) -> dict:
        return {"method": self.method, "up": self.up, "transform": self.transform.round(9).tolist(),
                "plane_share": self.plane_share, "below_share": self.below_share, "support": self.support,
                "height_range": list(self.height_range), "warnings": self.warnings}


def parse_up(text: str) -> str | np.ndarray:
    """'auto', an axis ('x', '-z'), or 'X,Y,Z' -> 'auto' or a unit 3-vector."""
    text = text.strip().lower()
    if text == "auto":
        return "auto"
    sign = -1.0 if text.startswith("-") else 1.0
    if text.lstrip("+-") in AXES:
        return sign * np.array(AXES[text.lstrip("+-")])
    try:
        vec = np.array([float(v) for v in text.split(",")])
    except ValueError:
        vec = np.zeros(0)
    if vec.shape != (3,) or not np.isfinite(vec).all() or np.linalg.norm(vec) == 0:
        raise ValueError(f"up must be auto, an axis (x, y, z, -x, ...) or a vector X,Y,Z; got '{text}'")
    return vec / np.linalg.norm(vec)


def read_transform(path) -> np.ndarray:
    """A 4x4 rigid transform from a text file (4 rows of 4 numbers)."""
    try:
        m = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a 4x4 matrix of numbers ({exc})") from None
    if m.shape != (4, 4) or not np.isfinite(m).all():
        raise ValueError(f"{path}: a transform must be 4 rows of 4 numbers, got shape {m.shape}")
    r = m[:3, :3]
    if not np.allclose(r @ r.T, np.eye(3), atol=1e-4) or np.linalg.det(r) < 0 or not np.allclose(m[3], [0, 0, 0, 1]):
        raise ValueError(f"{path}: the upper 3x3 is not a rotation (scale with --scale / --units instead) "
                         "or the last row is not 0 0 0 1")
    return m


def _support(xyz: np.ndarray, plane_normal: np.ndarray, d: float, inliers: np.ndarray, cell: float) -> float:
    """Share of off-plane points whose projection onto the plane falls on (or next to) an
    occupied cell of the plane's inliers."""
    u = np.cross(plane_normal, [1.0, 0.0, 0.0] if abs(plane_normal[0]) < 0.9 else [0.0, 1.0, 0.0])
    u /= np.linalg.norm(u)
    v = np.cross(plane_normal, u)
    uv = np.floor(np.stack([xyz @ u, xyz @ v], axis=1) / cell).astype(np.int64)
    uv -= uv.min(axis=0) - 1  # >= 1: a neighbour cell never goes negative
    width = int(uv[:, 1].max()) + 2
    occupied = np.unique(uv[inliers, 0] * width + uv[inliers, 1])
    near = np.unique((occupied[:, None] + np.array([di * width + dj for di in (-1, 0, 1)
                                                    for dj in (-1, 0, 1)])[None, :]).ravel())
    off = uv[~inliers]
    if len(off) == 0:
        return 1.0
    return float(np.isin(off[:, 0] * width + off[:, 1], near).mean())


def candidate_planes(xyz: np.ndarray, distance: float, max_planes: int = 4, min_share: float = 0.03,
                     seed: int = 0) -> list[Plane]:
    """Planes taken out of the cloud one after another, largest first."""
    n = len(xyz)
    cell = 8.0 * distance
    remaining = np.arange(n)
    out: list[Plane] = []
    for k in range(max_planes):
        if len(remaining) < 100:
            break
        normal, d, inl = fit_ground_plane(xyz[remaining], distance, seed=seed + k)
        share = float(inl.sum()) / n
        if share < min_share:
            break
        signed = xyz @ normal + d
        on = np.abs(signed) <= distance
        below = float((signed < -3 * distance).mean())
        out.append(Plane(normal, float(d), share, below, _support(xyz, normal, d, on, cell)))
        remaining = remaining[~inl]
    return out


def level(cloud: PointCloud, up: str | np.ndarray = "auto", transform: np.ndarray | None = None,
          ground_distance: float | None = None, seed: int = 0) -> tuple[PointCloud, Levelling]:
    """The cloud levelled (+Z up, ground at z = 0; see the module docstring) and the record.

    ground_distance: RANSAC inlier distance in the cloud's units; None = 0.5% of the
    bounding-box diagonal (capped at 3 cm: the cloud is in metres by now).
    """
    cloud.validate("levelling input")
    if transform is not None:
        out = transform_cloud(cloud, transform)
        rec = Levelling("transform", np.asarray(transform, np.float64), list(np.linalg.inv(transform[:3, :3])[:, 2]))
        return out, _finish(out, rec)
    rng = np.random.default_rng(seed)
    xyz = cloud.xyz.astype(np.float64)
    sample = xyz if len(xyz) <= MAX_EVAL_POINTS else xyz[rng.choice(len(xyz), MAX_EVAL_POINTS, replace=False)]
    if ground_distance is None:
        ground_distance = min(0.005 * float(np.linalg.norm(np.ptp(sample, axis=0))), 0.03)
    planes = candidate_planes(sample, ground_distance, seed=seed)
    if isinstance(up, str) and up != "auto":
        up = parse_up(up)
    if isinstance(up, str):  # auto: the best-supported plane with the cloud above it
        return _level_on_plane(cloud, planes)
    return _level_to_up(cloud, np.asarray(up, np.float64), planes, sample)


def _level_on_plane(cloud: PointCloud, planes: list[Plane]) -> tuple[PointCloud, Levelling]:
    """The best-scored plane is the ground. Known limit (experiments/results/rebar3d/
    levelling_*.md): a cloud cropped tight round a column or a wall shows little ground and
    formwork on every side, and a panel can win; pass --up for such clouds."""
    if not planes:
        raise ValueError("levelling: no plane of >= 3% of the points found; pass --up or --transform")
    best = max(planes, key=lambda p: p.score)
    m = np.eye(4)
    m[:3, :3] = rotation_to_z(best.normal)
    m[2, 3] = best.d  # plane n.x + d = 0 becomes z = -d after rotating n onto +Z
    out = transform_cloud(cloud, m)
    rec = Levelling("auto", m, [float(v) for v in best.normal], best.share, best.below, best.support)
    return out, _finish(out, rec)


def _level_to_up(cloud: PointCloud, up: np.ndarray, planes: list[Plane],
                 sample: np.ndarray) -> tuple[PointCloud, Levelling]:
    m = np.eye(4)
    m[:3, :3] = rotation_to_z(up)
    level_planes = [p for p in planes if float(p.normal @ up) > math.cos(math.radians(10))]
    rec = Levelling("up", m, [float(v) for v in up])
    if level_planes:
        best = max(level_planes, key=lambda p: p.score)
        ground = -best.d / float(best.normal @ up)  # where the plane crosses the line along `up`
        m[2, 3] = -ground
        rec.plane_share, rec.below_share, rec.support = best.share, best.below, best.support
    else:
        heights = sample @ up
        m[2, 3] = -float(np.percentile(heights, 1))
        rec.warnings.append("no near-horizontal plane: the ground is taken at the 1st percentile of the heights")
    rec.transform = m
    out = transform_cloud(cloud, m)
    return out, _finish(out, rec)


def _finish(out: PointCloud, rec: Levelling) -> Levelling:
    z = out.xyz[:, 2]
    lo, hi = (float(v) for v in np.percentile(z, [1, 99]))
    rec.height_range = (round(lo, 3), round(hi, 3))
    if rec.below_share is not None and rec.below_share > 0.05:
        rec.warnings.append(f"{100 * rec.below_share:.0f}% of the points lie under the chosen ground: it may be "
                            "a wall or a panel; check the cloud, or pass --up / --transform")
    if rec.support is not None and rec.support < 0.5:
        rec.warnings.append(f"the chosen ground supports only {100 * rec.support:.0f}% of the scene: it may be "
                            "a wall or a panel; pass --up / --transform if the cloud is not upright")
    if hi - lo > 40 or hi - lo < 0.1:
        rec.warnings.append(f"heights span {hi - lo:.2f} (1st-99th percentile): no rebar scene in metres does; "
                            "check --scale / --units")
    return rec
