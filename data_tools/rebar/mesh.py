"""One labelled triangle mesh for a whole scene: what the sampler and the renderer read.

Every bar and every context solid becomes one object (``object_id``: bars first, in
order, then context); each triangle carries its object's id, label (0/1/2) and material
index into ``model.MATERIAL_NAMES``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from data_tools.rebar.geometry import tube_mesh
from data_tools.rebar.model import MATERIAL_NAMES, MATERIALS, ROLE_LABEL, Scene

__all__ = ["LabeledMesh", "scene_to_mesh", "to_open3d"]

_MATERIAL_INDEX = {name: i for i, name in enumerate(MATERIAL_NAMES)}


@dataclass(eq=False)
class LabeledMesh:
    vertices: np.ndarray  # (V, 3) float64 metres
    triangles: np.ndarray  # (T, 3) int64
    object_ids: np.ndarray  # (T,) int32
    labels: np.ndarray  # (T,) int64: 0 background, 1 main, 2 tie
    material_ids: np.ndarray  # (T,) int32 index into material_names
    material_names: tuple[str, ...] = MATERIAL_NAMES

    @property
    def face_colors(self) -> np.ndarray:
        table = np.array([MATERIALS[n].base_color for n in self.material_names], dtype=np.float32)
        return table[self.material_ids]

    def areas(self) -> np.ndarray:
        v = self.vertices[self.triangles]
        return 0.5 * np.linalg.norm(np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0]), axis=1)


def merge_meshes(*parts: LabeledMesh) -> LabeledMesh:
    """One mesh from several (same material table); object ids are kept as they are."""
    offsets = np.cumsum([0] + [len(p.vertices) for p in parts[:-1]])
    return LabeledMesh(np.concatenate([p.vertices for p in parts]),
                       np.concatenate([p.triangles + o for p, o in zip(parts, offsets)]),
                       np.concatenate([p.object_ids for p in parts]),
                       np.concatenate([p.labels for p in parts]),
                       np.concatenate([p.material_ids for p in parts]))


def scene_to_mesh(scene: Scene, sides: int = 12) -> LabeledMesh:
    """Tubes for bars (`sides` per ring), the context solids as they are."""
    parts = [(*tube_mesh(b.polyline, b.radius, sides), ROLE_LABEL[b.role], b.material)
             for b in scene.bars]
    parts += [(s.vertices, s.triangles, ROLE_LABEL["background"], s.material) for s in scene.context]
    verts, tris, oid, lab, mat = [], [], [], [], []
    offset = 0
    for i, (v, t, label, material) in enumerate(parts):
        verts.append(np.asarray(v, dtype=np.float64))
        tris.append(np.asarray(t, dtype=np.int64) + offset)
        offset += len(v)
        oid.append(np.full(len(t), i, np.int32))
        lab.append(np.full(len(t), label, np.int64))
        mat.append(np.full(len(t), _MATERIAL_INDEX[material], np.int32))
    return LabeledMesh(np.concatenate(verts), np.concatenate(tris), np.concatenate(oid),
                       np.concatenate(lab), np.concatenate(mat))


def to_open3d(mesh: LabeledMesh):
    """``open3d.geometry.TriangleMesh`` with per-vertex material colours.

    For raycasting use ``open3d.t.geometry.RaycastingScene.add_triangles`` with
    ``mesh.vertices.astype(float32)`` and ``mesh.triangles.astype(uint32)``; the hit's
    primitive id indexes ``labels`` / ``object_ids``. Vertices are never shared between
    objects, so per-vertex colours are exact.
    """
    import open3d as o3d  # heavy import: only when a mesh is handed to Open3D

    out = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(mesh.vertices),
                                    o3d.utility.Vector3iVector(mesh.triangles.astype(np.int32)))
    vcol = np.zeros((len(mesh.vertices), 3))
    vcol[mesh.triangles.ravel()] = np.repeat(mesh.face_colors, 3, axis=0)
    out.vertex_colors = o3d.utility.Vector3dVector(vcol)
    out.compute_triangle_normals()
    return out
