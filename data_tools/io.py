"""Point-cloud readers and writers for the clouds users bring.

``read_cloud(path)`` and ``write_cloud(path, cloud)`` pick the format from the suffix:

=========  ===  ===  =======  ======  ==================================================
suffix     xyz  rgb  normals  labels  how
=========  ===  ===  =======  ======  ==================================================
.ply       yes  yes  yes      yes     own numpy code (ascii and binary read; binary
                                      little-endian write); label = vertex property
                                      ``label`` (``scalar_label`` is read too)
.pcd       yes  yes  yes      yes     Open3D tensor API; label = field ``label``
.las/.laz  yes  yes  no       yes     laspy; label = ``classification``; .laz needs a
                                      LAZ backend (``pip install lazrs``)
.xyz/.txt  yes  yes  yes      yes     whitespace (or comma) columns, see below
.npy       yes  yes  yes      yes     one (N, C) float array, columns as for .txt
.npz       yes  yes  yes      yes     named arrays ``xyz``, ``rgb``, ``normals``, ``labels``
=========  ===  ===  =======  ======  ==================================================

Conventions (``PointCloud``):
    xyz      (N, 3) float32 or float64; every coordinate finite; N >= 1.
    rgb      (N, 3) float32 in [0, 1], or None.
    normals  (N, 3) float, finite, or None.
    labels   (N,) int64, or None. Project labels: 0 background, 1 main rebar, 2 tie,
             255 ignore.

Column layouts of .xyz/.txt/.npy (by column count):
    3  x y z                    7  x y z r g b label
    4  x y z label              9  x y z r g b nx ny nz
    6  x y z r g b             10  x y z r g b nx ny nz label
    On read, colours are taken as 0-255 if any colour value is above 1, else as 0-1;
    on write they are 0-1 floats, so our own files always read back exactly. Six
    columns always mean colours, never normals, so a cloud with normals but no colours
    cannot be written in these layouts (use .ply or .npz). Text lines starting with
    ``#`` or ``//`` are comments (CloudCompare writes a ``//X Y Z`` header).

Stored precision: PLY keeps float32/float64 coordinates, 8-bit colours, float32
normals and int32 labels. PCD keeps coordinates and 8-bit packed colours. LAS stores
coordinates as scaled integers (1e-6 steps unless the extent needs coarser ones),
16-bit colours and 8-bit labels (point format 7 with colours, 6 without, LAS 1.4, so
label 255 fits; formats 0-5 hold only 0-31). LAS has no "no label" value: a file whose
classification is 0 everywhere (ASPRS "never classified") reads with ``labels=None``,
and one whose colours are 0 everywhere reads with ``rgb=None``. Classification codes
are taken verbatim as project labels, so a LAS file classified by another tool
(ASPRS 1 "unclassified", 2 "ground", ...) must not be read as training labels. Colours
in LAS are read as 16-bit unless every value is <= 255 (some writers store 8-bit).

Every bad input raises ``DatasetFileError`` (a ValueError) whose message names the file
and the problem: missing, empty, truncated, corrupt header, NaN coordinates, labels of
the wrong length, or a cloud Open3D read as empty (Open3D only warns on bad files).
Writers validate the cloud first and write atomically: a temporary file in the same
folder, then ``os.replace``, so no half-written file ever sits under the final name.
"""

from __future__ import annotations

import os
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data_tools.splits import DatasetFileError

__all__ = ["SUFFIXES", "DatasetFileError", "PointCloud", "read_cloud", "write_cloud"]


