"""Point-cloud files: every format round-trips what it carries; bad files fail clearly."""

from __future__ import annotations

import re
from contextlib import contextmanager
from pathlib import Path

import laspy
import numpy as np
import pytest

from data_tools.io import SUFFIXES, PointCloud, read_cloud, write_cloud
from data_tools.splits import DatasetFileError

HAS_LAZ = bool(laspy.LazBackend.detect_available())
N = 40


@pytest.fixture
def cloud() -> PointCloud:
    rng = np.random.default_rng(0)
    normals = rng.normal(size=(N, 3)).astype(np.float32)
    return PointCloud(
        xyz=rng.uniform(-5, 5, size=(N, 3)),
        # multiples of 1/255 so 8-bit formats hold them exactly
        rgb=(rng.integers(0, 256, size=(N, 3)) / 255).astype(np.float32),
        normals=normals / np.linalg.norm(normals, axis=1, keepdims=True),
        labels=rng.choice([0, 1, 2, 255], size=N).astype(np.int64),
    )


@contextmanager
def fails(path: Path, problem: str):
    """DatasetFileError whose message matches `problem` and names `path`."""
    with pytest.raises(DatasetFileError, match=problem) as info:
        yield
    assert str(path) in str(info.value)


def check_same(got: PointCloud, want: PointCloud, *, xyz_atol=0.0, rgb_atol=1e-6,
               normals=True, labels=True) -> None:
    np.testing.assert_allclose(got.xyz, want.xyz, rtol=0, atol=xyz_atol)
    assert got.rgb is not None and got.rgb.dtype == np.float32
    np.testing.assert_allclose(got.rgb, want.rgb, rtol=0, atol=rgb_atol)
    if normals:
        np.testing.assert_allclose(got.normals, want.normals, rtol=0, atol=1e-6)
    else:
        assert got.normals is None
    if labels:
        assert got.labels.dtype == np.int64
        np.testing.assert_array_equal(got.labels, want.labels)
    else:
        assert got.labels is None


# ----------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_ply_binary_round_trip(tmp_path, cloud, dtype):
    cloud.xyz = cloud.xyz.astype(dtype)
    path = write_cloud(tmp_path / "c.ply", cloud)
    assert path.read_bytes().startswith(b"ply\nformat binary_little_endian 1.0\n")
    got = read_cloud(path)
    assert got.xyz.dtype == dtype
    check_same(got, cloud)


def test_ply_ascii_read(tmp_path):
    # a face element after the vertices, a float label (CloudCompare-style), CRLF lines
    text = (
        "ply\r\nformat ascii 1.0\r\ncomment made by hand\r\nelement vertex 3\r\n"
        "property float x\r\nproperty float y\r\nproperty float z\r\n"
        "property uchar red\r\nproperty uchar green\r\nproperty uchar blue\r\n"
        "property float scalar_label\r\nelement face 1\r\n"
        "property list uchar int vertex_indices\r\nend_header\r\n"
        "0 0 0 255 0 0 0\r\n1.5 0 0 0 255 0 1\r\n0 2 -3 0 0 51 255\r\n3 0 1 2\r\n"
    )
    path = tmp_path / "a.ply"
    path.write_text(text, newline="")
    got = read_cloud(path)
    assert got.xyz.dtype == np.float32
    np.testing.assert_array_equal(got.xyz, [[0, 0, 0], [1.5, 0, 0], [0, 2, -3]])
    np.testing.assert_allclose(got.rgb, [[1, 0, 0], [0, 1, 0], [0, 0, 0.2]], atol=1e-6)
    assert got.normals is None
    assert got.labels.tolist() == [0, 1, 255]


def test_ply_big_endian_read(tmp_path):
    rows = np.array([(1.0, 2.0, 3.0, 2), (4.0, 5.0, 6.0, 1)],
                    dtype=[("x", ">f8"), ("y", ">f8"), ("z", ">f8"), ("label", ">i4")])
    header = ("ply\nformat binary_big_endian 1.0\nelement vertex 2\nproperty double x\n"
              "property double y\nproperty double z\nproperty int label\nend_header\n")
    path = tmp_path / "b.ply"
    path.write_bytes(header.encode() + rows.tobytes())
    got = read_cloud(path)
    np.testing.assert_array_equal(got.xyz, [[1, 2, 3], [4, 5, 6]])
    assert got.labels.tolist() == [2, 1] and got.rgb is None


