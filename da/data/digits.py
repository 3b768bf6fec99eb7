"""Digits -> Digits-M: scikit-learn's 8x8 digits upscaled, the target blended with photo
crops as MNIST-M blends MNIST (data_tools.digits); a small analogue of the paper's pair.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

import da.data.transforms as transforms
from da.config_schema import DataConfig
from da.data.base import DATASETS, DomainData, dataset_folder, load_splits
from da.registry import register


@dataclass
class DigitsConfig(DataConfig):
    name: str = "digits"
    image_size: int = 28
    source_train: int = 750
    source_val: int = 150
    target_train: int = 600
    target_train_blends: int = 1  # photo crops per unlabeled target digit
    target_test_blends: int = 4
    data_seed: int = 0
    max_shift: int = 2  # augmentation: random translation in pixels
    color_jitter: float = 0.0  # augmentation: per-channel gain/offset strength


def _images_to_float(x: torch.Tensor) -> torch.Tensor:
    return (x.float() / 255.0 - 0.5) / 0.5


@register(DATASETS, "digits", DigitsConfig)
def build_digits(cfg: DigitsConfig) -> DomainData:
    from data_tools.digits import build_digits as make

    params = {k: v for k, v in asdict(cfg).items()
              if k in ("image_size", "source_train", "source_val", "target_train",
                       "target_train_blends", "target_test_blends")}
    params["seed"] = cfg.data_seed
    folder = dataset_folder(cfg.root, "digits", params, make)

    def augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        if cfg.max_shift > 0:
            x = transforms.random_shift(x, g, cfg.max_shift, fill=-1.0)  # black in [-1, 1]
        if cfg.color_jitter > 0:
            x = transforms.colour_jitter(x, g, cfg.color_jitter)
        return x

    s = load_splits(folder, cfg.target_labeled, "image", _images_to_float,
                    augment if cfg.augment else None)
    return DomainData(s["source_train"], s["source_val"], s["target_train"], s["target_test"],
                      s["num_classes"], "image", (3, cfg.image_size, cfg.image_size))
