"""Bar shapes as centreline polylines, and triangle meshes of tubes and simple solids.

Shapes are built the way a bending schedule describes them: straight legs joined by
circular bends of a given centreline radius (``Path``), so hooks and tie corners carry
the mandrel radius of the rules instead of sharp corners. Bends are sampled every
<= 10 degrees (``rules.ARC_STEP``).
"""

from __future__ import annotations

import numpy as np

from data_tools.rebar.rules import ARC_STEP, bend_radius, hook_extension

__all__ = ["Path", "box_mesh", "circular_hoop", "crosstie", "cylinder_mesh", "helix",
           "plane_mesh", "polyline_length", "rect_tie", "tube_mesh"]

HOOK = np.deg2rad(135.0)
# Rise over one loop, in bar diameters: the two hook bends at the lapped corner are ~0.9 of
# a loop apart, so 1.25 d keeps them just clear of each other instead of intersecting.
LAP_RISE = 1.25


def _rotate(v: np.ndarray, axis: np.ndarray, angle: float) -> np.ndarray:
    """Rodrigues rotation of vectors v (..., 3) about a unit axis."""
    c, s = np.cos(angle), np.sin(angle)
    return v * c + np.cross(axis, v) * s + np.outer(v @ axis, axis).reshape(v.shape) * (1 - c)


class Path:
    """Turtle that walks a bar centreline: ``straight(length)`` and ``bend(angle, r)``."""

    def __init__(self, start, direction, normal=(0.0, 0.0, 1.0)) -> None:
        self.pos = np.asarray(start, dtype=float)
        self.dir = np.asarray(direction, dtype=float) / np.linalg.norm(direction)
        self.normal = np.asarray(normal, dtype=float)  # positive bends turn left about it
        self.pts = [self.pos.copy()]

    def straight(self, length: float) -> Path:
        if length < -1e-9:
            raise ValueError(f"negative straight leg {length:.4f} m: the shape does not fit")
        self.pos = self.pos + self.dir * max(length, 0.0)
        self.pts.append(self.pos.copy())
        return self

    def bend(self, angle: float, radius: float) -> Path:
        """Turn by `angle` (radians, + = left about `normal`) on a centreline radius."""
        side = np.sign(angle) * np.cross(self.normal, self.dir)
        centre = self.pos + radius * side
        steps = max(1, int(np.ceil(abs(angle) / ARC_STEP - 1e-9)))
        phis = np.linspace(0.0, angle, steps + 1)[1:]
        arm, ax = self.pos - centre, self.normal
        c, s = np.cos(phis)[:, None], np.sin(phis)[:, None]
        self.pts.extend(centre + arm * c + np.cross(ax, arm) * s + ax * (arm @ ax) * (1 - c))
        self.pos = self.pts[-1].copy()
        self.dir = _rotate(self.dir, self.normal, angle)
        return self

    def points(self) -> np.ndarray:
        return np.array(self.pts)


def rect_tie(width: float, height: float, d: float) -> np.ndarray:
    """Closed rectangular tie in the z=0 plane, centred at the origin, both 135-degree hooks
    at corner (-w/2, -h/2) pointing into the core. `width` x `height` are centreline sizes.

    Each hook bends round the same centre as the corner it replaces, so it wraps the
    corner bar and leaves tangent to the bend, as a bent tie does. The loop rises by
    ``LAP_RISE`` diameters over its length so the two overlapping hook legs sit side by side as on
    a real tie instead of occupying the same space.
    """
    r, ext = bend_radius(d), hook_extension(d)
    first = np.array([-width / 2 + r, -height / 2, 0.0])  # where the bottom side starts
    rev = Path(first, [-1.0, 0.0, 0.0]).bend(-HOOK, r).straight(ext)  # first hook, backwards
    p = Path(rev.pos, -rev.dir)
    p.straight(ext).bend(HOOK, r).straight(width - 2 * r).bend(np.pi / 2, r)
    p.straight(height - 2 * r).bend(np.pi / 2, r).straight(width - 2 * r)
    p.bend(np.pi / 2, r).straight(height - 2 * r).bend(HOOK, r).straight(ext)
    pts = p.points()
    pts[:, 2] += LAP_RISE * d * _arc_fraction(pts)
    return pts


def crosstie(length: float, d: float) -> np.ndarray:
    """Straight crosstie along +y from y=0 to y=`length` in the z=0 plane, 135-degree
    hooks at both ends bending to -x, around the bars they hold (at x = -r, y = 0 / length).
    """
    r, ext = bend_radius(d), hook_extension(d)
    # After the first +135-degree bend the bar must head +y, so it starts heading -45.
    start_dir = _rotate(np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0, 1.0]), -HOOK)
    # The free end: walk the first hook backwards from the bend's end at the origin.
    rev = Path([0.0, 0.0, 0.0], [0.0, -1.0, 0.0]).bend(-HOOK, r).straight(ext)
    p = Path(rev.pos, start_dir)
    p.straight(ext).bend(HOOK, r).straight(length).bend(HOOK, r).straight(ext)
    return p.points()


def circular_hoop(radius: float, d: float, lap_deg: float = 30.0) -> np.ndarray:
    """Circular hoop of centreline `radius` about the z axis, lapped by `lap_deg`, with
    135-degree hooks into the core at both ends; rises like ``rect_tie``."""
    r, ext = bend_radius(d), hook_extension(d)
    # Build with the big bend starting at (radius, 0) heading +y (counter-clockwise).
    rev = Path([radius, 0.0, 0.0], [0.0, -1.0, 0.0]).bend(-HOOK, r).straight(ext)
    start_dir = _rotate(np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0, 1.0]), -HOOK)
    p = Path(rev.pos, start_dir)
    p.straight(ext).bend(HOOK, r).bend(2 * np.pi + np.deg2rad(lap_deg), radius)
    p.bend(HOOK, r).straight(ext)
    pts = p.points()
    pts[:, 2] += LAP_RISE * d * _arc_fraction(pts)
    return pts


