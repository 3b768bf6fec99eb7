"""Preparing a photogrammetry cloud: voxels, outliers, gravity, scale, blocks and voting."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from data_tools.io import PointCloud
from data_tools.prepare import (
    denormalise,
    fit_ground_plane,
    gravity_align,
    normalise,
    remove_statistical_outliers,
    rotation_to_z,
    scale_cloud,
    scale_from_reference,
    tile_blocks,
    vote,
    voxel_downsample,
)

Z = np.array([0.0, 0.0, 1.0])


def copy_cloud(c: PointCloud) -> PointCloud:
    def cp(a):
        return None if a is None else a.copy()

    return PointCloud(xyz=c.xyz.copy(), rgb=cp(c.rgb), normals=cp(c.normals), labels=cp(c.labels))


def assert_same(a: PointCloud, b: PointCloud) -> None:
    for name in ("xyz", "rgb", "normals", "labels"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            np.testing.assert_array_equal(x, y, err_msg=name)


def angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    cos = a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.degrees(np.arccos(np.clip(cos, -1, 1))))


# --------------------------------------------------------------------------- voxels


@pytest.fixture
def voxel_cloud() -> PointCloud:
    # voxel size 1: four occupied voxels, one with negative coordinates
    xyz = np.array([
        [0.1, 0.1, 0.1], [0.3, 0.5, 0.2], [0.2, 0.3, 0.9],      # A (0,0,0): labels 1 1 2
        [1.5, 0.5, 0.5], [1.2, 0.1, 0.1],                        # B (1,0,0): labels 255 2
        [0.5, 0.5, -0.5],                                        # C (0,0,-1): label 255
        [2.1, 2.2, 2.3], [2.5, 2.5, 2.5], [2.9, 2.8, 2.7],      # D (2,2,2): 255 255 0
    ])
    labels = np.array([1, 1, 2, 255, 2, 255, 255, 255, 0], dtype=np.int64)
    rgb = np.linspace(0, 1, 27).reshape(9, 3).astype(np.float32)
    normals = np.tile(Z, (9, 1))
    normals[3] = [1.0, 0.0, 0.0]  # B: mean of +X and +Z -> (1, 0, 1)/sqrt(2)
    normals[4] = [0.0, 0.0, 1.0]
    return PointCloud(xyz=xyz, rgb=rgb, normals=normals, labels=labels)


def test_voxel_downsample_hand_made(voxel_cloud):
    before = copy_cloud(voxel_cloud)
    out, index = voxel_downsample(voxel_cloud, 1.0)
    assert_same(voxel_cloud, before)  # input untouched
    assert len(out) == 4 and index.shape == (9,)
    groups = {"A": [0, 1, 2], "B": [3, 4], "C": [5], "D": [6, 7, 8]}
    expected_label = {"A": 1, "B": 2, "C": 255, "D": 0}
    for name, members in groups.items():
        j = index[members[0]]
        assert (index[members] == j).all(), name
        np.testing.assert_allclose(out.xyz[j], voxel_cloud.xyz[members].mean(axis=0))
        np.testing.assert_allclose(out.rgb[j], voxel_cloud.rgb[members].mean(axis=0), rtol=1e-6)
        assert out.labels[j] == expected_label[name], name
    assert len(set(index[[0, 3, 5, 6]])) == 4  # distinct voxels -> distinct outputs
    np.testing.assert_allclose(out.normals[index[3]], [2**-0.5, 0, 2**-0.5])
    np.testing.assert_allclose(np.linalg.norm(out.normals, axis=1), 1.0)
    assert out.labels.dtype == np.int64 and out.rgb.dtype == np.float32
    out.validate("voxel output")


def test_voxel_downsample_index_maps_to_containing_voxel():
    rng = np.random.default_rng(1)
    xyz = rng.uniform(-3, 3, size=(5000, 3))
    cloud = PointCloud(xyz=xyz, labels=rng.choice([0, 1, 2], size=5000).astype(np.int64))
    voxel = 0.7
    out, index = voxel_downsample(cloud, voxel)
    cells = np.floor(xyz / voxel)
    assert len(out) == len(np.unique(cells, axis=0))
    np.testing.assert_array_equal(np.floor(out.xyz[index] / voxel), cells)
    counts = np.bincount(index, minlength=len(out))
    assert counts.min() >= 1 and counts.sum() == len(xyz)
    # tie-free check of majority: each output label is the most common label of its voxel
    for j in rng.choice(len(out), 50, replace=False):
        c = np.bincount(cloud.labels[index == j], minlength=3)
        assert c[out.labels[j]] == c.max()


def test_voxel_downsample_rejects_bad_size(voxel_cloud):
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="voxel size"):
            voxel_downsample(voxel_cloud, bad)


# --------------------------------------------------------------------------- outliers


def test_statistical_outliers_removes_far_points():
    rng = np.random.default_rng(2)
    cluster = rng.uniform(0, 1, size=(3000, 3))
    far = np.array([[10.0, 0, 0], [0, -9, 3], [5, 5, 12], [-8, 8, -8], [0, 0, 20]])
    xyz = np.vstack([cluster, far])
    labels = np.r_[np.ones(3000, dtype=np.int64), np.full(5, 255, dtype=np.int64)]
    cloud = PointCloud(xyz=xyz, labels=labels)
    before = copy_cloud(cloud)
    kept, keep = remove_statistical_outliers(cloud, k=16, std_ratio=2.0)
    assert_same(cloud, before)
    assert keep.shape == (3005,) and keep.dtype == bool
    assert not keep[3000:].any()           # every far point removed
    assert keep[:3000].mean() > 0.99       # the cluster kept
    np.testing.assert_array_equal(kept.xyz, xyz[keep])
    np.testing.assert_array_equal(kept.labels, labels[keep])


# --------------------------------------------------------------------------- gravity


def make_scene(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Level scene: noisy 10 m x 10 m ground at z = 0 and 12 vertical bars 1.5 m tall."""
    ground = np.c_[rng.uniform(-5, 5, size=(20000, 2)), rng.normal(0, 0.002, 20000)]
    bars = []
    for cx, cy in rng.uniform(-4, 4, size=(12, 2)):
        t = rng.uniform(0, 2 * np.pi, 300)
        bars.append(np.c_[cx + 0.01 * np.cos(t), cy + 0.01 * np.sin(t), rng.uniform(0.05, 1.5, 300)])
    xyz = np.vstack([ground] + bars)
    is_ground = np.r_[np.ones(20000, bool), np.zeros(12 * 300, bool)]
    return xyz, is_ground