@dataclass(eq=False)  # eq on arrays is ambiguous; compare fields explicitly
class PointCloud:
    xyz: np.ndarray
    rgb: np.ndarray | None = None
    normals: np.ndarray | None = None
    labels: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.xyz)

    def validate(self, source: str) -> None:
        """Raise DatasetFileError naming `source` unless the fields follow the conventions."""
        xyz = self.xyz
        if not isinstance(xyz, np.ndarray) or xyz.ndim != 2 or xyz.shape[1] != 3:
            raise DatasetFileError(f"{source}: xyz must be an (N, 3) array, got shape {np.shape(xyz)}")
        if not np.issubdtype(xyz.dtype, np.floating):
            raise DatasetFileError(f"{source}: xyz must be float32 or float64, got {xyz.dtype}")
        n = len(xyz)
        if n == 0:
            raise DatasetFileError(f"{source}: empty cloud (0 points)")
        _check_finite(xyz, "coordinates", source)
        for name in ("rgb", "normals"):
            arr = getattr(self, name)
            if arr is None:
                continue
            if not isinstance(arr, np.ndarray) or arr.shape != (n, 3):
                raise DatasetFileError(f"{source}: {name} must be ({n}, 3) for {n} points, got shape {np.shape(arr)}")
            if not np.issubdtype(arr.dtype, np.floating):
                raise DatasetFileError(f"{source}: {name} must be a float array, got {arr.dtype}")
            _check_finite(arr, name, source)
        if self.rgb is not None and (self.rgb.min() < 0 or self.rgb.max() > 1):
            raise DatasetFileError(
                f"{source}: rgb must lie in [0, 1], got [{self.rgb.min():g}, {self.rgb.max():g}] "
                "(divide 0-255 colours by 255)")
        labels = self.labels
        if labels is not None:
            if not isinstance(labels, np.ndarray) or labels.ndim != 1:
                raise DatasetFileError(f"{source}: labels must be an (N,) array, got shape {np.shape(labels)}")
            if len(labels) != n:
                raise DatasetFileError(f"{source}: {len(labels)} labels for {n} points")
            if not np.issubdtype(labels.dtype, np.integer):
                raise DatasetFileError(f"{source}: labels must be integers, got {labels.dtype}")


def _check_finite(arr: np.ndarray, what: str, source: str) -> None:
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        raise DatasetFileError(
            f"{source}: {int(bad.sum())} of {len(arr)} points have NaN or infinite {what} "
            f"(first: point {int(np.argmax(bad))})")


def read_cloud(path: str | Path) -> PointCloud:
    """Read a point cloud; the suffix picks the format (see the module docstring)."""
    path = Path(path)
    reader = _format(path)[0]
    if not path.is_file():
        raise DatasetFileError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise DatasetFileError(f"{path}: empty file (0 bytes)")
    try:
        cloud = reader(path)
    except OSError as exc:  # permissions, I/O errors: still one exception type for the CLI
        raise DatasetFileError(f"{path}: cannot read ({exc})") from None
    except MemoryError as exc:  # a corrupt header declaring billions of points (tests/fuzzing.py, PCD)
        raise DatasetFileError(f"{path}: corrupt header: it declares more data than fits in memory ({exc})") from None
    cloud.validate(str(path))
    return cloud


def write_cloud(path: str | Path, cloud: PointCloud) -> Path:
    """Validate `cloud` and write it atomically in the format the suffix names."""
    path = Path(path)
    writer = _format(path)[1]
    cloud.validate(str(path))
    with _atomic_target(path) as tmp:
        writer(tmp, cloud, path)
    return path


@contextmanager
def _atomic_target(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success move it over `path`.

    The temporary name keeps the suffix because Open3D and laspy pick the format from it,
    and sits in the same folder so os.replace is a rename on one file system.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}{path.suffix}")
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:  # data on disk before the rename, so a crash cannot leave an empty file
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# ----------------------------------------------------------------------------- helpers


def _to_labels(values: np.ndarray, source: str) -> np.ndarray:
    """Labels as int64; float columns (text files, CloudCompare scalars) must hold integers."""
    values = np.asarray(values)
    if np.issubdtype(values.dtype, np.integer):
        return values.astype(np.int64)
    if np.issubdtype(values.dtype, np.floating):
        bad = ~np.isfinite(values) | (values != np.round(values))
        if bad.any():
            i = int(np.argmax(bad))
            raise DatasetFileError(f"{source}: labels must be whole numbers, point {i} has {values[i]!r}")
        return values.astype(np.int64)
    raise DatasetFileError(f"{source}: labels must be numbers, got {values.dtype}")


def _colour_to_unit(values: np.ndarray) -> np.ndarray:
    """Colours to float32 in [0, 1]: 8-bit ints /255, wider ints /65535, floats as they are."""
    if np.issubdtype(values.dtype, np.integer):
        scale = 255.0 if values.dtype.itemsize == 1 else 65535.0
        return (values / scale).astype(np.float32)
    return values.astype(np.float32)


