"""Hostile input for every reader in data_tools: random, truncated and mutated files (test
tooling, kept with the tests; experiments/fuzz_readers.py runs it at scale).

Each reader gets one valid seed file of its format (written here with the project's own
writers); a case is that file truncated, byte-mutated, spliced, or plain random bytes. A
case passes when the reader either returns a sane result (non-empty, finite) or raises
DatasetFileError - the project's clear error naming the file. Any other exception, a
sane-looking but empty result, or a crash is a finding. `tests/test_fuzz_readers.py` runs
a few cases per reader through hypothesis; `experiments/fuzz_readers.py` runs >= 1,000 per
reader, each in a child process (so a native crash or a hang is counted, not fatal).
"""

from __future__ import annotations

import gzip
import json
import struct
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data_tools.splits import DatasetFileError


@dataclass(frozen=True)
class Reader:
    name: str
    suffix: str  # the name the case is written under (readers pick the format from it)
    seed: Callable[[Path], bytes]  # a valid file of this format
    read: Callable[[Path], object]  # reads the case; returns what the reader returned
    sane: Callable[[object], bool]  # is a returned value a real, non-empty result?


def _cloud_seed(suffix: str) -> Callable[[Path], bytes]:
    def seed(tmp: Path) -> bytes:
        from data_tools.io import PointCloud, write_cloud

        rng = np.random.default_rng(0)
        xyz = rng.normal(size=(40, 3))
        rgb = rng.uniform(size=(40, 3)) if suffix not in (".npy",) else None
        cloud = PointCloud(xyz, rgb, labels=rng.integers(0, 3, 40))
        return write_cloud(tmp / f"seed{suffix}", cloud).read_bytes()
    return seed


def _read_cloud(path: Path):
    from data_tools.io import read_cloud

    return read_cloud(path)


def _sane_cloud(c) -> bool:
    return len(c.xyz) > 0 and bool(np.isfinite(c.xyz).all())


def _ifc_seed(tmp: Path) -> bytes:
    from data_tools.rebar.cages import make_scene
    from data_tools.rebar.ifc import write_ifc

    return write_ifc(make_scene("column", 1), tmp / "seed.ifc").read_bytes()


def _read_ifc(path: Path):
    from data_tools.rebar.ifc import read_ifc

    return read_ifc(path)


