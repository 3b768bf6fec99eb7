"""3D point-cloud segmentation: one class per point (rebar3d, a user's clouds).

Evaluation splits are `da.data.blocks.SceneDataset`: whole scenes tiled by fixed blocks.
The model runs over the blocks in batches, block logits are voted back onto the voxels
(`data_tools.prepare.add_votes`, streamed: memory beyond the scene is one batch) and the
argmax per voxel reaches every original point. The confusion matrix counts every original
point whose label is not 255; beside it, a 95% bootstrap interval over scenes and an mIoU
per element. Training splits are `BlockDataset`s; deep embedded validation reads seeded,
unaugmented blocks of them.
"""

from __future__ import annotations

import warnings
from contextlib import closing

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from da.contracts import IGNORE_INDEX, DomainData, Predictions
from da.data.blocks import BlockDataset, SceneDataset
from da.data.rebar3d import NUM_CLASSES
from da.inference import eval_mode, forward_batches
from da.metrics import bootstrap_miou, confusion_matrix, grouped_miou
from da.tasks.base import CloudSummary, Task, TaskUnsupported, register_task
from data_tools.prepare import add_votes


def block_chunks(dataset: SceneDataset, s: int, batch_size: int) -> list[list]:
    """Scene s's evaluation blocks, `batch_size` at a time (block indices only: cheap)."""
    blocks = dataset.blocks[s]
    return [blocks[start:start + batch_size] for start in range(0, len(blocks), batch_size)]


def scene_scores(algorithm: nn.Module, dataset: SceneDataset, s: int, device: torch.device,
                 batch_size: int = 16, features: list | None = None, voxels: bool = False) -> np.ndarray:
    """(N_original, K) voted class probabilities of scene `s` ((M, K) per voxel with
    `voxels`); appends pooled block features (one per block) to `features` if given."""
    scene = dataset.scenes[s]
    scores = np.zeros((len(scene.xyz), dataset.num_classes))
    # Streamed: each batch's probabilities are added to the (M, K) votes at once, so
    # memory beyond the scene is one batch of blocks, whatever the scene's size.
    chunks = block_chunks(dataset, s, batch_size)
    outputs = forward_batches(algorithm, (dataset.block_batch(s, chunk) for chunk in chunks), device)
    for chunk, (_, f, logits) in zip(chunks, outputs):
        add_votes(scores, chunk, list(logits.float().transpose(1, 2).cpu().numpy()))
        if features is not None:
            features.append(f.float().mean(dim=2).cpu().numpy())
    return scores if voxels else scores[scene.index]


def scene_labels(algorithm: nn.Module, dataset: SceneDataset, s: int, device: torch.device,
                 batch_size: int = 16, features: list | None = None) -> np.ndarray:
    """(N_original,) int64 predicted label of every original point of scene `s`: the argmax
    per voxel, carried to the points (no (N, K) array is built)."""
    voxel_scores = scene_scores(algorithm, dataset, s, device, batch_size, features, voxels=True)
    if not voxel_scores.any(axis=1).all():
        warnings.warn(f"{dataset.scenes[s].name}: some voxels are in no block", RuntimeWarning, stacklevel=2)
    return voxel_scores.argmax(axis=1)[dataset.scenes[s].index]


def as_scenes(dataset: SceneDataset | BlockDataset, count: int | None = None) -> SceneDataset:
    """Whole scenes of a split: an evaluation split as it is, a training split's (first
    `count`) scenes tiled as evaluation tiles them."""
    if isinstance(dataset, SceneDataset):
        return dataset
    return SceneDataset(dataset.scenes[:count], dataset.block_size, dataset.num_points, dataset.colour,
                        NUM_CLASSES, voxel=dataset.voxel)


def plain_blocks(like: BlockDataset, scenes, labeled: bool) -> BlockDataset:
    """Blocks of `scenes` cut like the training BlockDataset `like`, without augmentation."""
    return BlockDataset(scenes, like.block_size, like.stride, like.num_points, like.colour, labeled,
                        False, like.min_points, like.voxel)


def seeded_blocks(algorithm: nn.Module, dataset: BlockDataset, device: torch.device, n: int, seed: int,
                  batch_size: int = 8) -> tuple[np.ndarray, np.ndarray | None]:
    """Pooled features (one row per block) and, when labeled, the mean per-point
    cross-entropy of each block, over up to `n` seeded blocks of a training split (the
    same points for every run of the same seed)."""
    order = np.random.default_rng(seed).permutation(len(dataset))[:n]
    batches = (dataset.__getitems__([(int(i), seed) for i in order[start:start + batch_size]])
               for start in range(0, len(order), batch_size))
    feats, losses = [], []
    for batch, f, logits in forward_batches(algorithm, batches, device):
        feats.append(f.flatten(2).mean(-1).float().cpu())
        if "label" in batch:
            loss = F.cross_entropy(logits.float(), batch["label"], ignore_index=IGNORE_INDEX, reduction="none")
            counted = (batch["label"] != IGNORE_INDEX).float()
            losses.append(((loss * counted).sum(1) / counted.sum(1).clamp_min(1)).cpu())
    return torch.cat(feats).numpy(), torch.cat(losses).numpy() if losses else None