@pytest.mark.parametrize("seed", [3, 4])
def test_gravity_align_recovers_known_rotation(seed):
    rng = np.random.default_rng(seed)
    level, is_ground = make_scene(rng)
    rot = Rotation.random(random_state=seed).as_matrix()
    shift = rng.uniform(-50, 50, 3)
    xyz = level @ rot.T + shift
    normals = np.tile(rot @ Z, (len(xyz), 1))  # "up" normals, rotated with the scene
    cloud = PointCloud(xyz=xyz, normals=normals)
    before = copy_cloud(cloud)
    out, transform = gravity_align(cloud)
    assert_same(cloud, before)
    # the transform is rigid and is what was applied
    r = transform[:3, :3]
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(r) == pytest.approx(1.0)
    np.testing.assert_allclose(out.xyz, xyz @ r.T + transform[:3, 3], atol=1e-9)
    # ground normal within 1 degree of +Z, ground at z = 0 within a few mm
    g = out.xyz[is_ground]
    ground_normal = np.linalg.svd(g - g.mean(axis=0), full_matrices=False)[2][-1]
    assert min(angle_deg(ground_normal, Z), angle_deg(-ground_normal, Z)) < 1.0
    assert abs(np.median(g[:, 2])) < 0.003
    assert np.abs(g[:, 2]).max() < 0.05
    # bars stand up: above the ground, reaching ~1.5 m
    bars = out.xyz[~is_ground]
    assert bars[:, 2].min() > 0.0 and bars[:, 2].max() == pytest.approx(1.5, abs=0.02)
    # normals rotated too: the true up direction now points to +Z
    assert angle_deg(out.normals[0], Z) < 1.0


def test_gravity_align_with_given_up():
    rng = np.random.default_rng(5)
    level, _ = make_scene(rng)
    rot = Rotation.random(random_state=5).as_matrix()
    cloud = PointCloud(xyz=level @ rot.T)
    out, transform = gravity_align(cloud, up=3.0 * (rot @ Z))  # length does not matter
    np.testing.assert_allclose(transform[:3, 3], 0.0)  # given up: rotation only
    np.testing.assert_allclose(transform[:3, :3] @ (rot @ Z), Z, atol=1e-12)
    # with no translation and up exact, the level scene's heights come back exactly
    np.testing.assert_allclose(out.xyz[:, 2], level[:, 2], atol=1e-9)


@pytest.mark.parametrize("up", [[0, 0, 1], [0, 0, -2], [1, 0, 0], [0, -1, 0], [1, 2, 3],
                                [1e-9, 0, -1], [0, 1e-14, 1], [-1e-13, 0, -1]])