def _png(array: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _image_seed(tmp: Path) -> bytes:
    return _png(np.random.default_rng(0).integers(0, 256, (12, 16, 3)).astype(np.uint8))


def _read_image(path: Path):
    from data_tools.segmentation_files import read_rgb

    return read_rgb(path)


def _mask_seed(tmp: Path) -> bytes:
    return _png(np.random.default_rng(0).integers(0, 3, (12, 16)).astype(np.uint8))


def _read_mask(path: Path):
    """The case is the mask of a 12 x 16 image in an images/ + masks/ folder."""
    from data_tools.segmentation_files import read_mask_folder

    folder = path.parent / "maskset"
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(exist_ok=True)
    (folder / "images" / "a.png").write_bytes(_image_seed(folder))
    (folder / "masks" / "a.png").write_bytes(path.read_bytes())
    return read_mask_folder(folder, {0: 0, 1: 1, 2: 2})


def _coco_seed(tmp: Path) -> bytes:
    return json.dumps({
        "images": [{"id": 1, "file_name": "a.png", "width": 16, "height": 12}],
        "categories": [{"id": 7, "name": "rebar"}, {"id": 8, "name": "tie"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 7, "segmentation": [[1, 1, 10, 1, 10, 8, 1, 8]]},
            {"id": 2, "image_id": 1, "category_id": 8,
             "segmentation": {"size": [12, 16], "counts": [20, 5, 50, 10, 107]}}],
    }).encode()


def _read_coco(path: Path):
    from data_tools.segmentation_files import read_coco

    images = path.parent / "coco_images"
    images.mkdir(exist_ok=True)
    (images / "a.png").write_bytes(_image_seed(images))
    return read_coco(path, images, {"rebar": 1, "tie": 2})


def _sane_pairs(out) -> bool:
    return len(out) > 0 and all(img.size > 0 and (m is None or m.shape == img.shape[:2]) for img, m, _ in out)


def _idx_seed(tmp: Path) -> bytes:
    arr = np.random.default_rng(0).integers(0, 256, (5, 28, 28)).astype(np.uint8)
    return gzip.compress(bytes([0, 0, 0x08, 3]) + struct.pack(">3I", *arr.shape) + arr.tobytes())


def _read_idx(path: Path):
    from data_tools.digit_files import read_idx

    return read_idx(path)


def _mesh_seed(tmp: Path) -> bytes:
    return (b"o main_bar_1\nv 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\nf 1 2 3\nf 1 2 4\n"
            b"o tie_1\nv 0 0 2\nv 1 0 2\nv 0 1 2\nf 5 6 7\n")


def _read_mesh(path: Path):
    from data_tools.rebar.mesh_import import read_mesh

    return read_mesh(path)


READERS: dict[str, Reader] = {r.name: r for r in [
    Reader("ply", ".ply", _cloud_seed(".ply"), _read_cloud, _sane_cloud),
    Reader("pcd", ".pcd", _cloud_seed(".pcd"), _read_cloud, _sane_cloud),
    Reader("las", ".las", _cloud_seed(".las"), _read_cloud, _sane_cloud),
    Reader("npy", ".npy", _cloud_seed(".npy"), _read_cloud, _sane_cloud),
    Reader("npz", ".npz", _cloud_seed(".npz"), _read_cloud, _sane_cloud),
    Reader("xyz", ".xyz", _cloud_seed(".xyz"), _read_cloud, _sane_cloud),
    Reader("ifc", ".ifc", _ifc_seed, _read_ifc, lambda s: len(s.bars) + len(s.meshed_bars) > 0),
    Reader("image", ".png", _image_seed, _read_image, lambda a: a.ndim == 3 and a.size > 0),
    Reader("mask", ".png", _mask_seed, _read_mask, _sane_pairs),
    Reader("coco", ".json", _coco_seed, _read_coco, _sane_pairs),
    Reader("digits_idx", ".gz", _idx_seed, _read_idx, lambda a: a.size > 0),
    Reader("obj_mesh", ".obj", _mesh_seed, _read_mesh, lambda m: len(m.triangles) > 0),
]}


def mutate(seed: bytes, rng: np.random.Generator) -> tuple[str, bytes]:
    """One hostile variant of a valid file: (kind, bytes)."""
    kind = ["truncate", "flip", "overwrite", "splice", "random", "zero_run"][int(rng.integers(6))]
    data = bytearray(seed)
    n = len(data)
    if kind == "truncate":
        return kind, bytes(data[: int(rng.integers(0, n))])
    if kind == "flip":
        for _ in range(int(rng.integers(1, 9))):
            i = int(rng.integers(n))
            data[i] ^= 1 << int(rng.integers(8))
        return kind, bytes(data)
    if kind == "overwrite":
        for _ in range(int(rng.integers(1, 5))):
            i = int(rng.integers(n))
            data[i] = int(rng.choice([0, 0xFF, 0x7F, 0x80, ord("-"), ord("9"), ord("n"), ord("\n")]))
        return kind, bytes(data)
    if kind == "splice":  # a block repeated or cut out of the middle
        i, j = sorted(int(x) for x in rng.integers(0, n, 2))
        return kind, bytes(data[:i] + data[i:j] * int(rng.integers(0, 3)) + data[j:])
    if kind == "zero_run":  # up to 63 bytes zeroed in place
        i = int(rng.integers(n))
        k = min(int(rng.integers(1, 64)), n - i)
        data[i : i + k] = bytes(k)
        return kind, bytes(data)
    return kind, rng.integers(0, 256, int(rng.integers(0, 512))).astype(np.uint8).tobytes()


def check(reader: Reader, data: bytes, folder: Path) -> tuple[str, str]:
    """('loaded' | 'clear_error' | 'garbage' | 'other_error', detail) for one case."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"case{reader.suffix}"
    path.write_bytes(data)
    try:
        out = reader.read(path)
    except DatasetFileError as exc:
        if str(path) not in str(exc) and str(path.parent) not in str(exc):
            return "other_error", f"DatasetFileError without the file name: {exc}"
        return "clear_error", str(exc)[:200]
    except Exception as exc:  # noqa: BLE001 - any other exception type is the finding
        return "other_error", f"{type(exc).__name__}: {str(exc)[:200]}"
    if not reader.sane(out):
        return "garbage", f"returned {type(out).__name__} that is empty or non-finite"
    return "loaded", ""


def seed_bytes(reader: Reader) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        return reader.seed(Path(tmp))
