"""Labelled meshes from OBJ / glTF / GLB / PLY / STL exports of rebar models.

``read_mesh(path)`` returns an ``ImportedMesh`` (a ``mesh.LabeledMesh`` with object names),
ready for ``sampling.sample_surface``. Each part of the file (an OBJ object / group /
material run, a glTF node primitive, a whole PLY or STL) is one object; its label comes
from its names through regex patterns, tested in order tie, main (first match wins);
anything unmatched is background (0).

``DEFAULT_PATTERNS``: ``tie`` matches tie / stirrup / link / hoop / spiral / ligature (the
words Revit, Tekla and Allplan users name transverse reinforcement with); ``main`` matches
rebar / bar / longitudinal / main / reinforcement. Ties are tested first because a tie is
usually *also* called a "bar" ("Stirrup Bar 8"). Names tested: OBJ object (``o``), group
(``g``) and material (``usemtl``); glTF node, mesh and material names; PLY / STL the file
stem (and an ASCII STL's ``solid`` name).

Readers: OBJ and glTF are parsed here, because Open3D 0.20 (Assimp) merges glTF meshes
that share a material, renames meshes, drops OBJ quads (``read_triangle_mesh``) and loses
material names (``read_triangle_model``): per-part names are exactly what the labels need.
PLY and STL are read with ``open3d.io.read_triangle_mesh`` (one object per file).
Coordinates are taken as metres (pass ``scale`` for millimetre exports). Colours: bars
get rusty steel, background a project material guessed from its names (else concrete).
"""

from __future__ import annotations

import base64
import json
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np

from data_tools.rebar.mesh import LabeledMesh
from data_tools.rebar.model import MATERIAL_NAMES, ROLE_LABEL
from data_tools.splits import DatasetFileError

__all__ = ["DEFAULT_PATTERNS", "SUFFIXES", "ImportedMesh", "read_mesh"]

DEFAULT_PATTERNS = MappingProxyType({
    "tie": r"(?i)tie|stirrup|link|hoop|spiral|ligature",
    "main": r"(?i)rebar|bar|longitudinal|main|reinforc",
})
SUFFIXES = (".obj", ".gltf", ".glb", ".ply", ".stl")

_BACKGROUND_WORDS = (
    (r"(?i)plywood", "plywood"), (r"(?i)timber|wood|formwork", "timber_formwork"),
    (r"(?i)soil|earth|ground", "soil"), (r"(?i)gravel", "gravel"),
    (r"(?i)pvc|pipe|duct", "pvc_pipe"), (r"(?i)steel|metal", "steel"),
)
_MATERIAL_INDEX = {name: i for i, name in enumerate(MATERIAL_NAMES)}


@dataclass(eq=False)
class ImportedMesh(LabeledMesh):
    object_names: tuple[str, ...] = ()  # per object id: "object / group / material" names
    object_roles: tuple[str, ...] = ()  # per object id: background | main | tie


def read_mesh(path: str | Path, patterns: Mapping[str, str] | None = None,
              scale: float = 1.0) -> ImportedMesh:
    """Read a mesh file and label its parts by name (see module docstring).

    patterns: role ("tie" / "main") -> regex; replaces ``DEFAULT_PATTERNS``. Missing,
    empty, corrupt files and files without triangles raise DatasetFileError naming the file.
    """
    path = Path(path)
    compiled = _compile(patterns)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise DatasetFileError(f"{path}: unsupported mesh format '{suffix}' (use {', '.join(SUFFIXES)})")
    if not path.is_file():
        raise DatasetFileError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise DatasetFileError(f"{path}: empty file (0 bytes)")
    try:
        if suffix == ".obj":
            parts = _read_obj(path)
        elif suffix in (".gltf", ".glb"):
            parts = _read_gltf(path)
        else:
            parts = _read_open3d(path)
    except DatasetFileError:
        raise
    except (ValueError, KeyError, IndexError, TypeError, struct.error, OSError, UnicodeDecodeError) as exc:
        raise DatasetFileError(f"{path}: corrupt mesh file ({type(exc).__name__}: {exc})") from None
    parts = [(names, v, t) for names, v, t in parts if len(t)]
    if not parts:
        raise DatasetFileError(f"{path}: no triangles in the file (empty or unreadable mesh)")
    verts, tris, oid, lab, mat, obj_names, obj_roles = [], [], [], [], [], [], []
    offset = 0
    for i, (names, v, t) in enumerate(parts):
        v = np.asarray(v, np.float64) * scale
        t = np.asarray(t, np.int64)
        if not np.isfinite(v).all():
            raise DatasetFileError(f"{path}: non-finite vertex coordinates in '{' / '.join(names)}'")
        if t.min() < 0 or t.max() >= len(v):
            raise DatasetFileError(f"{path}: face index out of range in '{' / '.join(names)}'")
        role = next((r for r, p in compiled if any(p.search(n) for n in names)), "background")
        verts.append(v)
        tris.append(t + offset)
        offset += len(v)
        oid.append(np.full(len(t), i, np.int32))
        lab.append(np.full(len(t), ROLE_LABEL[role], np.int64))
        mat.append(np.full(len(t), _MATERIAL_INDEX[_material(role, names)], np.int32))
        obj_names.append(" / ".join(names))
        obj_roles.append(role)
    return ImportedMesh(np.concatenate(verts), np.concatenate(tris), np.concatenate(oid),
                        np.concatenate(lab), np.concatenate(mat), MATERIAL_NAMES,
                        tuple(obj_names), tuple(obj_roles))