def test_rotation_to_z(up):
    up = np.asarray(up, dtype=float)
    r = rotation_to_z(up)
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(r) == pytest.approx(1.0)
    np.testing.assert_allclose(r @ (up / np.linalg.norm(up)), Z, atol=1e-9)


def test_rotation_to_z_special_cases_and_errors():
    np.testing.assert_array_equal(rotation_to_z(Z), np.eye(3))
    flip = rotation_to_z(-Z)
    np.testing.assert_allclose(flip @ [1.0, 2.0, 3.0], [1.0, -2.0, -3.0])
    for bad in ([0, 0, 0], [np.nan, 0, 1], [1, 2]):
        with pytest.raises(ValueError, match="up must be"):
            rotation_to_z(np.array(bad, dtype=float))


def test_fit_ground_plane_orientation_and_determinism():
    rng = np.random.default_rng(6)
    level, is_ground = make_scene(rng)
    normal, d, inliers = fit_ground_plane(level, 0.01, seed=1)
    assert angle_deg(normal, Z) < 0.2 and abs(d) < 0.002
    assert inliers[is_ground].mean() > 0.99 and inliers[~is_ground].mean() < 0.02
    # upside-down scene: the normal flips so the bars are still on its positive side
    n2, d2, _ = fit_ground_plane(level * [1, 1, -1], 0.01, seed=1)
    assert angle_deg(n2, -Z) < 0.2
    n3, d3, i3 = fit_ground_plane(level, 0.01, seed=1)
    np.testing.assert_array_equal(n3, normal)
    assert d3 == d and (i3 == inliers).all()


# --------------------------------------------------------------------------- scale, normalise


def test_scale_from_reference_recovers_factor():
    rng = np.random.default_rng(7)
    true = PointCloud(xyz=rng.uniform(-2, 2, size=(500, 3)), labels=np.zeros(500, np.int64))
    shrunk = scale_cloud(true, 0.37)
    i, j = 11, 403  # the two points "picked" in the shrunk cloud; their distance measured on site
    true_length = float(np.linalg.norm(true.xyz[i] - true.xyz[j]))
    factor = scale_from_reference(shrunk.xyz[i], shrunk.xyz[j], true_length)
    assert factor == pytest.approx(1 / 0.37, rel=1e-12)
    restored = scale_cloud(shrunk, factor)
    np.testing.assert_allclose(restored.xyz, true.xyz, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(true.xyz, scale_cloud(true, 1.0).xyz)


def test_scale_errors():
    cloud = PointCloud(xyz=np.ones((3, 3)))
    for bad in (0.0, -2.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="scale factor"):
            scale_cloud(cloud, bad)
        if bad != float("inf"):  # inf true length would be caught too; check separately
            with pytest.raises(ValueError, match="true length"):
                scale_from_reference([0, 0, 0], [1, 0, 0], bad)
    with pytest.raises(ValueError, match="true length"):
        scale_from_reference([0, 0, 0], [1, 0, 0], float("inf"))
    with pytest.raises(ValueError, match="coincide"):
        scale_from_reference([1.5, 2, 3], [1.5, 2, 3], 1.0)
    with pytest.raises(ValueError, match="finite"):
        scale_from_reference([np.nan, 0, 0], [1, 0, 0], 1.0)
    with pytest.raises(ValueError, match="3-vectors"):
        scale_from_reference([0, 0], [1, 0], 1.0)


def test_normalise_round_trip():
    rng = np.random.default_rng(8)
    xyz = np.r_[rng.uniform(0, 1, size=(1000, 3)), [[10.0, 4.0, -2.0]]]  # one far point
    before = xyz.copy()
    n, centre, scale = normalise(xyz)
    np.testing.assert_array_equal(xyz, before)
    np.testing.assert_allclose(centre, (xyz.min(axis=0) + xyz.max(axis=0)) / 2)
    assert np.linalg.norm(n, axis=1).max() == pytest.approx(1.0)
    np.testing.assert_allclose(denormalise(n, centre, scale), xyz, atol=1e-12)
    single, c1, s1 = normalise(np.array([[1.0, 2.0, 3.0]]))
    assert s1 == 1.0 and (single == 0).all() and (c1 == [1, 2, 3]).all()


# --------------------------------------------------------------------------- blocks, vote


@pytest.fixture
def block_cloud() -> PointCloud:
    """Gravity-aligned cloud, 10 m x 6 m, very uneven density (dense clumps, sparse rest)."""
    rng = np.random.default_rng(9)
    sparse = np.c_[rng.uniform([0, 0], [10, 6], size=(3000, 2)), rng.uniform(0, 2, 3000)]
    clumps = [np.c_[np.clip(rng.normal(c, 0.3, size=(4000, 2)), 0.1, [9.9, 5.9]), rng.uniform(0, 2, 4000)]
              for c in ([2.0, 2.0], [7.0, 4.0], [5.0, 1.0])]
    xyz = np.vstack([sparse] + clumps)
    labels = rng.choice([0, 1, 2], size=len(xyz)).astype(np.int64)
    return PointCloud(xyz=xyz, labels=labels)


def column_members(xy: np.ndarray, origin: np.ndarray, size: float) -> np.ndarray:
    inside = (xy >= origin - 1e-9) & (xy <= origin + size + 1e-9)
    return np.flatnonzero(inside.all(axis=1))


@pytest.mark.parametrize("stride", [None, 1.0])
def test_tile_blocks_cover_every_point(block_cloud, stride):
    before = copy_cloud(block_cloud)
    num_points, size = 512, 2.0
    blocks = tile_blocks(block_cloud, size, num_points, stride=stride, seed=0)
    assert_same(block_cloud, before)
    n = len(block_cloud)
    seen = np.zeros(n, bool)
    xy = block_cloud.xyz[:, :2]
    for b in blocks:
        assert b.indices.shape == (num_points,) and b.indices.dtype == np.int64
        members = column_members(xy, b.origin, size)
        assert np.isin(b.indices, members).all()  # a block holds only points of its column
        unique = np.unique(b.indices)
        if len(members) >= num_points:
            assert len(unique) == num_points  # large column: no repeats
        else:
            np.testing.assert_array_equal(unique, members)  # small column: all of it
        seen[b.indices] = True
    assert seen.all()
    # the dense clumps exceed num_points, so coverage needed extra blocks
    origins = {tuple(b.origin) for b in blocks}
    assert len(blocks) > len(origins)
    if stride is None:  # grid of 5 x 3 columns, none empty here
        assert len(origins) == 15


def test_tile_blocks_deterministic_by_seed(block_cloud):
    a = tile_blocks(block_cloud, 2.0, 256, seed=4)
    b = tile_blocks(block_cloud, 2.0, 256, seed=4)
    c = tile_blocks(block_cloud, 2.0, 256, seed=5)
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.indices, y.indices)
        np.testing.assert_array_equal(x.origin, y.origin)
    assert any(len(x.indices) != len(y.indices) or (x.indices != y.indices).any()
               for x, y in zip(a, c))


