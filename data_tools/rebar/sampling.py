"""Area-weighted uniform surface sampling of a labelled mesh: the synthetic SOURCE cloud.

Like sampling a Revit export: every surface gets points in proportion to its area,
each point takes its triangle's label, normal and material colour. Colour varies a
little per object (bars from different bundles rust differently) and per point (mottle).
"""

from __future__ import annotations

import numpy as np

from data_tools.io import PointCloud
from data_tools.rebar.mesh import LabeledMesh

__all__ = ["sample_surface"]

OBJECT_BRIGHTNESS_SD = 0.08  # per-object colour scale spread
POINT_NOISE_SD = 0.015  # per-point colour noise


def sample_surface(mesh: LabeledMesh, density: float, rng: np.random.Generator) -> PointCloud:
    """round(density * area) points, density in points per square metre."""
    if density <= 0:
        raise ValueError(f"density must be > 0 points per m^2, got {density}")
    areas = mesh.areas()
    n = int(round(density * areas.sum()))
    if n == 0:
        raise ValueError(f"density {density} over {areas.sum():.3g} m^2 gives no points")
    cdf = np.cumsum(areas)
    tri = np.minimum(np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right"), len(areas) - 1)
    u, v = rng.random(n), rng.random(n)
    flip = u + v > 1  # fold the unit square onto the triangle: uniform barycentrics
    u[flip], v[flip] = 1 - u[flip], 1 - v[flip]
    corners = mesh.vertices[mesh.triangles[tri]]
    xyz = corners[:, 0] + u[:, None] * (corners[:, 1] - corners[:, 0]) + v[:, None] * (corners[:, 2] - corners[:, 0])
    normals = _face_normals(mesh)[tri]
    n_obj = int(mesh.object_ids.max()) + 1
    scale = 1 + OBJECT_BRIGHTNESS_SD * rng.standard_normal((n_obj, 1))
    tint = 0.03 * rng.standard_normal((n_obj, 3))  # slight hue shift between objects
    rgb = mesh.face_colors[tri] * scale[mesh.object_ids[tri]] + tint[mesh.object_ids[tri]]
    rgb += POINT_NOISE_SD * rng.standard_normal(rgb.shape)
    return PointCloud(xyz=xyz.astype(np.float32), rgb=np.clip(rgb, 0, 1).astype(np.float32),
                      normals=normals.astype(np.float32), labels=mesh.labels[tri].astype(np.int64))


def _face_normals(mesh: LabeledMesh) -> np.ndarray:
    v = mesh.vertices[mesh.triangles]
    nrm = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
    return nrm / np.maximum(np.linalg.norm(nrm, axis=1, keepdims=True), 1e-30)