def _compile(patterns: Mapping[str, str] | None) -> list[tuple[str, re.Pattern]]:
    pats = dict(DEFAULT_PATTERNS if patterns is None else patterns)
    bad = [r for r in pats if r not in ("main", "tie")]
    if bad:
        raise ValueError(f"patterns keys must be 'main' or 'tie', got {bad}")
    try:
        return [(r, re.compile(pats[r])) for r in ("tie", "main") if r in pats]
    except re.error as exc:
        raise ValueError(f"bad pattern: {exc}") from None


def _material(role: str, names: list[str]) -> str:
    if role != "background":
        return "rusty_steel"
    for name in reversed(names):  # the material name (last) says more than the object's
        if name in _MATERIAL_INDEX:
            return name
        for pattern, material in _BACKGROUND_WORDS:
            if re.search(pattern, name):
                return material
    return "concrete"


Part = tuple[list[str], np.ndarray, np.ndarray]


def _read_obj(path: Path) -> list[Part]:
    """v / f (polygons fan-triangulated, v/vt/vn and negative indices), o, g, usemtl."""
    verts: list[tuple[float, float, float]] = []
    faces: dict[tuple[str, str, str], list[list[int]]] = {}  # (object, group, material) -> tris
    obj = group = material = ""
    for lineno, raw in enumerate(path.read_text(encoding="utf-8", errors="strict").splitlines(), 1):
        words = raw.split("#", 1)[0].split()
        if not words:
            continue
        key = words[0]
        if key == "v":
            if len(words) < 4:
                raise ValueError(f"line {lineno}: vertex needs 3 coordinates")
            verts.append((float(words[1]), float(words[2]), float(words[3])))
        elif key == "f":
            idx = []
            for w in words[1:]:
                i = int(w.split("/")[0])
                idx.append(i - 1 if i > 0 else len(verts) + i)
            if len(idx) < 3 or min(idx) < 0 or max(idx) >= len(verts):
                raise ValueError(f"line {lineno}: bad face {' '.join(words[1:])}")
            faces.setdefault((obj, group, material), []).extend(
                [idx[0], idx[k], idx[k + 1]] for k in range(1, len(idx) - 1))
        elif key == "o":
            obj, group = " ".join(words[1:]), ""
        elif key == "g":
            group = " ".join(words[1:])
        elif key == "usemtl":
            material = " ".join(words[1:])
        elif key not in ("vt", "vn", "vp", "l", "p", "s", "mtllib", "usemap", "maplib") and \
                not re.fullmatch(r"[A-Za-z_]+", key):
            raise ValueError(f"line {lineno}: not an OBJ statement: {raw[:40]!r}")
    v = np.array(verts, np.float64).reshape(-1, 3)
    return [([n for n in key if n], v, np.array(t, np.int64)) for key, t in faces.items()]


_COMPONENT = {5120: np.int8, 5121: np.uint8, 5122: np.int16, 5123: np.uint16, 5125: np.uint32,
              5126: np.float32}
_NCOMP = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT4": 16}


