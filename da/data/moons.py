"""Two moons (the DANN paper's toy problem): source moons, target moons rotated.

Built by data_tools.moons into a cached folder; inputs are the 2-D points.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

import da.data.transforms as transforms
from da.config_schema import DataConfig
from da.data.base import DATASETS, DomainData, dataset_folder, load_splits
from da.registry import register


@dataclass
class MoonsConfig(DataConfig):
    name: str = "moons"
    per_moon: int = 150
    target_train: int = 300
    target_test: int = 1000
    rotation: float = 35.0
    noise: float = 0.1
    data_seed: int = 0
    jitter: float = 0.05  # std of coordinate noise when augment=true
    # != 1: inputs become (x - centre) * scale. The authors' two-moons script centres the
    # data and doubles it (their per-example SGD learning rate is set for that scale).
    scale: float = 1.0


@register(DATASETS, "moons", MoonsConfig)
def build_moons(cfg: MoonsConfig) -> DomainData:
    from data_tools.moons import build_moons as make

    params = dict(per_moon=cfg.per_moon, target_train=cfg.target_train,
                  target_test=cfg.target_test, rotation=cfg.rotation, noise=cfg.noise,
                  seed=cfg.data_seed)
    folder = dataset_folder(cfg.root, "moons", params, make)
    augment = (lambda x, g: transforms.jitter(x, g, cfg.jitter)) if cfg.augment else None
    prepare = None
    if cfg.scale != 1.0:
        from data_tools.moons import CENTRE

        centre = torch.as_tensor(CENTRE, dtype=torch.float32)
        prepare = lambda x: (x - centre) * cfg.scale  # noqa: E731
    s = load_splits(folder, cfg.target_labeled, "x", prepare, augment)
    return DomainData(s["source_train"], s["source_val"], s["target_train"], s["target_test"],
                      s["num_classes"], "x", (2,))