def test_pcd_round_trip(tmp_path, cloud):
    got = read_cloud(write_cloud(tmp_path / "c.pcd", cloud))
    check_same(got, cloud)  # PCD packs colours in 8 bits; ours are multiples of 1/255


def test_las_round_trip(tmp_path, cloud):
    cloud.rgb = np.random.default_rng(1).uniform(0, 1, size=(N, 3)).astype(np.float32)
    got = read_cloud(write_cloud(tmp_path / "c.las", cloud))
    # scaled-integer coordinates (1e-6 steps), 16-bit colours, no normals in LAS
    check_same(got, cloud, xyz_atol=1e-6, rgb_atol=1 / 65535, normals=False)


def test_las_without_colours_or_labels(tmp_path, cloud):
    bare = PointCloud(cloud.xyz)
    got = read_cloud(write_cloud(tmp_path / "bare.las", bare))
    np.testing.assert_allclose(got.xyz, bare.xyz, rtol=0, atol=1e-6)
    # format 6 has no colours; classification 0 everywhere reads as "no labels"
    assert got.rgb is None and got.labels is None


@pytest.mark.skipif(not HAS_LAZ, reason="no LAZ backend (lazrs / laszip) installed for laspy")
def test_laz_round_trip(tmp_path, cloud):
    got = read_cloud(write_cloud(tmp_path / "c.laz", cloud))
    check_same(got, cloud, xyz_atol=1e-6, rgb_atol=1 / 65535, normals=False)


def test_laz_without_backend_names_it(tmp_path, cloud, monkeypatch):
    # lazrs is installed with the project, but a user's environment may lack it: then
    # both directions must say so instead of failing inside laspy.
    import laspy

    monkeypatch.setattr(laspy.LazBackend, "detect_available", staticmethod(lambda: ()))
    path = tmp_path / "c.laz"
    with fails(path, "LAZ backend.*lazrs"):
        write_cloud(path, cloud)
    assert list(tmp_path.iterdir()) == []  # nothing half-written
    path.write_bytes(b"LASF" + bytes(400))
    with fails(path, "LAZ backend.*lazrs"):
        read_cloud(path)


@pytest.mark.parametrize("suffix", [".xyz", ".txt", ".npy"])
@pytest.mark.parametrize("fields", ["", "labels", "rgb", "rgb labels", "rgb normals", "rgb normals labels"])
def test_table_round_trip(tmp_path, cloud, suffix, fields):
    keep = PointCloud(cloud.xyz, **{f: getattr(cloud, f) for f in fields.split()})
    got = read_cloud(write_cloud(tmp_path / f"c{suffix}", keep))
    np.testing.assert_array_equal(got.xyz, keep.xyz)
    for name in ("rgb", "normals", "labels"):
        if getattr(keep, name) is None:
            assert getattr(got, name) is None, name
        else:  # text holds float32 normals exactly, but they read back as float64
            np.testing.assert_allclose(getattr(got, name), getattr(keep, name), rtol=1e-7, atol=0)
    if keep.labels is not None:
        np.testing.assert_array_equal(got.labels, keep.labels)


def test_txt_conventions(tmp_path):
    # 0-255 colours (a value above 1), comment lines, commas, xyz+rgb+label = 7 columns
    path = tmp_path / "t.txt"
    path.write_text("//X Y Z R G B label\n0 0 0 255 0 0 2\n# note\n1,2,3,0,51,0,1\n")
    got = read_cloud(path)
    np.testing.assert_array_equal(got.xyz, [[0, 0, 0], [1, 2, 3]])
    np.testing.assert_allclose(got.rgb, [[1, 0, 0], [0, 0.2, 0]], atol=1e-6)
    assert got.labels.tolist() == [2, 1] and got.normals is None
    path.write_text("0 0 0 0.5 0.25 1\n")  # all colours <= 1: already 0-1
    np.testing.assert_allclose(read_cloud(path).rgb, [[0.5, 0.25, 1]])


def test_npy_four_columns_are_xyz_label(tmp_path):
    path = tmp_path / "p.npy"
    np.save(path, np.array([[0, 0, 0, 1], [1, 1, 1, 2]], dtype=np.float32))
    got = read_cloud(path)
    assert got.xyz.dtype == np.float32 and got.labels.tolist() == [1, 2] and got.rgb is None


def test_npz_round_trip(tmp_path, cloud):
    check_same(read_cloud(write_cloud(tmp_path / "c.npz", cloud)), cloud)
    with np.load(tmp_path / "c.npz") as f:
        assert set(f.files) == {"xyz", "rgb", "normals", "labels"}