def _check_label_range(labels: np.ndarray, lo: int, hi: int, fmt: str, path: Path) -> None:
    if labels.min() < lo or labels.max() > hi:
        raise DatasetFileError(
            f"{path}: {fmt} stores labels in [{lo}, {hi}], got [{labels.min()}, {labels.max()}]")


def _float_xyz(values: np.ndarray) -> np.ndarray:
    """float32 stays float32 (its precision is what the file had); anything else -> float64."""
    dtype = np.float32 if values.dtype == np.float32 else np.float64
    return np.ascontiguousarray(values, dtype=dtype)


# ----------------------------------------------------------------------------- PLY
# Own code rather than Open3D: Open3D drops custom vertex properties (our labels) and
# only warns on a bad file.

_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}
_PLY_NAMES = {"f4": "float", "f8": "double", "u1": "uchar", "i4": "int"}
_PLY_FORMATS = {"ascii": "", "binary_little_endian": "<", "binary_big_endian": ">"}
_PLY_LABEL_NAMES = ("label", "scalar_label")  # CloudCompare prefixes scalar fields


@dataclass
class _PlyElement:
    name: str
    count: int
    props: list[tuple[str, str]]  # (name, numpy type code, or "list")


def _parse_ply_header(data: bytes, source: str) -> tuple[str, list[_PlyElement], int]:
    """(format, elements, offset of the body) from the header text."""
    newline = data.find(b"\n")
    first = data[: newline if newline >= 0 else 16].strip()
    if first != b"ply":
        raise DatasetFileError(f"{source}: corrupt PLY header (first line is {first[:16]!r}, not 'ply')")
    fmt, elements = None, []
    while True:  # newline: index of the newline that ends the previous header line
        end = data.find(b"\n", newline + 1)
        if end < 0:
            raise DatasetFileError(f"{source}: corrupt PLY header (no 'end_header' line)")
        try:
            words = data[newline + 1:end].decode("ascii").split()
        except UnicodeDecodeError:
            raise DatasetFileError(f"{source}: corrupt PLY header (non-ASCII bytes before 'end_header')") from None
        newline = end
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words[0] == "end_header":
            break
        if words[0] == "format":
            if len(words) != 3 or words[1] not in _PLY_FORMATS:
                raise DatasetFileError(f"{source}: corrupt PLY header (unknown format '{' '.join(words)}')")
            fmt = words[1]
        else:
            _parse_ply_declaration(words, elements, source)
    if fmt is None:
        raise DatasetFileError(f"{source}: corrupt PLY header (no 'format' line)")
    return fmt, elements, end + 1


def _parse_ply_declaration(words: list[str], elements: list[_PlyElement], source: str) -> None:
    """An 'element' or 'property' line, appended to `elements`."""
    if words[0] == "element" and len(words) == 3 and words[2].isdigit():
        elements.append(_PlyElement(words[1], int(words[2]), []))
        return
    if words[0] == "property" and elements and len(words) == 3 and words[1] in _PLY_TYPES:
        elements[-1].props.append((words[2], _PLY_TYPES[words[1]]))
    elif words[0] == "property" and elements and len(words) == 5 and words[1] == "list":
        elements[-1].props.append((words[4], "list"))
    else:
        raise DatasetFileError(f"{source}: corrupt PLY header (cannot parse line '{' '.join(words)}')")
    names = [name for name, _ in elements[-1].props]
    if len(set(names)) != len(names):
        raise DatasetFileError(f"{source}: corrupt PLY header (property '{names[-1]}' repeated)")


def _read_ply(path: Path) -> PointCloud:
    source = str(path)
    data = path.read_bytes()
    fmt, elements, body = _parse_ply_header(data, source)
    vertex = next((el for el in elements if el.name == "vertex"), None)
    if vertex is None:
        raise DatasetFileError(f"{source}: corrupt PLY header (no 'element vertex')")
    if vertex.count == 0:
        raise DatasetFileError(f"{source}: empty cloud (PLY header declares 0 vertices)")
    if any(t == "list" for _, t in vertex.props):
        raise DatasetFileError(f"{source}: list properties on vertices are not supported")
    missing = {"x", "y", "z"} - {name for name, _ in vertex.props}
    if missing:
        raise DatasetFileError(f"{source}: PLY vertices lack {', '.join(sorted(missing))}")
    if fmt == "ascii":
        cols = _ply_ascii_vertices(data[body:], elements, vertex, source)
    else:
        cols = _ply_binary_vertices(data, body, elements, vertex, _PLY_FORMATS[fmt], source)
    return _ply_cloud(cols, source)


