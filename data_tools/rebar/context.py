"""Background context around a cage: ground, formwork, spacers and distractor objects.

Everything here is label 0. Sizes are kept close to the cage (a margin of a few
decimetres) so that a scene holds roughly as much background surface as rebar surface,
as a site photo cropped to one element does, instead of a floor that swamps the bars.
"""

from __future__ import annotations

import numpy as np

from data_tools.rebar.geometry import box_mesh, cylinder_mesh, plane_mesh
from data_tools.rebar.model import Solid

__all__ = ["distractors", "formwork_panel", "ground", "spacer_block", "wheel_spacer"]


def ground(rng: np.random.Generator, lo_xy, hi_xy, z: float = 0.0,
           materials: tuple[str, ...] = ("concrete", "soil", "gravel")) -> Solid:
    v, t = plane_mesh(lo_xy, hi_xy, z)
    return Solid(v, t, str(rng.choice(materials)), "ground")


def formwork_panel(lo, hi, material: str = "plywood") -> Solid:
    """A panel as a thin box: both faces exist, as in a BIM model of the formwork."""
    v, t = box_mesh(lo, hi)
    return Solid(v, t, material, "formwork")


def wheel_spacer(centre, axis, cover: float) -> Solid:
    """Plastic wheel spacer clipped on a bar: a disc of radius `cover`, 8 mm thick."""
    centre, axis = np.asarray(centre, float), np.asarray(axis, float)
    v, t = cylinder_mesh(centre - 0.004 * axis, centre + 0.004 * axis, cover, sides=16)
    return Solid(v, t, "plastic_spacer", "spacer")


def spacer_block(centre_xy, z0: float, height: float, size: float = 0.04,
                 material: str = "plastic_spacer") -> Solid:
    x, y = centre_xy
    v, t = box_mesh((x - size / 2, y - size / 2, z0), (x + size / 2, y + size / 2, z0 + height))
    return Solid(v, t, material, "spacer")


def distractors(rng: np.random.Generator, lo_xy, hi_xy, keep_lo_xy, keep_hi_xy,
                z: float = 0.0, max_boards: int = 2, max_pipes: int = 2) -> list[Solid]:
    """Boards and pipes lying on the ground in the ring between keep-out box and site edge."""
    out: list[Solid] = []
    for _ in range(int(rng.integers(0, max_boards + 1))):
        x, y = _free_spot(rng, lo_xy, hi_xy, keep_lo_xy, keep_hi_xy)
        length, width, thick = rng.uniform(0.4, 1.0), rng.uniform(0.08, 0.2), 0.025
        v, t = box_mesh((x - length / 2, y - width / 2, z), (x + length / 2, y + width / 2, z + thick),
                        rotation_z=float(rng.uniform(0, np.pi)))
        out.append(Solid(v, t, "timber_formwork", "board"))
    for _ in range(int(rng.integers(0, max_pipes + 1))):
        x, y = _free_spot(rng, lo_xy, hi_xy, keep_lo_xy, keep_hi_xy)
        r, length, a = rng.uniform(0.02, 0.06), rng.uniform(0.4, 1.0), rng.uniform(0, np.pi)
        d = 0.5 * length * np.array([np.cos(a), np.sin(a), 0.0])
        c = np.array([x, y, z + r])
        v, t = cylinder_mesh(c - d, c + d, r, sides=16)
        out.append(Solid(v, t, str(rng.choice(["pvc_pipe", "orange_pipe"])), "pipe"))
    return out


def _free_spot(rng, lo_xy, hi_xy, keep_lo_xy, keep_hi_xy) -> tuple[float, float]:
    """A point on the site outside the keep-out box (rejection; the ring is never empty)."""
    for _ in range(100):
        x, y = rng.uniform(lo_xy, hi_xy)
        inside = keep_lo_xy[0] < x < keep_hi_xy[0] and keep_lo_xy[1] < y < keep_hi_xy[1]
        if not inside:
            return float(x), float(y)
    return float(lo_xy[0]), float(lo_xy[1])
