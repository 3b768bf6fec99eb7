"""Detailing rules the generators follow, in one place, with their sources.

Lengths are metres, diameters metres unless a name ends in ``_mm``.

* Bar sizes: metric set {6, 8, 10, 12, 16, 20, 25, 32, 40} mm.
* Tie / stirrup diameter >= max(6 mm, d_long / 4) (EC2 9.5.3(1)); we also keep ties
  >= 8 mm (REFERENCE: ties usually 8-12 mm).
* Tie spacing <= min(16 d_long, 48 d_tie, least column dimension) (ACI 318 25.7.2.1).
* Column bars: clear spacing >= max(40 mm, 1.5 d_long) (ACI 25.2.3), centre spacing
  <= 300 mm (IS 456 26.5.3.1); corner and alternate bars held by a tie corner or a
  135-degree crosstie hook, and no unheld bar more than 150 mm clear from a held bar
  (ACI 25.7.2.3).
* Bends: inner mandrel diameter 4 d for d <= 16 mm and 6 d above (ACI 318 Table 25.3.2
  for ties/stirrups; EC2 Table 8.1N gives 4 d / 7 d); main-bar L-bends 6 d up to 25 mm,
  8 d above (ACI Table 25.3.1). The centreline radius is mandrel / 2 + d / 2.
* Hooks on ties, stirrups and crossties: 135 degrees with a straight extension of
  max(6 d, 75 mm) (ACI 25.3.2, seismic hooks 25.3.4).
* Cover to the ties / outer bars 25-50 mm; footings cast against soil 50-75 mm.
* Grids (walls, slabs, footing mats): centre spacing 100-300 mm each way.
"""

from __future__ import annotations

import numpy as np

METRIC_MM = (6, 8, 10, 12, 16, 20, 25, 32, 40)
TIE_MM = (8, 10, 12)
COLUMN_BAR_MM = (16, 20, 25, 32)
MAX_CLEAR_TO_HELD = 0.150
ARC_STEP = np.deg2rad(10.0)  # bends sampled every <= 10 degrees: smooth at mm scale


def mm(d_mm: float) -> float:
    return d_mm / 1000.0


def min_tie_mm(d_long_mm: float) -> float:
    """EC2: max(6 mm, d_long / 4); our sites never use ties under 8 mm."""
    return max(6.0, d_long_mm / 4.0, 8.0)


def tie_choices(d_long_mm: float) -> list[int]:
    return [d for d in TIE_MM if d >= min_tie_mm(d_long_mm)]


def max_tie_spacing(d_long: float, d_tie: float, least_dim: float) -> float:
    return min(16 * d_long, 48 * d_tie, least_dim)


def mandrel_diameter(d: float, bent_main: bool = False) -> float:
    if bent_main:
        return (6 if d <= 0.025 else 8) * d
    return (4 if d <= 0.016 else 6) * d


def bend_radius(d: float, bent_main: bool = False) -> float:
    """Centreline radius of a bend: half the mandrel plus half the bar."""
    return mandrel_diameter(d, bent_main) / 2 + d / 2


def hook_extension(d: float) -> float:
    return max(6 * d, 0.075)


def min_column_clear(d_long: float) -> float:
    return max(0.040, 1.5 * d_long)
