"""Block sampling, voxel grids and the per-scene metrics of 3D evaluation."""

from __future__ import annotations

import numpy as np
import torch

from da.data.blocks import BlockDataset, prepare_scene, sample_block
from da.metrics import bootstrap_miou, grouped_miou, mean_iou
from data_tools.io import PointCloud


def test_small_columns_give_every_point_large_ones_a_subset():
    rng = np.random.default_rng(0)
    members = np.arange(100, 160)
    idx = sample_block(members, 256, rng)
    assert len(idx) == 256 and set(idx) == set(members)  # all 60, padded with repeats
    big = np.arange(5000)
    idx = sample_block(big, 256, rng)
    assert len(idx) == len(set(idx)) == 256 and set(idx) <= set(big)


def test_blocks_carry_voxel_grids_of_their_metric_coordinates():
    rng = np.random.default_rng(1)
    xyz = rng.uniform([0, 0, 0], [1.0, 1.0, 2.0], (3000, 3))
    labels = rng.integers(0, 3, 3000)
    scene = prepare_scene("s", PointCloud(xyz.astype(np.float32), labels=labels), 0.02)
    ds = BlockDataset([scene], block_size=1.0, stride=1.0, num_points=512, colour=False,
                      labeled=True, augment=False, voxel=0.02)
    batch = ds.__getitems__([(0, 3)])
    expect = np.floor(batch["coord"].numpy().astype(np.float64) * 1.0 / 0.02)
    assert batch["grid"].dtype == torch.int32
    assert (batch["grid"].numpy() == expect).all()


def test_bootstrap_interval_and_per_group_miou():
    good = torch.tensor([[90, 5, 5], [5, 90, 5], [5, 5, 90]])
    bad = torch.tensor([[50, 25, 25], [25, 50, 25], [25, 25, 50]])
    lo, hi = bootstrap_miou([good] * 5)
    assert lo == hi == mean_iou(good)  # identical scenes: no spread
    lo, hi = bootstrap_miou([good, bad, good, bad, good, bad])
    pooled = mean_iou(good * 3 + bad * 3)
    assert mean_iou(bad) <= lo < pooled < hi <= mean_iou(good)
    assert bootstrap_miou([good, bad] * 3) == bootstrap_miou([good, bad] * 3)  # seeded
    groups = grouped_miou([good, bad, good], ["wall", "beam", "wall"])
    assert groups == {"beam": mean_iou(bad), "wall": mean_iou(good * 2)}
