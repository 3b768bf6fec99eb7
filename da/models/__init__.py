"""Feature extractors, task heads and domain classifiers; a registry by name.

A model entry builds `ModelParts`: a feature extractor (takes the batch dict, returns
features at the task's resolution, channels first: (B, C) per sample, (B, C, H, W) per
pixel, (B, C, N) per point, and says its width in `num_features`) and a task head that
maps those features to logits of the same layout.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass

from torch import nn

from da.registry import Entry, lookup

MODELS: dict[str, Entry] = {}


@dataclass
class ModelParts:
    feature_extractor: nn.Module
    task_head: nn.Module
    # what optim.feature_lr_mult scales; None = the whole feature extractor. A model whose
    # feature extractor joins a pretrained part and new layers (the U-Net: encoder +
    # decoder) names the pretrained part, so the new layers learn at the full rate.
    slow_parameters: list[nn.Parameter] | None = None


def build_model(cfg, data) -> ModelParts:
    parts = lookup(MODELS, cfg.name, "model").build(cfg, data)
    if not isinstance(getattr(parts.feature_extractor, "num_features", None), int):
        raise TypeError(f"model '{cfg.name}': feature extractor must set an int num_features")
    return parts


# Every module in this package registers itself on import: a new model is one new file.
for _m in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_m.name}")
