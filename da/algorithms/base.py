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

from da.config import AlgorithmConfig
from da.registry import Entry, lookup

ALGORITHMS: dict[str, Entry] = {}

IGNORE_INDEX = 255  # labels never counted (e.g. unlabeled points)


class Algorithm(nn.Module):
    uses_target: bool = False  # whether the trainer must draw unlabeled target batches
    class_weights: torch.Tensor | None = None  # per-class task-loss weights, set by the trainer

    def __init__(self, feature_extractor: nn.Module, task_head: nn.Module, cfg: AlgorithmConfig):
        super().__init__()
        self.feature_extractor = feature_extractor
        self.task_head = task_head
        self.cfg = cfg

    def features(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.feature_extractor(batch)

    def predict(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.task_head(self.features(batch))

    def task_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        # Works for (B, K) and dense (B, K, *spatial) logits alike.
        weight = None if self.class_weights is None else self.class_weights.to(logits.device)
        return F.cross_entropy(logits.float(), labels, weight=weight, ignore_index=IGNORE_INDEX)

    def feature_parameters(self) -> list[nn.Parameter]:
        return list(self.feature_extractor.parameters())

    def losses(self, source: dict[str, torch.Tensor], target: dict[str, torch.Tensor] | None,
               progress: float) -> dict[str, torch.Tensor]:
        raise NotImplementedError


def build_algorithm(cfg: AlgorithmConfig, feature_extractor: nn.Module, task_head: nn.Module) -> Algorithm:
    return lookup(ALGORITHMS, cfg.name, "algorithm").build(feature_extractor, task_head, cfg)


def concat_batches(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inputs of two batches stacked along the batch dimension (labels dropped)."""
    return {k: torch.cat([a[k], b[k]]) for k in b if k != "label"}
