"""Local-shape features (da/data/shape_features.py)."""

from __future__ import annotations

import numpy as np
import pytest

from da.data.shape_features import CHANNELS_PER_RADIUS, local_shape, rotate

RADII = (0.02, 0.08)


def _line(direction, n=400, step=0.005) -> np.ndarray:
    d = np.asarray(direction, float) / np.linalg.norm(direction)
    return np.arange(n)[:, None] * step * d + np.array([1.0, 2.0, 0.5])


def test_a_vertical_bar_a_horizontal_plane_and_a_blob():
    rng = np.random.default_rng(0)
    bar = local_shape(_line([0, 0, 1]), RADII)
    plane_xy = rng.uniform(0, 0.5, (20000, 2))
    plane = local_shape(np.c_[plane_xy, np.zeros(20000)], RADII)
    blob = local_shape(rng.normal(0, 0.05, (4000, 3)), RADII)
    assert bar.shape == (400, CHANNELS_PER_RADIUS * len(RADII)) and bar.dtype == np.float32
    for r in range(len(RADII)):
        c = r * CHANNELS_PER_RADIUS
        inner = slice(20, -20)  # away from the bar's ends
        assert bar[inner, c].min() > 0.95 and bar[inner, c + 3].min() > 0.95  # linear, vertical
        assert np.median(plane[:, c + 1]) > 0.6 and np.median(plane[:, c + 4]) > 0.95  # flat, n = z
        assert np.median(blob[:, c + 2]) > 5 * np.median(plane[:, c + 2])  # scattered
        assert np.median(plane[:, c + 2]) < 0.05


def test_horizontal_direction_is_a_doubled_angle_that_turns_with_the_block():
    theta = 0.4
    f = local_shape(_line([np.cos(theta), np.sin(theta), 0]), RADII)[200]
    assert f[5] == pytest.approx(np.cos(2 * theta), abs=1e-3)
    assert f[6] == pytest.approx(np.sin(2 * theta), abs=1e-3)
    flipped = local_shape(_line([-np.cos(theta), -np.sin(theta), 0]), RADII)[200]
    defined = np.ones(len(f), bool)  # a perfect line has no normal: n_z^2 is arbitrary
    defined[4::CHANNELS_PER_RADIUS] = False
    assert np.allclose(f[defined], flipped[defined], atol=1e-3)  # e1 and -e1: the same
    a = 0.7  # rotating the features = the features of the rotated bar
    turned = local_shape(_line([np.cos(theta + a), np.sin(theta + a), 0]), RADII)[200]
    assert np.allclose(rotate(f[None], a)[0][defined], turned[defined], atol=1e-3)
    assert not np.allclose(f[defined], turned[defined], atol=1e-2)


def test_isolated_points_have_no_shape_and_bad_input_is_refused():
    far = np.array([[0, 0, 0], [5, 5, 5], [10, 0, 0]], float)
    assert not local_shape(far, RADII).any()
    with pytest.raises(ValueError, match="NaN"):
        local_shape(np.array([[0, 0, np.nan]]), RADII)
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        local_shape(np.zeros((4, 2)), RADII)


def test_the_same_features_on_one_thread_and_on_several():
    # chunks of the cloud run on torch's threads and write disjoint rows: bit-identical
    import torch

    rng = np.random.default_rng(0)
    xyz = rng.random((30_000, 3)) * [1.0, 1.0, 2.0]
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = local_shape(xyz, (0.04, 0.08), min_cell=0.01)
        torch.set_num_threads(3)
        several = local_shape(xyz, (0.04, 0.08), min_cell=0.01)
    finally:
        torch.set_num_threads(before)
    np.testing.assert_array_equal(one, several)
