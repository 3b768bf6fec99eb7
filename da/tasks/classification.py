"""Classification: one class per sample (moons, digits, image folders).

Splits are in-memory datasets fetched by (index, batch_seed) keys (`da.data.base.ArrayDataset`);
evaluation runs over them in order, in batches, unaugmented. The validators' inputs are
the whole splits without their training augmentation.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from da.contracts import DomainData, Predictions
from da.data.base import ArrayDataset
from da.inference import forward_batches, pooled
from da.metrics import confusion_matrix
from da.tasks.base import Task, TaskUnsupported, register_task


def iterate(dataset: Dataset, batch_size: int) -> Iterator[dict[str, torch.Tensor]]:
    """The split in order, in batches (batch seed 0: no augmentation draws differ)."""
    for start in range(0, len(dataset), batch_size):
        yield dataset.__getitems__([(i, 0) for i in range(start, min(start + batch_size, len(dataset)))])


def unaugmented(dataset: Dataset) -> ArrayDataset:
    """The same arrays without training augmentation: pseudo-labels and density ratios
    describe the data, not a random view of it."""
    if not isinstance(dataset, ArrayDataset):
        raise TaskUnsupported(f"the validators read in-memory array splits (da.data.base.ArrayDataset), "
                              f"not {type(dataset).__name__}")
    return ArrayDataset(dataset.x, dataset.y, dataset.input_key, dataset.prepare, None)


def logits_and_features(algorithm: nn.Module, dataset: Dataset, device: torch.device,
                        batch_size: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and pooled features over a whole split, in order (on the CPU)."""
    logits, feats = [], []
    for _, f, out in forward_batches(algorithm, iterate(dataset, batch_size), device):
        logits.append(out.float().cpu())
        feats.append(pooled(f).float().cpu())
    return torch.cat(logits), torch.cat(feats)


@register_task("classification")
class Classification(Task):
    def evaluate(self, algorithm: nn.Module, dataset: Dataset, device: torch.device,
                 max_features: int = 2000, batch_size: int = 512) -> Predictions:
        cm, feats, labels, dense = None, [], [], False
        n_feats = 0
        for batch, f, logits in forward_batches(algorithm, iterate(dataset, batch_size), device):
            dense = logits.dim() > 2  # per-sample logits; a dense model is counted per element
            part = confusion_matrix(logits.argmax(1), batch["label"], logits.shape[1])
            cm = part if cm is None else cm + part
            if n_feats < max_features:
                take = max_features - n_feats
                feats.append(pooled(f)[:take].float().cpu())
                labels.append(torch.full((len(feats[-1]),), -1) if dense else batch["label"][:take].cpu())
                n_feats += len(feats[-1])
        return Predictions(cm, torch.cat(feats).numpy(), torch.cat(labels).numpy(), dense)

    def pooled_features(self, algorithm: nn.Module, dataset: Dataset, device: torch.device,
                        n: int) -> tuple[np.ndarray, np.ndarray]:
        feats, labels = [], []
        for batch, f, _ in forward_batches(algorithm, iterate(dataset, min(n, 512) or 1), device):
            feats.append(pooled(f).float().cpu())
            labels.append(batch["label"].cpu() if "label" in batch else torch.full((len(f),), -1))
            if sum(map(len, feats)) >= n:
                break
        return torch.cat(feats)[:n].numpy(), torch.cat(labels)[:n].numpy()

    def predict_labels(self, algorithm: nn.Module, dataset: Dataset, index: int,
                       device: torch.device) -> np.ndarray:
        batch = dataset.__getitems__([(index, 0)])
        batch.pop("label", None)
        (_, _, logits), = forward_batches(algorithm, [batch], device)
        return logits.argmax(1).cpu().numpy()[0]

    def dev_inputs(self, algorithm: nn.Module, data: DomainData, device: torch.device, max_rows: int,
                   seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        rng = np.random.default_rng(seed)
        _, f_src = logits_and_features(algorithm, unaugmented(data.source_train), device)
        _, f_tgt = logits_and_features(algorithm, unaugmented(data.target_train), device)
        val = unaugmented(data.source_val)
        val_logits, f_val = logits_and_features(algorithm, val, device)
        f_src = f_src.numpy()[rng.permutation(len(f_src))[:max_rows]]
        f_tgt = f_tgt.numpy()[rng.permutation(len(f_tgt))[:max_rows]]
        loss = F.cross_entropy(val_logits, val.y, reduction="none")
        val_loss = (loss.flatten(1).mean(1) if loss.dim() > 1 else loss).numpy()  # one per sample
        return f_src, f_tgt, f_val.numpy(), val_loss

    def reverse_data(self, algorithm: nn.Module, data: DomainData,
                     device: torch.device) -> tuple[DomainData, torch.Tensor]:
        logits, _ = logits_and_features(algorithm, unaugmented(data.target_train), device)
        pseudo = logits.argmax(1)
        tt, st = data.target_train, data.source_train
        unaugmented(st)  # an array split too: the reverse run's unlabeled target
        swapped = DomainData(
            source_train=ArrayDataset(tt.x, pseudo, tt.input_key, tt.prepare, tt.augment),
            # the reverse run's "source_val" is its own (pseudo-labelled) training data: a
            # diagnostic only; its TARGET test is the real, labeled source_val
            source_val=ArrayDataset(tt.x, pseudo, tt.input_key, tt.prepare, None),
            target_train=ArrayDataset(st.x, None, st.input_key, st.prepare, st.augment),
            target_test=data.source_val,
            num_classes=data.num_classes, input_key=data.input_key, input_shape=data.input_shape,
            class_weights=data.class_weights, task=data.task)
        return swapped, pseudo
