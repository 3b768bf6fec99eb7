"""The types every layer shares: what a dataset hands the trainer and what a task returns.

A leaf module (it imports no other module of `da`), so datasets, tasks, metrics and the
trainer can all use it without importing one another.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import Dataset

IGNORE_INDEX = 255  # labels never counted (unlabeled pixels and points)


@dataclass
class DomainData:
    """What a dataset entry builds: four splits and what the model and the task need.

    `task` names the entry of `da.tasks.TASKS` that evaluates, summarises and predicts on
    these splits (classification | segmentation2d | segmentation3d).
    """

    source_train: Dataset  # labeled; for the train-on-target row: labeled target-train
    source_val: Dataset  # labeled, held out: the only labels model selection may see
    target_train: Dataset  # unlabeled
    target_test: Dataset | None  # labeled, for reporting only; None = no target labels at all
    num_classes: int
    input_key: str
    input_shape: tuple[int, ...]
    class_weights: torch.Tensor | None = None  # task-loss weights per class (None: unweighted)
    task: str = "classification"


@dataclass
class Predictions:
    """A task's evaluation of one labeled split."""

    confusion: torch.Tensor  # (K, K), rows = true class
    features: np.ndarray  # pooled features (one vector per sample) of the first samples
    labels: np.ndarray  # per-sample labels of those samples (-1 where dense)
    dense: bool  # per-pixel / per-point task
    extra: dict[str, float] = field(default_factory=dict)  # more metrics, named without prefix