def _read_gltf(path: Path) -> list[Part]:
    """glTF 2.0 (.gltf with data: URIs or .bin files, or .glb): triangle primitives, node
    transforms (matrix or TRS) applied, names: node, mesh, material."""
    data = path.read_bytes()
    glb_bin = None
    if path.suffix.lower() == ".glb" or data[:4] == b"glTF":
        if data[:4] != b"glTF" or len(data) < 20:
            raise ValueError("not a GLB file (bad magic)")
        (json_len, json_type) = struct.unpack_from("<II", data, 12)
        if json_type != 0x4E4F534A:
            raise ValueError("GLB first chunk is not JSON")
        doc = json.loads(data[20:20 + json_len])
        rest = 20 + json_len
        if rest + 8 <= len(data):
            bin_len, _ = struct.unpack_from("<II", data, rest)
            glb_bin = data[rest + 8:rest + 8 + bin_len]
    else:
        doc = json.loads(data.decode("utf-8"))
    if not isinstance(doc, dict) or "asset" not in doc:
        raise ValueError("not a glTF document (no 'asset')")

    buffers = []
    for b in doc.get("buffers", []):
        uri = b.get("uri")
        if uri is None:
            buffers.append(glb_bin or b"")
        elif uri.startswith("data:"):
            buffers.append(base64.b64decode(uri.split(",", 1)[1]))
        else:
            buffers.append((path.parent / uri).read_bytes())

    def accessor(i: int) -> np.ndarray:
        acc = doc["accessors"][i]
        view = doc["bufferViews"][acc["bufferView"]]
        dtype = np.dtype(_COMPONENT[acc["componentType"]])
        ncomp, count = _NCOMP[acc["type"]], acc["count"]
        buf = buffers[view["buffer"]]
        start = view.get("byteOffset", 0) + acc.get("byteOffset", 0)
        stride = view.get("byteStride") or dtype.itemsize * ncomp
        if start + stride * (count - 1) + dtype.itemsize * ncomp > len(buf):
            raise ValueError(f"accessor {i} runs past the end of its buffer")
        rows = np.lib.stride_tricks.as_strided(
            np.frombuffer(buf, np.uint8, offset=start), shape=(count, dtype.itemsize * ncomp),
            strides=(stride, 1))
        return np.ascontiguousarray(rows).view(dtype).reshape(count, ncomp)

    materials = [m.get("name", "") for m in doc.get("materials", [])]
    parts: list[Part] = []

    def visit(node_i: int, parent: np.ndarray, depth: int) -> None:
        if depth > 64:
            raise ValueError("node hierarchy too deep (cycle?)")
        node = doc["nodes"][node_i]
        world = parent @ _node_matrix(node)
        if "mesh" in node:
            mesh = doc["meshes"][node["mesh"]]
            for prim in mesh["primitives"]:
                if prim.get("mode", 4) != 4:  # points, lines, strips: no triangle list
                    continue
                pos = accessor(prim["attributes"]["POSITION"]).astype(np.float64)
                idx = accessor(prim["indices"]).ravel().astype(np.int64) if "indices" in prim \
                    else np.arange(len(pos))
                v = pos @ world[:3, :3].T + world[:3, 3]
                names = [node.get("name", ""), mesh.get("name", "")]
                if "material" in prim:
                    names.append(materials[prim["material"]])
                parts.append(([n for n in names if n], v, idx.reshape(-1, 3)))
        for child in node.get("children", []):
            visit(child, world, depth + 1)

    scenes = doc.get("scenes")
    roots = scenes[doc.get("scene", 0)]["nodes"] if scenes else range(len(doc.get("nodes", [])))
    for root in roots:
        visit(root, np.eye(4), 0)
    return parts


def _node_matrix(node: dict) -> np.ndarray:
    if "matrix" in node:
        return np.array(node["matrix"], np.float64).reshape(4, 4).T  # column-major
    m = np.eye(4)
    x, y, z, w = node.get("rotation", (0.0, 0.0, 0.0, 1.0))
    rot = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                    [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                    [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
    m[:3, :3] = rot * np.asarray(node.get("scale", (1.0, 1.0, 1.0)))[None, :]
    m[:3, 3] = node.get("translation", (0.0, 0.0, 0.0))
    return m


def _read_open3d(path: Path) -> list[Part]:
    import open3d as o3d

    mesh = o3d.io.read_triangle_mesh(str(path))  # warns and returns an empty mesh on failure
    v, t = np.asarray(mesh.vertices), np.asarray(mesh.triangles)
    names = [path.stem]
    if path.suffix.lower() == ".stl":
        head = path.read_bytes()[:200]
        if head.startswith(b"solid "):
            name = head[6:].split(b"\n", 1)[0].decode("ascii", "replace").strip()
            names.append(name)
    return [([n for n in names if n], v, t)]
