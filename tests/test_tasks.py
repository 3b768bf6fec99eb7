"""One contract, every task (as DomainBed runs one test over every algorithm): each
registered task evaluates, pools features, predicts and summarises a tiny split of its
own kind with a fixed model, through the one inference loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from da.data import DATASETS
from da.data.base import ArrayDataset
from da.data.blocks import SceneDataset, prepare_scene
from da.data.segmentation2d import SegmentationImages
from da.tasks import TASKS, TaskUnsupported
from data_tools.io import PointCloud

K = 3


class Fixed(nn.Module):
    """A fixed 'algorithm': features = the input's first channel(s), head = a 1x1 map to K."""

    def __init__(self, key: str, channels: int):
        super().__init__()
        self.key = key
        self.proj = nn.Conv1d(channels, K, 1)
        torch.manual_seed(0)
        nn.init.normal_(self.proj.weight)

    def features(self, batch):
        x = batch[self.key]
        return x.flatten(2) if x.dim() == 4 else (x.transpose(1, 2) if x.dim() == 3 else x[:, :, None])

    def head(self, f):
        return self.proj(f).squeeze(-1) if self.key == "x" else self.proj(f)


def tiny_split(task: str):
    rng = np.random.default_rng(0)
    if task == "classification":
        return ArrayDataset(torch.randn(20, 4), torch.randint(0, K, (20,))), Fixed("x", 4), ()
    if task == "segmentation2d":
        images = rng.integers(0, 255, (2, 3, 40, 50)).astype(np.uint8)
        ds = SegmentationImages(images, rng.integers(0, K, (2, 40, 50)).astype(np.uint8), crop=32, augment=False)

        class Image(Fixed):
            def head(self, f):
                return self.proj(f).view(f.shape[0], K, 32, 32)

        return ds, Image("image", 3), (40, 50)
    xyz = rng.uniform([0, 0, 0], [2, 1, 1], (3000, 3)).astype(np.float32)
    scene = prepare_scene("s", PointCloud(xyz, labels=rng.integers(0, K, 3000)), voxel=0.05)
    return SceneDataset([scene], 1.0, 64, False, K), Fixed("coord", 3), (3000,)


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_task_keeps_the_contract(name):
    task = TASKS[name]
    ds, model, shape = tiny_split(name)
    pred = task.evaluate(model, ds, torch.device("cpu"))
    assert pred.confusion.shape == (K, K) and int(pred.confusion.sum()) > 0
    assert pred.dense == (name != "classification")
    feats, labels = task.pooled_features(model, ds, torch.device("cpu"), 5)
    assert feats.ndim == 2 and len(feats) == len(labels) <= 5
    out = task.predict_labels(model, ds, 0, torch.device("cpu"))
    assert np.shape(out) == shape and set(np.unique(out)) <= set(range(K))
    assert model.training  # the mode is restored after every path
    assert isinstance(task.summary_images(model, ds, torch.device("cpu")), dict)


def test_a_task_says_in_one_line_what_it_cannot_do():
    with pytest.raises(TaskUnsupported, match="^deep embedded validation is not supported for the segmentation2d task$"):
        TASKS["segmentation2d"].dev_inputs(None, None, torch.device("cpu"), 10, 0)
    with pytest.raises(TaskUnsupported, match="^reverse validation is not supported for the segmentation3d task$"):
        TASKS["segmentation3d"].reverse_data(None, None, torch.device("cpu"))


def test_every_dataset_names_a_registered_task():
    assert {entry.config.TASK for entry in DATASETS.values()} <= set(TASKS)
    assert DATASETS["rebar3d"].config.TASK == "segmentation3d" and DATASETS["seg_files"].config.TASK == "segmentation2d"
