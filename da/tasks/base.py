"""The Task contract and its registry.

A task is what a dataset's labels mean - a class per sample, per pixel or per point - and
owns everything that depends on it: evaluation (metrics over a labeled split), pooled
features (PAD, TensorBoard's projector), summaries (images, clouds), prediction on new
inputs and what the validators need. Datasets only supply data and name their task
(`DomainData.task`); the trainer and the validators ask the task, never the dataset.

A task registers itself with `@register_task(name)` in one file of this package. What a
task cannot do (a validator it has no inputs for) raises TaskUnsupported, one line long.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from da.config_schema import ConfigError
from da.contracts import DomainData, Predictions

TASKS: dict[str, Task] = {}


class TaskUnsupported(ConfigError):
    """A task cannot do what was asked (e.g. a validator that has no inputs for it)."""


@dataclass
class CloudSummary:
    """A predicted scene for the run folder (a PLY under predictions/) and TensorBoard."""

    tag: str  # TensorBoard tag, e.g. target_test/scene_0000
    stem: str  # file name under the run's predictions/, e.g. target_test_0000
    xyz: np.ndarray  # (M, 3)
    colours: np.ndarray  # (M, 3) uint8, by predicted label
    labels: dict[str, np.ndarray]  # "predicted" and, where known, "labels" (the truth)
    label_names: dict[int, str]


class Task:
    """Default behaviour: nothing to summarise, validators unsupported."""

    name = ""

    def evaluate(self, algorithm: nn.Module, dataset: Dataset, device: torch.device,
                 max_features: int = 2000) -> Predictions:
        """Confusion matrix over a labeled split, pooled features of its first samples."""
        raise NotImplementedError

    def pooled_features(self, algorithm: nn.Module, dataset: Dataset, device: torch.device,
                        n: int) -> tuple[np.ndarray, np.ndarray]:
        """(n, C) pooled features of the first n samples and their labels (-1 where dense)."""
        raise NotImplementedError

    def predict_labels(self, algorithm: nn.Module, dataset: Dataset, index: int,
                       device: torch.device) -> np.ndarray:
        """Predicted labels of item `index` of an evaluation split: a sample's class, a whole
        image's (H, W) mask, a whole scene's label per original point. New inputs are
        predicted by wrapping them in the dataset class the task reads."""
        raise NotImplementedError

    def summary_images(self, algorithm: nn.Module, dataset: Dataset,
                       device: torch.device) -> dict[str, np.ndarray]:
        return {}

    def summary_clouds(self, algorithm: nn.Module, dataset: Dataset, device: torch.device,
                       split: str = "target_test", count: int = 2) -> list[CloudSummary]:
        return []

    def dev_inputs(self, algorithm: nn.Module, data: DomainData, device: torch.device, max_rows: int,
                   seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Deep embedded validation's inputs: pooled features of source_train, target_train
        and source_val (up to max_rows rows each, unaugmented) and one source-val loss per
        source_val row."""
        raise TaskUnsupported(f"deep embedded validation is not supported for the {self.name} task")

    def reverse_data(self, algorithm: nn.Module, data: DomainData,
                     device: torch.device) -> tuple[DomainData, torch.Tensor]:
        """Reverse validation's swapped domains: target_train pseudo-labelled by the model as
        the labeled source, source_train unlabeled as the target, source_val as the test;
        and the pseudo-labels."""
        raise TaskUnsupported(f"reverse validation is not supported for the {self.name} task")


def register_task(name: str):
    """Class decorator: one instance of the task under `name`."""
    def decorator(cls: type[Task]) -> type[Task]:
        if name in TASKS:
            raise ValueError(f"task '{name}' is registered twice")
        cls.name = name
        TASKS[name] = cls()
        return cls
    return decorator


def task_of(data: DomainData) -> Task:
    """The task that reads these splits."""
    if data.task not in TASKS:
        raise ConfigError(f"unknown task '{data.task}' (DomainData.task); registered: {', '.join(sorted(TASKS))}")
    return TASKS[data.task]
