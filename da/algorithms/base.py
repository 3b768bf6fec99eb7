"""The Algorithm contract.

An algorithm is an nn.Module built from a feature extractor, a task head and, where it
adapts, a domain classifier. It only says what the losses are:
`losses(source_batch, target_batch, progress) -> dict[str, Tensor]` with at least
"task" and "total" (plus diagnostics such as "domain", "domain_acc", "lambda"), and
`predict(batch) -> logits`. The trainer owns backward, optimiser and scheduler steps,
mixed precision, clipping and the non-finite check. A new method is one new file in
this package with a @register(ALGORITHMS, name, ConfigClass) class.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from da.config_schema import AlgorithmConfig
from da.contracts import IGNORE_INDEX  # noqa: F401 - algorithms import it from here
from da.registry import Entry, lookup

ALGORITHMS: dict[str, Entry] = {}


class Algorithm(nn.Module):
    uses_target: bool = False  # whether the trainer must draw unlabeled target batches
    # False: the trainer runs `losses` (for its side effects, e.g. BatchNorm statistics)
    # but does no backward pass and no optimiser step (AdaBN)
    updates_parameters: bool = True
    class_weights: torch.Tensor | None = None  # per-class task-loss weights, set by the trainer

    def __init__(self, feature_extractor: nn.Module, task_head: nn.Module, cfg: AlgorithmConfig):
        super().__init__()
        self.feature_extractor = feature_extractor
        self.task_head = task_head
        self.cfg = cfg

    def features(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.feature_extractor(batch)

    def head(self, features: torch.Tensor) -> torch.Tensor:
        """Logits from features: the task head, plus whatever test-time correction an
        algorithm applies (prior_em). Every evaluation path goes through here."""
        return self.task_head(features)

    def predict(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.head(self.features(batch))

    def task_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        # Works for (B, K) and dense (B, K, *spatial) logits alike.
        weight = None if self.class_weights is None else self.class_weights.to(logits.device)
        loss = F.cross_entropy(logits.float(), labels, weight=weight, ignore_index=IGNORE_INDEX,
                               label_smoothing=getattr(self.cfg, "label_smoothing", 0.0))
        dice = getattr(self.cfg, "dice_weight", 0.0)
        return loss + dice * soft_dice_loss(logits, labels) if dice > 0 else loss

    def feature_parameters(self) -> list[nn.Parameter]:
        return list(self.feature_extractor.parameters())

    def losses(self, source: dict[str, torch.Tensor], target: dict[str, torch.Tensor] | None,
               progress: float) -> dict[str, torch.Tensor]:
        raise NotImplementedError


def soft_dice_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """1 - mean over classes of 2 |P n Y| / (|P| + |Y|), with softmax probabilities P and
    one-hot labels Y over all non-ignored samples. Each class counts equally, however
    rare, which is why it helps the IoU of thin ties next to thick main bars."""
    k = logits.shape[1]
    probs = logits.float().softmax(dim=1).movedim(1, -1).reshape(-1, k)
    flat = labels.reshape(-1)
    keep = flat != IGNORE_INDEX
    probs, flat = probs[keep], flat[keep]
    onehot = F.one_hot(flat, k).to(probs.dtype)
    inter = (probs * onehot).sum(0)
    denom = probs.sum(0) + onehot.sum(0)
    present = onehot.sum(0) > 0  # a class absent from the batch says nothing
    dice = (2 * inter + 1.0) / (denom + 1.0)
    return 1.0 - dice[present].mean() if present.any() else logits.sum() * 0.0


def build_algorithm(cfg: AlgorithmConfig, feature_extractor: nn.Module, task_head: nn.Module) -> Algorithm:
    return lookup(ALGORITHMS, cfg.name, "algorithm").build(feature_extractor, task_head, cfg)


def concat_batches(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inputs of two batches stacked along the batch dimension (labels dropped)."""
    return {k: torch.cat([a[k], b[k]]) for k in b if k != "label"}