def _ply_binary_vertices(data: bytes, offset: int, elements: list[_PlyElement],
                         vertex: _PlyElement, order: str, source: str) -> dict[str, np.ndarray]:
    for el in elements:
        if any(t == "list" for _, t in el.props):  # variable row size: cannot skip to vertices
            raise DatasetFileError(f"{source}: element '{el.name}' with list properties precedes the vertices")
        dtype = np.dtype([(name, order + t) for name, t in el.props])
        need = el.count * dtype.itemsize
        if el is vertex:
            have = len(data) - offset
            if have < need:
                raise DatasetFileError(
                    f"{source}: truncated PLY: header declares {el.count} vertices ({need} bytes) "
                    f"but only {have} bytes follow the header")
            rows = np.frombuffer(data, dtype=dtype, count=el.count, offset=offset)
            return {name: rows[name].astype(rows.dtype[name].newbyteorder("=")) for name, _ in el.props}
        offset += need
    raise AssertionError("vertex element is in elements")


def _ply_ascii_vertices(body: bytes, elements: list[_PlyElement], vertex: _PlyElement,
                        source: str) -> dict[str, np.ndarray]:
    # One line per element row; rows of elements before the vertices are skipped.
    skip = sum(el.count for el in elements[: elements.index(vertex)])
    try:
        lines = [ln for ln in body.decode("ascii").splitlines() if ln.strip()]
    except UnicodeDecodeError:
        raise DatasetFileError(f"{source}: ascii PLY body has non-ASCII bytes") from None
    rows = lines[skip: skip + vertex.count]
    if len(rows) < vertex.count:
        raise DatasetFileError(
            f"{source}: truncated PLY: header declares {vertex.count} vertices but the body "
            f"holds {len(rows)} vertex lines")
    try:
        table = np.loadtxt(rows, dtype=np.float64, ndmin=2)
    except ValueError as exc:  # ragged rows or words that are not numbers
        raise DatasetFileError(f"{source}: bad PLY vertex line ({exc})") from None
    if table.shape[1] != len(vertex.props):
        raise DatasetFileError(
            f"{source}: PLY vertex lines have {table.shape[1]} values, header declares {len(vertex.props)}")
    return {name: table[:, i].astype(t) for i, (name, t) in enumerate(vertex.props)}


def _ply_cloud(cols: dict[str, np.ndarray], source: str) -> PointCloud:
    xyz = np.column_stack([cols["x"], cols["y"], cols["z"]])
    cloud = PointCloud(_float_xyz(xyz))
    for names in (("red", "green", "blue"), ("diffuse_red", "diffuse_green", "diffuse_blue")):
        if all(n in cols for n in names):
            cloud.rgb = _colour_to_unit(np.column_stack([cols[n] for n in names]))
            break
    if all(n in cols for n in ("nx", "ny", "nz")):
        cloud.normals = np.column_stack([cols["nx"], cols["ny"], cols["nz"]])
    label = next((n for n in _PLY_LABEL_NAMES if n in cols), None)
    if label is not None:
        cloud.labels = _to_labels(cols[label], source)
    return cloud


def _write_ply(tmp: Path, cloud: PointCloud, path: Path) -> None:
    ftype = "f4" if cloud.xyz.dtype == np.float32 else "f8"
    columns: list[tuple[str, str, np.ndarray]] = [
        (axis, ftype, cloud.xyz[:, i]) for i, axis in enumerate("xyz")]
    if cloud.normals is not None:
        columns += [(n, "f4", cloud.normals[:, i]) for i, n in enumerate(("nx", "ny", "nz"))]
    if cloud.rgb is not None:
        rgb8 = np.round(cloud.rgb * 255)
        columns += [(n, "u1", rgb8[:, i]) for i, n in enumerate(("red", "green", "blue"))]
    if cloud.labels is not None:
        _check_label_range(cloud.labels, -(2**31), 2**31 - 1, "PLY (int property)", path)
        columns.append(("label", "i4", cloud.labels))
    rows = np.empty(len(cloud), dtype=[(name, "<" + t) for name, t, _ in columns])
    for name, _, values in columns:
        rows[name] = values
    header = ["ply", "format binary_little_endian 1.0", "comment written by data_tools.io",
              f"element vertex {len(cloud)}"]
    header += [f"property {_PLY_NAMES[t]} {name}" for name, t, _ in columns]
    header.append("end_header\n")
    with open(tmp, "wb") as f:
        f.write("\n".join(header).encode("ascii"))
        f.write(rows.tobytes())


