"""Write a folder of labelled synthetic source scenes: ``python -m data_tools cages``.

Folder layout::

    scene_0000.ply        labelled cloud (xyz float32, normals, rgb, int label), io.write_cloud
    scene_0000_mesh.npz   the scene's mesh: vertices (V,3) float64, triangles (T,3) int64,
                          labels / object_ids / material_ids per triangle, material_names,
                          object_kinds and object_roles per object. An .npz and not a .ply
                          because Open3D writes no per-face attributes; rebuild an Open3D
                          mesh with rebar.mesh.to_open3d(load_mesh(path)).
    manifest.json         command, seeds, and per scene: element, scene seed, parameters,
                          points per label.

Scene i is drawn from ``numpy.random.default_rng([seed, i])`` (its element and its own
scene seed), so a scene does not depend on how many came before it, and the same
arguments give byte-identical .ply files. The folder is built under a temporary name
and renamed at the end: a crash never leaves a half-written dataset under the real name.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
from tqdm import tqdm

from data_tools.atomic import atomic_folder
from data_tools.io import write_cloud
from data_tools.rebar.cages import ELEMENTS, make_scene
from data_tools.rebar.mesh import LabeledMesh, scene_to_mesh
from data_tools.rebar.model import ROLE_LABEL, Scene
from data_tools.rebar.sampling import sample_surface

__all__ = ["draw_scene", "generate_scenes", "load_mesh"]


def draw_scene(seed: int, index: int, elements: list[str]) -> tuple[str, int]:
    """(element, scene seed) of scene `index` of a dataset made with `seed`."""
    rng = np.random.default_rng([seed, index])
    return elements[int(rng.integers(len(elements)))], int(rng.integers(2**31))


def generate_scenes(out_dir: str | Path, scenes: int, seed: int, density: float = 20000.0,
                    elements: list[str] | None = None, command: str | None = None,
                    progress: bool = True) -> Path:
    """Make `scenes` scenes into `out_dir` (replaced if it exists); returns the folder."""
    elements = list(elements or ELEMENTS)
    unknown = [e for e in elements if e not in ELEMENTS]
    if unknown or scenes < 1 or density <= 0:
        raise ValueError(f"need scenes >= 1, density > 0 and elements from {', '.join(ELEMENTS)}; "
                         f"got scenes={scenes}, density={density}, unknown={unknown}")
    with atomic_folder(out_dir) as tmp:
        entries = [_write_scene(tmp, i, seed, density, elements)
                   for i in tqdm(range(scenes), desc="cages", unit="scene", disable=not progress)]
        manifest = {"command": command, "seed": seed, "scenes": scenes, "density": density,
                    "elements": elements, "labels": {v: k for k, v in ROLE_LABEL.items()},
                    "scene_list": entries}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1, default=_json_default))
    return Path(out_dir)


def _write_scene(folder: Path, i: int, seed: int, density: float, elements: list[str]) -> dict:
    element, scene_seed = draw_scene(seed, i, elements)
    scene = make_scene(element, scene_seed)
    mesh = scene_to_mesh(scene)
    cloud = sample_surface(mesh, density, np.random.default_rng([scene_seed, 1]))
    name = f"scene_{i:04d}"
    write_cloud(folder / f"{name}.ply", cloud)
    _save_mesh(folder / f"{name}_mesh.npz", mesh, scene)
    counts = np.bincount(cloud.labels, minlength=3)
    return {"index": i, "file": f"{name}.ply", "mesh": f"{name}_mesh.npz", "element": element,
            "scene_seed": scene_seed, "points": len(cloud),
            "label_counts": {str(k): int(c) for k, c in enumerate(counts)},
            "bars": len(scene.bars), "context_objects": len(scene.context), "params": scene.params}


def _save_mesh(path: Path, mesh: LabeledMesh, scene: Scene) -> None:
    kinds = [b.kind for b in scene.bars] + [s.kind for s in scene.context]
    roles = [b.role for b in scene.bars] + ["background"] * len(scene.context)
    _savez_reproducible(path, vertices=mesh.vertices, triangles=mesh.triangles, labels=mesh.labels,
                        object_ids=mesh.object_ids, material_ids=mesh.material_ids,
                        material_names=np.array(mesh.material_names), object_kinds=np.array(kinds),
                        object_roles=np.array(roles))


def _savez_reproducible(path: Path, **arrays: np.ndarray) -> None:
    """Like np.savez_compressed, but with fixed zip timestamps, so the same arguments
    give byte-identical files (np.savez stamps each member with the current time)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, arr in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asanyarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, buf.getvalue())


def load_mesh(path: str | Path) -> LabeledMesh:
    """Read a ``scene_XXXX_mesh.npz`` back into a LabeledMesh."""
    with np.load(path) as z:
        return LabeledMesh(z["vertices"], z["triangles"], z["object_ids"], z["labels"],
                           z["material_ids"], tuple(str(n) for n in z["material_names"]))


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")