def test_npz_uint8_colours_are_scaled(tmp_path):
    path = tmp_path / "u.npz"
    np.savez(path, xyz=np.zeros((2, 3)), rgb=np.array([[255, 0, 51], [0, 0, 0]], dtype=np.uint8))
    np.testing.assert_allclose(read_cloud(path).rgb, [[1, 0, 0.2], [0, 0, 0]], atol=1e-6)


# ----------------------------------------------------------------------------- bad inputs


def test_truncated_binary_ply(tmp_path, cloud):
    path = write_cloud(tmp_path / "t.ply", cloud)
    path.write_bytes(path.read_bytes()[:-10])
    with fails(path, f"truncated PLY: header declares {N} vertices"):
        read_cloud(path)


def test_truncated_ascii_ply(tmp_path):
    path = tmp_path / "t.ply"
    path.write_text("ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\n"
                    "property float y\nproperty float z\nend_header\n0 0 0\n1 1 1\n")
    with fails(path, "truncated PLY: header declares 3 vertices but the body holds 2"):
        read_cloud(path)


@pytest.mark.parametrize("header, problem", [
    ("plx\nformat ascii 1.0\nelement vertex 1\nproperty float x\nend_header\n", "not 'ply'"),
    ("ply\nformat ascii 1.0\nelement vertex many\nend_header\n", "cannot parse line 'element vertex many'"),
    ("ply\nformat ascii 1.0\nelement vertex 1\nproperty float128 x\nend_header\n", "cannot parse line"),
    ("ply\nformat binary_middle_endian 1.0\nelement vertex 1\nend_header\n", "unknown format"),
    ("ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\n", "no 'end_header'"),
    ("ply\nelement vertex 1\nproperty float x\nend_header\n0\n", "no 'format' line"),
    ("ply\nformat ascii 1.0\nelement face 1\nproperty float x\nend_header\n0\n", "no 'element vertex'"),
    ("ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nproperty float y\nend_header\n0 0\n",
     "lack z"),
])
def test_corrupt_ply_header(tmp_path, header, problem):
    path = tmp_path / "h.ply"
    path.write_text(header)
    with fails(path, re.escape(problem)):
        read_cloud(path)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_empty_file(tmp_path, suffix):
    path = tmp_path / f"e{suffix}"
    path.touch()
    with fails(path, r"empty file \(0 bytes\)"):
        read_cloud(path)


def test_missing_file_and_unknown_suffix(tmp_path, cloud):
    with fails(tmp_path / "nope.ply", "no such file"):
        read_cloud(tmp_path / "nope.ply")
    with fails(tmp_path / "c.obj", "unsupported point-cloud suffix '.obj'"):
        write_cloud(tmp_path / "c.obj", cloud)


def test_empty_cloud(tmp_path):
    path = tmp_path / "z.ply"
    path.write_text("ply\nformat ascii 1.0\nelement vertex 0\nproperty float x\n"
                    "property float y\nproperty float z\nend_header\n")
    with fails(path, "empty cloud"):
        read_cloud(path)
    txt = tmp_path / "z.txt"
    txt.write_text("# header only\n")
    with fails(txt, "empty cloud"):
        read_cloud(txt)


def test_nan_coordinates(tmp_path, cloud):
    txt = tmp_path / "n.txt"
    txt.write_text("0 0 0\n1 nan 1\n2 2 2\n")
    with fails(txt, r"1 of 3 points have NaN or infinite coordinates \(first: point 1\)"):
        read_cloud(txt)
    cloud.xyz[5, 2] = np.inf
    with fails(tmp_path / "n.ply", "NaN or infinite coordinates"):
        write_cloud(tmp_path / "n.ply", cloud)
    # a binary file with a NaN written by some other tool
    cloud.xyz[5, 2] = np.nan
    np.savez(tmp_path / "n.npz", xyz=cloud.xyz)
    with fails(tmp_path / "n.npz", "NaN or infinite coordinates"):
        read_cloud(tmp_path / "n.npz")


def test_labels_of_wrong_length(tmp_path, cloud):
    cloud.labels = cloud.labels[:-1]
    path = tmp_path / "w.ply"
    with fails(path, f"{N - 1} labels for {N} points"):
        write_cloud(path, cloud)
    assert not path.exists()
    npz = tmp_path / "w.npz"
    np.savez(npz, xyz=cloud.xyz, labels=cloud.labels)
    with fails(npz, f"{N - 1} labels for {N} points"):
        read_cloud(npz)