# ----------------------------------------------------------------------------- PCD


def _read_pcd(path: Path) -> PointCloud:
    import open3d as o3d  # heavy import: only when a PCD is read

    source = str(path)
    data = path.read_bytes()
    declared, kind, body = _pcd_header(data)
    # The header first: on a header without its DATA line (tests/fuzzing.py) Open3D spent
    # 40 s and gigabytes on a 1.5 kB file and returned points.
    if kind not in ("ascii", "binary", "binary_compressed"):
        raise DatasetFileError(f"{source}: corrupt PCD header (no 'DATA ascii|binary|binary_compressed' line)")
    # Open3D only prints a warning for a bad file and returns an empty cloud; we raise.
    try:
        with o3d.utility.VerbosityContextManager(o3d.utility.VerbosityLevel.Error):
            pc = o3d.t.io.read_point_cloud(source)
    except (RuntimeError, UnicodeDecodeError) as exc:  # non-UTF-8 header bytes: found by tests/fuzzing.py
        raise DatasetFileError(f"{source}: Open3D cannot read it ({type(exc).__name__}: {exc})") from None
    if pc.is_empty() or "positions" not in pc.point:
        if declared == 0:
            raise DatasetFileError(f"{source}: empty cloud (PCD header declares 0 points)")
        raise DatasetFileError(
            f"{source}: Open3D read no points (corrupt header, truncated body or unsupported PCD)")
    n = len(pc.point.positions)
    if declared is not None and declared != n:
        raise DatasetFileError(f"{source}: PCD header declares {declared} points, Open3D read {n}")
    if kind == "ascii":  # Open3D fills missing ascii lines with garbage instead of failing
        lines = sum(1 for ln in data[body:].splitlines() if ln.strip())
        if lines < n:
            raise DatasetFileError(f"{source}: truncated PCD: header declares {n} points, body has {lines} lines")
    cloud = PointCloud(_float_xyz(pc.point.positions.numpy()))
    if "colors" in pc.point:
        cloud.rgb = _colour_to_unit(pc.point.colors.numpy())
    if "normals" in pc.point:
        cloud.normals = pc.point.normals.numpy()
    if "label" in pc.point:
        cloud.labels = _to_labels(pc.point.label.numpy().reshape(-1), source)
    return cloud


def _pcd_header(data: bytes) -> tuple[int | None, str | None, int]:
    """(POINTS, DATA kind, offset after the DATA line); None where the header lacks them."""
    points, pos = None, 0
    while pos < len(data):
        end = data.find(b"\n", pos)
        end = len(data) if end < 0 else end
        words = data[pos:end].split()
        pos = end + 1
        if len(words) == 2 and words[0] == b"POINTS" and words[1].isdigit():
            points = int(words[1])
        if words and words[0] == b"DATA":
            return points, (words[1].decode("ascii", "replace") if len(words) > 1 else None), pos
    return points, None, pos


def _write_pcd(tmp: Path, cloud: PointCloud, path: Path) -> None:
    import open3d as o3d

    pc = o3d.t.geometry.PointCloud()
    pc.point.positions = o3d.core.Tensor(np.ascontiguousarray(cloud.xyz))
    if cloud.rgb is not None:
        pc.point.colors = o3d.core.Tensor(np.ascontiguousarray(cloud.rgb, dtype=np.float32))
    if cloud.normals is not None:
        # Open3D 0.20 writes a header with the positions' size for normals; other dtypes
        # give a binary file it cannot read back.
        pc.point.normals = o3d.core.Tensor(np.ascontiguousarray(cloud.normals, dtype=cloud.xyz.dtype))
    if cloud.labels is not None:
        _check_label_range(cloud.labels, -(2**31), 2**31 - 1, "PCD (int32 field)", path)
        pc.point.label = o3d.core.Tensor(cloud.labels.astype(np.int32).reshape(-1, 1))
    with o3d.utility.VerbosityContextManager(o3d.utility.VerbosityLevel.Error):
        ok = o3d.t.io.write_point_cloud(str(tmp), pc, write_ascii=False, compressed=False)
    if not ok:
        raise DatasetFileError(f"{path}: Open3D failed to write the PCD")


