"""The scene model shared by the synthetic source (surface sampling) and the rendered target.

A ``Scene`` is what a Revit model of one reinforced element holds: bars as centreline
polylines with a radius and a role, plus background context as triangle meshes. Colour
comes only from ``MATERIALS`` so that "rusty steel" looks the same in the sampled source
clouds and in the rendered photogrammetric target clouds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

__all__ = ["MATERIALS", "MATERIAL_NAMES", "ROLE_LABEL", "Bar", "Material", "Scene", "Solid"]

# Project labels (0 background, 1 main rebar, 2 tie); 255 "ignore" never comes from a model.
ROLE_LABEL = MappingProxyType({"background": 0, "main": 1, "tie": 2})


@dataclass(frozen=True)
class Material:
    name: str
    base_color: tuple[float, float, float]  # linear-ish sRGB in [0, 1]
    roughness: float  # 0 mirror .. 1 matte; the renderer's specular term reads it


# Read-only, and insertion order fixes the material index written into mesh files.
MATERIALS = MappingProxyType({m.name: m for m in (
    Material("rusty_steel", (0.45, 0.27, 0.17), 0.85),  # site rebar is rust-brown, not grey
    Material("steel", (0.50, 0.50, 0.52), 0.45),  # fresh bars, chairs
    Material("tie_wire", (0.30, 0.30, 0.32), 0.50),  # annealed black wire
    Material("concrete", (0.66, 0.65, 0.62), 0.90),
    Material("timber_formwork", (0.72, 0.56, 0.36), 0.80),
    Material("plywood", (0.80, 0.48, 0.22), 0.60),  # film-faced orange/brown panels
    Material("soil", (0.42, 0.34, 0.25), 1.00),
    Material("gravel", (0.58, 0.57, 0.55), 0.95),
    Material("plastic_spacer", (0.25, 0.25, 0.27), 0.40),
    Material("pvc_pipe", (0.55, 0.57, 0.60), 0.35),
    Material("orange_pipe", (0.90, 0.45, 0.10), 0.35),  # ducts: a saturated distractor
)})
MATERIAL_NAMES: tuple[str, ...] = tuple(MATERIALS)


@dataclass(eq=False)
class Bar:
    """One reinforcing bar: centreline (M, 3) in metres, radius in metres, role main|tie.

    ``kind`` says which part of the cage it is (longitudinal, tie, crosstie, stirrup,
    hoop, spiral, grid_x, ...) so checks and renderers can tell shapes apart.
    """

    polyline: np.ndarray
    radius: float
    role: str
    material: str = "rusty_steel"
    kind: str = ""

    def __post_init__(self) -> None:
        if self.role not in ("main", "tie"):
            raise ValueError(f"bar role must be 'main' or 'tie', got {self.role!r}")
        if self.polyline.ndim != 2 or self.polyline.shape[1] != 3 or len(self.polyline) < 2:
            raise ValueError(f"bar polyline must be (M>=2, 3), got {self.polyline.shape}")

    @property
    def diameter_mm(self) -> int:
        return round(2000 * self.radius)


@dataclass(eq=False)
class Solid:
    """A background triangle mesh: formwork panel, ground, spacer, board, pipe."""

    vertices: np.ndarray  # (V, 3) metres
    triangles: np.ndarray  # (T, 3) vertex indices
    material: str
    kind: str


@dataclass(eq=False)
class Scene:
    bars: list[Bar]
    context: list[Solid]
    element: str
    params: dict = field(default_factory=dict)  # JSON-serialisable: the manifest stores it
    seed: int = 0
