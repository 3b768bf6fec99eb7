"""Mesh import (OBJ / glTF / GLB / PLY / STL) with labels from object, group and material names."""

from __future__ import annotations

import base64
import json
import struct

import numpy as np
import pytest

from data_tools.rebar.mesh_import import ImportedMesh, read_mesh
from data_tools.rebar.sampling import sample_surface
from data_tools.splits import DatasetFileError

OBJ = """# test model
mtllib model.mtl
v 0 0 0
v 1 0 0
v 1 1 0
v 0 1 0
v 0 0 1
v 1 0 1
v 1 1 1
v 0 1 1
o Slab
usemtl Concrete
f 1 2 3 4
o Column_Bar_1
usemtl Steel
f 5/1/1 6/2/1 7/3/1
o Part_7
g Stirrup_Group
usemtl Steel
f -8 -3 -4
o Part_8
usemtl Steel_Ties
f 1 5 8 4
o Formwork
usemtl Plywood
f 2 3 7
"""
MTL = """newmtl Concrete
Kd 0.6 0.6 0.6
newmtl Steel
Kd 0.4 0.2 0.1
newmtl Steel_Ties
Kd 0.3 0.3 0.3
newmtl Plywood
Kd 0.8 0.5 0.2
"""


def write_obj(tmp_path):
    (tmp_path / "model.mtl").write_text(MTL)
    path = tmp_path / "model.obj"
    path.write_text(OBJ)
    return path


def write_gltf(path, parts, glb=False, translation=None):
    """parts: (name, material or None, vertices, triangles), one node + mesh each."""
    blob, accessors, views, meshes, nodes, materials = b"", [], [], [], [], []
    for name, mat, v, t in parts:
        v, t = np.asarray(v, np.float32), np.asarray(t, np.uint32).ravel()
        for arr, target in ((v, 34962), (t, 34963)):
            views.append({"buffer": 0, "byteOffset": len(blob), "byteLength": arr.nbytes, "target": target})
            blob += arr.tobytes()
        accessors += [{"bufferView": len(views) - 2, "componentType": 5126, "count": len(v), "type": "VEC3",
                       "min": v.min(0).tolist(), "max": v.max(0).tolist()},
                      {"bufferView": len(views) - 1, "componentType": 5125, "count": t.size, "type": "SCALAR"}]
        prim = {"attributes": {"POSITION": len(accessors) - 2}, "indices": len(accessors) - 1, "mode": 4}
        if mat is not None:
            names = [m["name"] for m in materials]
            if mat not in names:
                materials.append({"name": mat})
            prim["material"] = [m["name"] for m in materials].index(mat)
        meshes.append({"name": f"{name}_mesh", "primitives": [prim]})
        nodes.append({"mesh": len(meshes) - 1, "name": name,
                      **({"translation": list(translation)} if translation else {})})
    doc = {"asset": {"version": "2.0"}, "scene": 0, "scenes": [{"nodes": list(range(len(nodes)))}],
           "nodes": nodes, "meshes": meshes, "accessors": accessors, "bufferViews": views,
           "materials": materials, "buffers": [{"byteLength": len(blob)}]}
    if not glb:
        doc["buffers"][0]["uri"] = "data:application/octet-stream;base64," + base64.b64encode(blob).decode()
        path.write_text(json.dumps(doc))
        return path
    js = json.dumps(doc).encode()
    js += b" " * (-len(js) % 4)
    blob += b"\0" * (-len(blob) % 4)
    path.write_bytes(struct.pack("<III", 0x46546C67, 2, 28 + len(js) + len(blob))
                     + struct.pack("<II", len(js), 0x4E4F534A) + js
                     + struct.pack("<II", len(blob), 0x004E4942) + blob)
    return path


def box(lo, hi):
    from data_tools.rebar.geometry import box_mesh

    return box_mesh(lo, hi)


def triangles_per_label(mesh):
    return np.bincount(mesh.labels, minlength=3).tolist()


# ---- OBJ -----------------------------------------------------------------------------

def test_obj_labels_from_object_group_and_material_names(tmp_path):
    mesh = read_mesh(write_obj(tmp_path))
    assert isinstance(mesh, ImportedMesh)
    assert mesh.object_roles == ("background", "main", "tie", "tie", "background")
    assert mesh.object_names[2] == "Part_7 / Stirrup_Group / Steel"  # tie via its group
    assert mesh.object_names[3] == "Part_8 / Steel_Ties"  # tie via its material
    # quads are fan-triangulated, negative indices resolved
    assert triangles_per_label(mesh) == [2 + 1, 1, 1 + 2]
    np.testing.assert_array_equal(mesh.vertices[mesh.triangles[mesh.object_ids == 2][0]],
                                  [[0, 0, 0], [1, 0, 1], [0, 0, 1]])  # -8 -3 -4 of 8 vertices
    names = np.array(mesh.material_names)[mesh.material_ids]
    assert names[mesh.object_ids == 0].tolist() == ["concrete"] * 2
    assert names[mesh.object_ids == 4].tolist() == ["plywood"]
    assert set(names[mesh.labels > 0]) == {"rusty_steel"}


def test_obj_custom_patterns_and_scale(tmp_path):
    path = write_obj(tmp_path)
    mesh = read_mesh(path, patterns={"tie": r"^Part_8$", "main": r"(?i)slab"}, scale=0.001)
    assert mesh.object_roles == ("main", "background", "background", "tie", "background")
    assert mesh.vertices.max() == pytest.approx(0.001)
    only_main = read_mesh(path, patterns={"main": r"(?i)steel"})  # no tie pattern: nothing is a tie
    assert only_main.object_roles == ("background", "main", "main", "main", "background")
    with pytest.raises(ValueError, match="patterns"):
        read_mesh(path, patterns={"rebar": "x"})