# ----------------------------------------------------------------------------- LAS / LAZ


def _require_laz_backend(path: Path) -> None:
    import laspy

    if path.suffix.lower() == ".laz" and not laspy.LazBackend.detect_available():
        raise DatasetFileError(
            f"{path}: LAZ needs a LAZ backend for laspy and none is installed "
            "(pip install lazrs, or laszip); use .las for uncompressed files")


def _check_las_header(path: Path, compressed: bool) -> None:
    """The LAS public header's sizes against the file's length, before laspy reads it:
    tests/fuzzing.py found mutated headers on which laspy.read never returns. Reads only
    the header (375 bytes at most), not the points."""
    import struct

    source, size = str(path), path.stat().st_size
    with open(path, "rb") as f:
        data = f.read(375)
    if len(data) < 227 or data[:4] != b"LASF":
        raise DatasetFileError(f"{source}: not a LAS file (no 'LASF' signature / header shorter than 227 bytes)")
    minor = data[25]
    header_size, offset, n_vlrs = struct.unpack_from("<HII", data, 94)
    record_length = struct.unpack_from("<H", data, 105)[0]
    count = struct.unpack_from("<I", data, 107)[0]
    if minor >= 4 and len(data) >= 375:
        first_evlr, n_evlrs, count14 = struct.unpack_from("<QIQ", data, 235)
        count = count14 or count
        if n_evlrs and (first_evlr > size or n_evlrs * 60 > size - first_evlr):
            raise DatasetFileError(f"{source}: corrupt LAS header ({n_evlrs} extended VLRs at byte "
                                   f"{first_evlr} of a {size}-byte file)")
    if not (227 <= header_size <= offset <= size) or n_vlrs * 54 > offset - header_size:
        raise DatasetFileError(f"{source}: corrupt LAS header (header {header_size} bytes, points at byte "
                               f"{offset}, {n_vlrs} VLRs, file {size} bytes)")
    if not compressed and count * record_length > size - offset:
        raise DatasetFileError(f"{source}: truncated LAS: header declares {count} points of {record_length} "
                               f"bytes, the file holds {size - offset} bytes of point data")


def _read_las(path: Path) -> PointCloud:
    import laspy

    source = str(path)
    _require_laz_backend(path)
    _check_las_header(path, path.suffix.lower() == ".laz")
    try:
        las = laspy.read(source)
    except Exception as exc:  # LaspyException, ValueError on a short buffer, backend errors
        raise DatasetFileError(f"{source}: corrupt or truncated LAS/LAZ ({type(exc).__name__}: {exc})") from None
    # laspy reads whole records only: a body cut at a record boundary just gives fewer points.
    if len(las.points) != las.header.point_count:
        raise DatasetFileError(
            f"{source}: truncated LAS: header declares {las.header.point_count} points, "
            f"the file holds {len(las.points)}")
    xyz = np.column_stack([np.asarray(las.x), np.asarray(las.y), np.asarray(las.z)]).astype(np.float64)
    cloud = PointCloud(xyz)
    dims = set(las.point_format.dimension_names)
    if {"red", "green", "blue"} <= dims:
        rgb = np.column_stack([np.asarray(las.red), np.asarray(las.green), np.asarray(las.blue)])
        if rgb.any():  # all-zero colours are what writers put when there were none
            scale = 65535.0 if rgb.max() > 255 else 255.0  # some writers store 8-bit values
            cloud.rgb = (rgb / scale).astype(np.float32)
    classes = np.asarray(las.classification)
    if classes.any():  # 0 everywhere = ASPRS "never classified": no labels
        cloud.labels = classes.astype(np.int64)
    return cloud