def test_tile_blocks_skips_empty_and_checks_args():
    xyz = np.array([[0.1, 0.1, 0.0], [0.2, 0.3, 1.0], [5.5, 5.5, 0.0]])  # two far corners
    blocks = tile_blocks(PointCloud(xyz=xyz), 1.0, 4)
    assert len(blocks) == 2  # 36 grid columns, 34 of them empty
    assert sorted(set(b.indices.tolist()) for b in blocks) == [{0, 1}, {2}]
    with pytest.raises(ValueError, match="stride"):
        tile_blocks(PointCloud(xyz=xyz), 1.0, 4, stride=1.5)
    with pytest.raises(ValueError, match="num_points"):
        tile_blocks(PointCloud(xyz=xyz), 1.0, 0)


@pytest.mark.parametrize("stride", [None, 1.0])
def test_vote_recovers_labels(block_cloud, stride):
    blocks = tile_blocks(block_cloud, 2.0, 512, stride=stride, seed=1)
    k = 3
    logits = [np.eye(k)[block_cloud.labels[b.indices]] * 5.0 for b in blocks]  # one-hot "model"
    scores = vote(len(block_cloud), blocks, logits)
    assert scores.shape == (len(block_cloud), k)
    np.testing.assert_array_equal(scores.argmax(axis=1), block_cloud.labels)
    # summed probabilities: each point's total equals the number of times it was drawn
    drawn = np.bincount(np.concatenate([b.indices for b in blocks]), minlength=len(block_cloud))
    np.testing.assert_allclose(scores.sum(axis=1), drawn)


def test_vote_reports_unseen_points_and_bad_shapes(block_cloud):
    blocks = tile_blocks(block_cloud, 2.0, 512, seed=1)
    some = blocks[:3]
    logits = [np.zeros((512, 3)) for _ in some]
    with pytest.warns(RuntimeWarning, match="in no block"):
        scores = vote(len(block_cloud), some, logits)
    seen = np.zeros(len(block_cloud), bool)
    for b in some:
        seen[b.indices] = True
    assert (scores[~seen] == 0).all() and (scores[seen] > 0).all()
    with pytest.raises(ValueError, match="logits shape"):
        vote(len(block_cloud), some, [np.zeros((10, 3))] * 3)
    with pytest.raises(ValueError, match="blocks but"):
        vote(len(block_cloud), some, logits[:2])