def test_bad_field_values(tmp_path, cloud):
    path = tmp_path / "b.npz"
    with fails(path, r"rgb must lie in \[0, 1\]"):
        write_cloud(path, PointCloud(cloud.xyz, rgb=cloud.rgb * 255))
    with fails(path, "labels must be integers"):
        write_cloud(path, PointCloud(cloud.xyz, labels=cloud.labels.astype(np.float32)))
    with fails(path, r"normals must be \(40, 3\)"):
        write_cloud(path, PointCloud(cloud.xyz, normals=cloud.normals[:, :2]))
    las = tmp_path / "b.las"
    cloud.labels[0] = 300
    with fails(las, r"LAS \(8-bit classification\) stores labels in \[0, 255\]"):
        write_cloud(las, cloud)
    txt = tmp_path / "f.txt"
    txt.write_text("0 0 0 1.5\n")
    with fails(txt, "labels must be whole numbers"):
        read_cloud(txt)


def test_table_layout_errors(tmp_path, cloud):
    txt = tmp_path / "five.txt"
    txt.write_text("0 0 0 1 1\n")
    with fails(txt, r"shape \(1, 5\) has no column layout"):
        read_cloud(txt)
    ragged = tmp_path / "ragged.xyz"
    ragged.write_text("0 0 0\n1 1\n")
    with fails(ragged, "not a table of numbers"):
        read_cloud(ragged)
    with fails(tmp_path / "n.txt", "no slot for normals without colours"):
        write_cloud(tmp_path / "n.txt", PointCloud(cloud.xyz, normals=cloud.normals))


def test_garbage_pcd_that_open3d_reads_as_empty(tmp_path):
    path = tmp_path / "g.pcd"
    path.write_bytes(b"this is not a point cloud\x00\x01\x02")
    with fails(path, "corrupt PCD header"):  # caught before Open3D: no DATA line
        read_cloud(path)


def test_truncated_pcd(tmp_path, cloud):
    path = write_cloud(tmp_path / "t.pcd", cloud)
    path.write_bytes(path.read_bytes()[:-7])  # binary: Open3D reads nothing
    with fails(path, "Open3D read no points"):
        read_cloud(path)
    # ascii: Open3D fills missing lines with garbage, so the reader counts the lines
    ascii_pcd = tmp_path / "a.pcd"
    ascii_pcd.write_text("VERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\n"
                         "WIDTH 3\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS 3\nDATA ascii\n"
                         "0 0 0\n1 1 1\n")
    with fails(ascii_pcd, "truncated PCD: header declares 3 points, body has 2 lines"):
        read_cloud(ascii_pcd)


def test_corrupt_las(tmp_path, cloud):
    path = write_cloud(tmp_path / "t.las", cloud)
    data = path.read_bytes()
    path.write_bytes(data[:-36 * 3])  # three whole records gone: laspy alone reads fewer points
    # The header check (before laspy, which can hang on a mutated header) sees it first.
    with fails(path, f"truncated LAS: header declares {N} points of 36 bytes"):
        read_cloud(path)
    path.write_bytes(data[:-5])
    with fails(path, "truncated LAS"):
        read_cloud(path)
    path.write_bytes(b"not a las file" * 30)
    with fails(path, "not a LAS file"):
        read_cloud(path)
    path.write_bytes(data[:300])  # a valid header, VLRs and points cut off
    with fails(path, "LAS"):
        read_cloud(path)


def test_corrupt_npy_and_npz(tmp_path, cloud):
    npy = write_cloud(tmp_path / "c.npy", cloud)
    npy.write_bytes(npy.read_bytes()[:-8])
    with fails(npy, "corrupt or truncated .npy"):
        read_cloud(npy)
    npz = tmp_path / "c.npz"
    npz.write_bytes(b"garbage, not a zip")
    with fails(npz, r"not an .npz \(zip\) file"):
        read_cloud(npz)
    np.savez(npz, points=cloud.xyz)
    with fails(npz, "has no array 'xyz'"):
        read_cloud(npz)


def test_failed_write_keeps_the_old_file(tmp_path, cloud, monkeypatch):
    path = write_cloud(tmp_path / "c.npy", cloud)
    before = path.read_bytes()

    def broken_save(f, arr):  # the disk fills up half-way through
        f.write(b"\x93NUMPY partial")
        raise OSError("No space left on device")

    monkeypatch.setattr(np, "save", broken_save)
    with pytest.raises(OSError, match="No space left"):
        write_cloud(path, PointCloud(cloud.xyz))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["c.npy"]  # no temporary file left