def helix(radius: float, pitch: float, z0: float, z1: float, flat_turns: float = 1.0) -> np.ndarray:
    """Spiral about the z axis from z0 to z1, with `flat_turns` closed turns at each end
    (how spirals are anchored, ACI 25.7.3.4 asks for 1.5 extra turns)."""
    n_turns = max((z1 - z0) / pitch, 0.0)
    total = n_turns + 2 * flat_turns
    n = int(np.ceil(total * 2 * np.pi / ARC_STEP)) + 1
    turn = np.linspace(0.0, total, n)
    z = z0 + pitch * np.clip(turn - flat_turns, 0.0, n_turns)
    ang = 2 * np.pi * turn
    return np.stack([radius * np.cos(ang), radius * np.sin(ang), z], axis=1)


def _arc_fraction(pts: np.ndarray) -> np.ndarray:
    s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))])
    return s / s[-1]


def polyline_length(pts: np.ndarray) -> float:
    return float(np.linalg.norm(np.diff(pts, axis=0), axis=1).sum())


# ----------------------------------------------------------------------------- meshes


def _frames(pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vertex tangents (bisectors) and parallel-transported normals: no twist along bends."""
    seg = np.diff(pts, axis=0)
    seg /= np.linalg.norm(seg, axis=1, keepdims=True)
    tang = np.empty_like(pts)
    tang[0], tang[-1] = seg[0], seg[-1]
    tang[1:-1] = seg[:-1] + seg[1:]
    tang /= np.linalg.norm(tang, axis=1, keepdims=True)
    ref = np.array([0.0, 0.0, 1.0]) if abs(tang[0, 2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    normals = np.empty_like(pts)
    n = np.cross(tang[0], ref)
    for i, t in enumerate(tang):
        n = n - (n @ t) * t
        n /= np.linalg.norm(n)
        normals[i] = n
    return tang, normals


def tube_mesh(pts: np.ndarray, radius: float, sides: int = 12, caps: bool = True
              ) -> tuple[np.ndarray, np.ndarray]:
    """Tessellate a polyline into a tube: (V, 3) vertices, (T, 3) triangles.

    The ring radius is enlarged so the polygon's perimeter equals 2*pi*r: sampled area,
    and so point counts, match the real bar instead of falling 1-2% short.
    """
    pts = np.asarray(pts, dtype=float)
    keep = np.concatenate([[True], np.linalg.norm(np.diff(pts, axis=0), axis=1) > 1e-9])
    pts = pts[keep]
    tang, nrm = _frames(pts)
    bin_ = np.cross(tang, nrm)
    r_eff = radius * np.pi / (sides * np.sin(np.pi / sides))
    theta = 2 * np.pi * np.arange(sides) / sides
    ring = np.cos(theta)[None, :, None] * nrm[:, None] + np.sin(theta)[None, :, None] * bin_[:, None]
    verts = (pts[:, None] + r_eff * ring).reshape(-1, 3)
    m = len(pts)
    i = np.arange(m - 1)[:, None] * sides
    k = np.arange(sides)[None, :]
    a, b = i + k, i + (k + 1) % sides
    c, d = a + sides, b + sides
    tris = np.concatenate([np.stack([a, b, d], -1), np.stack([a, d, c], -1)], 0).reshape(-1, 3)
    if caps:
        verts = np.concatenate([verts, pts[[0, -1]]])
        c0, c1 = m * sides, m * sides + 1
        k = np.arange(sides)
        cap0 = np.stack([np.full(sides, c0), (k + 1) % sides, k], -1)
        cap1 = np.stack([np.full(sides, c1), (m - 1) * sides + k, (m - 1) * sides + (k + 1) % sides], -1)
        tris = np.concatenate([tris, cap0, cap1])
    return verts, tris.astype(np.int64)


def cylinder_mesh(p0, p1, radius: float, sides: int = 16) -> tuple[np.ndarray, np.ndarray]:
    return tube_mesh(np.array([p0, p1], dtype=float), radius, sides, caps=True)


_BOX_TRIS = np.array([[0, 2, 1], [0, 3, 2], [4, 5, 6], [4, 6, 7], [0, 1, 5], [0, 5, 4],
                      [1, 2, 6], [1, 6, 5], [2, 3, 7], [2, 7, 6], [3, 0, 4], [3, 4, 7]])


def box_mesh(lo, hi, rotation_z: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Axis-aligned box from corner `lo` to `hi`, optionally turned about its vertical axis."""
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    x, y, z = (lo[0], hi[0]), (lo[1], hi[1]), (lo[2], hi[2])
    v = np.array([[x[0], y[0], z[0]], [x[1], y[0], z[0]], [x[1], y[1], z[0]], [x[0], y[1], z[0]],
                  [x[0], y[0], z[1]], [x[1], y[0], z[1]], [x[1], y[1], z[1]], [x[0], y[1], z[1]]])
    if rotation_z:
        centre = (lo + hi) / 2
        v = centre + _rotate(v - centre, np.array([0.0, 0.0, 1.0]), rotation_z)
    return v, _BOX_TRIS.copy()


def plane_mesh(lo_xy, hi_xy, z: float) -> tuple[np.ndarray, np.ndarray]:
    """Horizontal rectangle (one-sided, normal +z): ground or deck surface."""
    (x0, y0), (x1, y1) = lo_xy, hi_xy
    v = np.array([[x0, y0, z], [x1, y0, z], [x1, y1, z], [x0, y1, z]], dtype=float)
    return v, np.array([[0, 1, 2], [0, 2, 3]])