def _las_scales(xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Offsets and scales so that every coordinate fits the int32 LAS records."""
    offsets = np.floor(xyz.min(axis=0))
    span = float((xyz.max(axis=0) - offsets).max())
    scale = 1e-6
    while span / scale > 2e9:  # int32 holds up to 2.1e9 steps
        scale *= 10
    return offsets, np.full(3, scale)


def _write_las(tmp: Path, cloud: PointCloud, path: Path) -> None:
    import laspy

    _require_laz_backend(path)
    if cloud.labels is not None:
        _check_label_range(cloud.labels, 0, 255, "LAS (8-bit classification)", path)
    # LAS 1.4 formats 6/7: 8-bit classification (formats 0-5 hold only 0-31, not 255).
    header = laspy.LasHeader(point_format=7 if cloud.rgb is not None else 6, version="1.4")
    header.offsets, header.scales = _las_scales(cloud.xyz.astype(np.float64))
    las = laspy.LasData(header)
    las.x, las.y, las.z = (cloud.xyz[:, i].astype(np.float64) for i in range(3))
    if cloud.rgb is not None:
        rgb16 = np.round(cloud.rgb.astype(np.float64) * 65535).astype(np.uint16)
        las.red, las.green, las.blue = rgb16[:, 0], rgb16[:, 1], rgb16[:, 2]
    if cloud.labels is not None:
        las.classification = cloud.labels.astype(np.uint8)
    las.write(str(tmp), do_compress=path.suffix.lower() == ".laz")


# ----------------------------------------------------------------------------- text / npy

# column count -> (colours, normals, label); see the module docstring
_LAYOUTS = {3: (False, False, False), 4: (False, False, True), 6: (True, False, False),
            7: (True, False, True), 9: (True, True, False), 10: (True, True, True)}


def _cloud_from_table(table: np.ndarray, source: str) -> PointCloud:
    if table.ndim != 2 or table.shape[1] not in _LAYOUTS:
        raise DatasetFileError(
            f"{source}: table of shape {table.shape} has no column layout; expected N rows of "
            f"{', '.join(map(str, _LAYOUTS))} columns")
    has_rgb, has_normals, has_label = _LAYOUTS[table.shape[1]]
    cloud = PointCloud(_float_xyz(table[:, :3]))
    if has_rgb:
        rgb = table[:, 3:6].astype(np.float64)
        cloud.rgb = (rgb / 255.0 if rgb.max() > 1 else rgb).astype(np.float32)
    if has_normals:
        cloud.normals = np.ascontiguousarray(table[:, 6:9])
    if has_label:
        cloud.labels = _to_labels(table[:, -1], source)
    return cloud


def _table_columns(cloud: PointCloud, path: Path) -> list[np.ndarray]:
    if cloud.normals is not None and cloud.rgb is None:
        raise DatasetFileError(
            f"{path}: the column layouts have no slot for normals without colours "
            "(6 columns mean x y z r g b); write .ply or .npz instead")
    cols = [cloud.xyz]
    cols += [c for c in (cloud.rgb, cloud.normals) if c is not None]
    if cloud.labels is not None:
        cols.append(cloud.labels[:, None])
    return cols


def _read_txt(path: Path) -> PointCloud:
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DatasetFileError(f"{source}: not a text file (bytes that are not UTF-8)") from None
    lines = (line.replace(",", " ") for line in text.splitlines())  # CSV exports too
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "input contained no data": we raise below
            table = np.loadtxt(lines, dtype=np.float64, comments=("#", "//"), ndmin=2)
    except ValueError as exc:  # ragged rows, words that are not numbers
        raise DatasetFileError(f"{source}: not a table of numbers ({exc})") from None
    if table.size == 0:
        raise DatasetFileError(f"{source}: empty cloud (no data lines)")
    return _cloud_from_table(table, source)


def _write_txt(tmp: Path, cloud: PointCloud, path: Path) -> None:
    cols = _table_columns(cloud, path)
    # shortest formats that round-trip the dtype exactly
    fmts = []
    for col in cols:
        fmt = "%d" if np.issubdtype(col.dtype, np.integer) else (
            "%.9g" if col.dtype == np.float32 else "%.17g")
        fmts += [fmt] * col.shape[1]
    header = "x y z"
    header += " r g b (0-1)" if cloud.rgb is not None else ""
    header += " nx ny nz" if cloud.normals is not None else ""
    header += " label" if cloud.labels is not None else ""
    table = np.column_stack([c.astype(np.float64) for c in cols])
    with open(tmp, "w", encoding="utf-8") as f:  # the header line is a '#' comment
        np.savetxt(f, table, fmt=fmts, header=header)


def _read_npy(path: Path) -> PointCloud:
    source = str(path)
    try:
        table = np.load(path, allow_pickle=False)
    except Exception as exc:  # ValueError / EOFError / UnpicklingError on a bad file
        raise DatasetFileError(f"{source}: corrupt or truncated .npy ({type(exc).__name__}: {exc})") from None
    if not (np.issubdtype(table.dtype, np.floating) or np.issubdtype(table.dtype, np.integer)):
        raise DatasetFileError(f"{source}: .npy must hold numbers, got {table.dtype}")
    return _cloud_from_table(table, source)


def _write_npy(tmp: Path, cloud: PointCloud, path: Path) -> None:
    cols = _table_columns(cloud, path)
    # float64 once labels are in: float32 holds whole numbers exactly only up to 2**24
    dtype = np.float64 if cloud.labels is not None else cloud.xyz.dtype
    with open(tmp, "wb") as f:  # a file object: np.save would append .npy to the tmp name
        np.save(f, np.column_stack([c.astype(dtype) for c in cols]))


# ----------------------------------------------------------------------------- npz


def _read_npz(path: Path) -> PointCloud:
    source = str(path)
    with open(path, "rb") as f:
        if f.read(4) != b"PK\x03\x04":  # np.load would try pickle and give a misleading error
            raise DatasetFileError(f"{source}: not an .npz (zip) file")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except Exception as exc:  # BadZipFile, EOFError, ValueError on truncation
        raise DatasetFileError(f"{source}: corrupt or truncated .npz ({type(exc).__name__}: {exc})") from None
    if "xyz" not in arrays:
        raise DatasetFileError(f"{source}: has no array 'xyz' (found {sorted(arrays)})")
    # np.load hands back a member that is not a .npy array as raw bytes (tests/fuzzing.py).
    raw = sorted(k for k, v in arrays.items() if not isinstance(v, np.ndarray))
    if raw:
        raise DatasetFileError(f"{source}: member(s) {raw} are not .npy arrays (corrupt archive directory)")
    xyz = arrays["xyz"]
    if np.issubdtype(xyz.dtype, np.integer):
        xyz = xyz.astype(np.float64)
    cloud = PointCloud(xyz)
    if "rgb" in arrays:
        cloud.rgb = _colour_to_unit(arrays["rgb"])
    cloud.normals = arrays.get("normals")
    if "labels" in arrays:
        cloud.labels = _to_labels(arrays["labels"], source)
    return cloud


def _write_npz(tmp: Path, cloud: PointCloud, path: Path) -> None:
    fields = {"xyz": cloud.xyz, "rgb": cloud.rgb, "normals": cloud.normals, "labels": cloud.labels}
    with open(tmp, "wb") as f:  # a file object: np.savez would append .npz to the tmp name
        np.savez(f, **{k: v for k, v in fields.items() if v is not None})


# ----------------------------------------------------------------------------- dispatch

_Reader = Callable[[Path], PointCloud]
_Writer = Callable[[Path, PointCloud, Path], None]
_FORMATS: dict[str, tuple[_Reader, _Writer]] = {
    ".ply": (_read_ply, _write_ply),
    ".pcd": (_read_pcd, _write_pcd),
    ".las": (_read_las, _write_las),
    ".laz": (_read_las, _write_las),
    ".xyz": (_read_txt, _write_txt),
    ".txt": (_read_txt, _write_txt),
    ".npy": (_read_npy, _write_npy),
    ".npz": (_read_npz, _write_npz),
}
SUFFIXES = tuple(_FORMATS)


def _format(path: Path) -> tuple[_Reader, _Writer]:
    try:
        return _FORMATS[path.suffix.lower()]
    except KeyError:
        raise DatasetFileError(
            f"{path}: unsupported point-cloud suffix '{path.suffix}'; use one of {', '.join(SUFFIXES)}") from None