@register_task("segmentation3d")
class Segmentation3d(Task):
    def evaluate(self, algorithm: nn.Module, dataset: SceneDataset, device: torch.device,
                 max_features: int = 2000) -> Predictions:
        k = dataset.num_classes
        cms: list[torch.Tensor] = []
        feats: list[np.ndarray] = []
        for s, scene in enumerate(dataset.scenes):
            if scene.original_labels is None:
                raise ValueError(f"{scene.name}: evaluation needs labels")
            pred = scene_labels(algorithm, dataset, s, device, features=feats)
            cms.append(confusion_matrix(torch.from_numpy(pred), torch.from_numpy(scene.original_labels), k))
        pooled = np.concatenate(feats)[:max_features]
        # Beside the pooled numbers: a 95% bootstrap interval over scenes, and per element.
        lo, hi = bootstrap_miou(cms)
        extra = {"miou_ci_lo": lo, "miou_ci_hi": hi}
        if all(sc.element for sc in dataset.scenes):
            groups = grouped_miou(cms, [sc.element for sc in dataset.scenes])
            for g in dataset.elements or sorted(groups):
                extra[f"miou_{g}"] = groups.get(g, float("nan"))
        return Predictions(torch.stack(cms).sum(0), pooled, np.full(len(pooled), -1), dense=True, extra=extra)

    def pooled_features(self, algorithm: nn.Module, dataset: SceneDataset | BlockDataset, device: torch.device,
                        n: int, batch_size: int = 16) -> tuple[np.ndarray, np.ndarray]:
        """Pooled features (mean over points) of the first `n` blocks, scenes in turn: no
        need to predict every scene."""
        dataset = as_scenes(dataset)
        out: list[np.ndarray] = []
        batches = (dataset.block_batch(s, chunk) for s in range(len(dataset.scenes))
                   for chunk in block_chunks(dataset, s, batch_size))
        with closing(forward_batches(algorithm, batches, device)) as outputs:
            for _, f, _ in outputs:
                out.append(f.float().mean(dim=2).cpu().numpy())
                if sum(map(len, out)) >= n:
                    break
        feats = np.concatenate(out)[:n]
        return feats, np.full(len(feats), -1)

    def predict_labels(self, algorithm: nn.Module, dataset: SceneDataset, index: int,
                       device: torch.device) -> np.ndarray:
        return scene_labels(algorithm, dataset, index, device).astype(np.int64)

    def summary_clouds(self, algorithm: nn.Module, dataset: SceneDataset | BlockDataset, device: torch.device,
                       split: str = "target_test", count: int = 2) -> list[CloudSummary]:
        """The first scenes' voxel clouds coloured by prediction, with the truth beside it
        where there is one (a training split's blocks are predicted as whole scenes)."""
        dataset = as_scenes(dataset, count)
        from data_tools.viz import LABELS, label_colors

        names = {k: v.name for k, v in LABELS.items()}
        out = []
        with eval_mode(algorithm):
            for s in range(min(count, len(dataset))):
                scene = dataset.scenes[s]
                pred = scene_scores(algorithm, dataset, s, device, voxels=True).argmax(axis=1)
                truth = {} if scene.labels is None else {"labels": scene.labels}
                out.append(CloudSummary(f"{split}/scene_{s:04d}", f"{split}_{s:04d}", scene.xyz,
                                        label_colors(pred), {"predicted": pred, **truth}, names))
        return out

    def dev_inputs(self, algorithm: nn.Module, data: DomainData, device: torch.device, max_rows: int,
                   seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per block: blocks of source_train, target_train and the source_val scenes, cut
        as in training, without augmentation."""
        st = data.source_train
        if not isinstance(st, BlockDataset):
            raise TaskUnsupported(f"deep embedded validation reads training blocks, not {type(st).__name__}")
        f_src, _ = seeded_blocks(algorithm, plain_blocks(st, st.scenes, False), device, max_rows, seed)
        f_tgt, _ = seeded_blocks(algorithm, plain_blocks(st, data.target_train.scenes, False), device,
                                 max_rows, seed)
        f_val, val_loss = seeded_blocks(algorithm, plain_blocks(st, data.source_val.scenes, True), device,
                                        max_rows, seed)
        return f_src, f_tgt, f_val, val_loss