def test_sampled_obj_cloud_carries_labels(tmp_path):
    (tmp_path / "m.obj").write_text(
        "".join(f"v {x} {y} {z}\n" for x, y, z in np.vstack([box((0, 0, 0), (1, 1, 0.2))[0],
                                                               box((0, 0, 1), (0.1, 0.1, 2))[0]]))
        + "o Deck\n" + "".join(f"f {a + 1} {b + 1} {c + 1}\n" for a, b, c in box((0, 0, 0), (1, 1, 1))[1])
        + "o Rebar 1\n" + "".join(f"f {a + 9} {b + 9} {c + 9}\n" for a, b, c in box((0, 0, 0), (1, 1, 1))[1]))
    mesh = read_mesh(tmp_path / "m.obj")
    cloud = sample_surface(mesh, 5000, np.random.default_rng(0))
    counts = np.bincount(cloud.labels, minlength=3)
    areas = np.array([2 + 0.8, 0.02 + 0.4, 0.0])
    np.testing.assert_allclose(counts / counts.sum(), areas / areas.sum(), atol=0.02)


# ---- glTF / GLB ------------------------------------------------------------------------------

@pytest.mark.parametrize("glb", [False, True])
def test_gltf_labels_from_node_mesh_and_material_names(tmp_path, glb):
    v, t = box((0, 0, 0), (1, 1, 1))
    parts = [("Slab", "Concrete", v, t), ("Element 12", "Rebar steel", v + 2, t),
             ("Hoop 3", "Rebar steel", v + 4, t), ("Thing", None, v + 6, t), ("Wire", "Tie wire", v + 8, t)]
    path = write_gltf(tmp_path / ("m.glb" if glb else "m.gltf"), parts, glb=glb, translation=(10, 0, 0))
    mesh = read_mesh(path)
    # meshes sharing a material stay separate objects (Open3D's reader would merge them)
    assert mesh.object_roles == ("background", "main", "tie", "background", "tie")
    assert mesh.object_names[1] == "Element 12 / Element 12_mesh / Rebar steel"
    assert triangles_per_label(mesh) == [24, 12, 24]
    np.testing.assert_allclose(mesh.vertices[mesh.triangles[mesh.object_ids == 0]].reshape(-1, 3).min(0), [10, 0, 0])  # node translation
    np.testing.assert_allclose(mesh.vertices[mesh.triangles[mesh.object_ids == 4]].reshape(-1, 3).max(0), [19, 9, 9])


# ---- PLY / STL (Open3D) --------------------------------------------------------------------

def test_ply_and_stl_label_by_file_name(tmp_path):
    import open3d as o3d

    v, t = box((0, 0, 0), (0.1, 0.1, 1))
    o3m = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(v), o3d.utility.Vector3iVector(t))
    o3m.compute_triangle_normals()
    for name, role in (("stirrups.ply", "tie"), ("main_bars.stl", "main"), ("slab.ply", "background")):
        assert o3d.io.write_triangle_mesh(str(tmp_path / name), o3m)
        mesh = read_mesh(tmp_path / name)
        assert mesh.object_roles == (role,) and len(mesh.triangles) == 12
        assert mesh.areas().sum() == pytest.approx(4 * 0.1 + 2 * 0.01, rel=1e-5)


# ---- errors -----------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".obj", ".gltf", ".glb", ".ply", ".stl"])
def test_missing_empty_and_corrupt_files(tmp_path, suffix):
    with pytest.raises(DatasetFileError, match=f"nope{suffix}: no such file"):
        read_mesh(tmp_path / f"nope{suffix}")
    (tmp_path / f"empty{suffix}").write_bytes(b"")
    with pytest.raises(DatasetFileError, match=f"empty{suffix}: empty file"):
        read_mesh(tmp_path / f"empty{suffix}")
    (tmp_path / f"bad{suffix}").write_bytes(b"\x89\xff\x00garbage \x01\x02 not a mesh\n" * 4)
    with pytest.raises(DatasetFileError, match=f"bad{suffix}: "):
        read_mesh(tmp_path / f"bad{suffix}")


def test_files_without_triangles_and_broken_references(tmp_path):
    (tmp_path / "points.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\n")
    with pytest.raises(DatasetFileError, match="points.obj: no triangles"):
        read_mesh(tmp_path / "points.obj")
    (tmp_path / "badface.obj").write_text("v 0 0 0\nv 1 0 0\nf 1 2 3\n")
    with pytest.raises(DatasetFileError, match="badface.obj: corrupt.*bad face"):
        read_mesh(tmp_path / "badface.obj")
    doc = {"asset": {"version": "2.0"}, "nodes": [], "meshes": []}
    (tmp_path / "nomesh.gltf").write_text(json.dumps(doc))
    with pytest.raises(DatasetFileError, match="nomesh.gltf: no triangles"):
        read_mesh(tmp_path / "nomesh.gltf")
    v, t = box((0, 0, 0), (1, 1, 1))
    path = write_gltf(tmp_path / "cut.glb", [("Bar", None, v, t)], glb=True)
    path.write_bytes(path.read_bytes()[:-100])  # truncated binary chunk
    with pytest.raises(DatasetFileError, match="cut.glb: corrupt"):
        read_mesh(path)
    (tmp_path / "x.fbx").write_text("x")
    with pytest.raises(DatasetFileError, match="x.fbx: unsupported"):
        read_mesh(tmp_path / "x.fbx")
