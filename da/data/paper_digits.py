"""The DANN paper's digit pairs (MNIST -> MNIST-M, SVHN -> MNIST, ...) from local files.

Reads the standard files with data_tools.digit_files (see there for where to put them; a
missing file is a clear error, nothing is downloaded). Images are resized to
`image_size`, grey ones repeated to 3 channels, scaled to [-1, 1]. source_val is a
seeded `val_fraction` of the source's train split (held out from training); target_train
is the target's train split WITHOUT labels; target_test its test split.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import da.data.transforms as transforms
from da.config_schema import DataConfig
from da.data.base import DATASETS, ArrayDataset, DomainData
from da.registry import register
from data_tools.digit_files import DIGIT_SETS, read_digits


@dataclass
class PaperDigitsConfig(DataConfig):
    name: str = "paper_digits"
    source: str = "mnist"
    target: str = "mnistm"
    digits_root: str = "data/digits_raw"
    image_size: int = 28
    val_fraction: float = 0.1
    data_seed: int = 0
    max_shift: int = 0  # augmentation: random translation in pixels

    def validate(self) -> None:
        for key in ("source", "target"):
            if getattr(self, key) not in DIGIT_SETS:
                raise ValueError(f"data.{key} must be one of {', '.join(DIGIT_SETS)}, got '{getattr(self, key)}'")
        if self.source == self.target:
            raise ValueError("data.source and data.target must differ")
        if not 0 < self.val_fraction < 1 or self.image_size < 8:
            raise ValueError("need 0 < val_fraction < 1 and image_size >= 8")


def ensure_mnistm(root: Path) -> None:
    """MNIST-M is built once from MNIST by the paper's recipe (data_tools.mnistm) when the
    folder has none; a folder that holds one (the original release, or ours) is used as is."""
    if (root / "mnist_m" / "mnist_m_train_labels.txt").is_file():
        return
    from data_tools.mnistm import build_mnistm

    print(f"building MNIST-M in {root / 'mnist_m'} (data_tools.mnistm: MNIST x 10 offline photos)", flush=True)
    build_mnistm(root)


def to_tensor(images: np.ndarray, size: int) -> torch.Tensor:
    """(N, H, W, C) uint8 -> (N, 3, size, size) float in [-1, 1]."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return (x - 0.5) / 0.5


@register(DATASETS, "paper_digits", PaperDigitsConfig)
def build_paper_digits(cfg: PaperDigitsConfig) -> DomainData:
    cfg.validate()
    if "mnistm" in (cfg.source, cfg.target):
        ensure_mnistm(Path(cfg.digits_root))
    xs, ys = read_digits(cfg.source, cfg.digits_root, "train")
    xt, yt_train = read_digits(cfg.target, cfg.digits_root, "train")
    xt_test, yt_test = read_digits(cfg.target, cfg.digits_root, "test")
    order = np.random.default_rng(cfg.data_seed).permutation(len(xs))
    n_val = max(1, int(round(cfg.val_fraction * len(xs))))
    val, train = order[:n_val], order[n_val:]
    size = cfg.image_size
    augment = ((lambda x, g: transforms.random_shift(x, g, cfg.max_shift, fill=-1.0))
               if cfg.augment and cfg.max_shift > 0 else None)
    source_x, source_y = to_tensor(xs[train], size), ys[train]
    if cfg.target_labeled:  # the oracle trains on the target's train labels
        source_x, source_y = to_tensor(xt, size), yt_train
    return DomainData(
        source_train=ArrayDataset(source_x, source_y, "image", None, augment),
        source_val=ArrayDataset(to_tensor(xs[val], size), ys[val], "image"),
        target_train=ArrayDataset(to_tensor(xt, size), None, "image", None, augment),
        target_test=ArrayDataset(to_tensor(xt_test, size), yt_test, "image"),
        num_classes=10, input_key="image", input_shape=(3, size, size))
