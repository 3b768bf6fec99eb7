"""Torch datasets over what data_tools writes, and the dataset registry.

`data.name` picks an entry; its dataclass validates the `data.*` keys. An entry builds
(or reuses) the files with data_tools and returns a DomainData with the four splits.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset

from da.config import DataConfig
from da.data import transforms
from da.registry import Entry, lookup, register
from data_tools.splits import read_manifest, read_split

DATASETS: dict[str, Entry] = {}


class ArrayDataset(Dataset):
    """In-memory arrays; items are fetched by (index, batch_seed) keys from EndlessLoader.

    `prepare` turns stored arrays into model inputs (e.g. uint8 -> normalised float);
    `augment(x, generator)` is applied per batch when given. Unlabeled datasets return
    batches with no "label" key at all.
    """

    def __init__(self, x, y=None, input_key: str = "x", prepare: Callable | None = None,
                 augment: Callable | None = None):
        self.x = torch.as_tensor(x)
        self.y = None if y is None else torch.as_tensor(y).long()
        self.input_key, self.prepare, self.augment = input_key, prepare, augment

    def __len__(self) -> int:
        return len(self.x)

    def __getitems__(self, keys: list[tuple[int, int]]) -> dict[str, torch.Tensor]:
        idx = torch.tensor([k[0] for k in keys])
        x = self.x[idx]
        x = self.prepare(x) if self.prepare else x
        if self.augment is not None:
            x = self.augment(x, torch.Generator().manual_seed(keys[0][1]))
        batch = {self.input_key: x}
        if self.y is not None:
            batch["label"] = self.y[idx]
        return batch

    def __getitem__(self, key):
        batch = self.__getitems__([key if isinstance(key, tuple) else (key, 0)])
        return {k: v[0] for k, v in batch.items()}

    def all(self) -> dict[str, torch.Tensor]:
        """The whole split as one batch, unaugmented (for evaluation)."""
        x = self.prepare(self.x) if self.prepare else self.x
        batch = {self.input_key: x}
        if self.y is not None:
            batch["label"] = self.y
        return batch


@dataclass
class DomainData:
    source_train: Dataset  # labeled; for the train-on-target row: labeled target-train
    source_val: Dataset  # labeled, held out: the only labels model selection may see
    target_train: Dataset  # unlabeled
    target_test: Dataset  # labeled, for reporting only
    num_classes: int
    input_key: str
    input_shape: tuple[int, ...]
    class_weights: torch.Tensor | None = None  # task-loss weights per class (None: unweighted)


def dataset_folder(root: str, name: str, params: dict, build: Callable[..., Path]) -> Path:
    """data/<name>-<hash of the build parameters>/, built once with data_tools."""
    digest = hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:10]
    folder = Path(root) / f"{name}-{digest}"
    if not (folder / "manifest.json").is_file():
        build(folder, **params)
    return folder


def load_splits(folder: Path, target_labeled: bool, input_key: str, prepare: Callable | None,
                augment: Callable | None) -> dict[str, ArrayDataset]:
    manifest = read_manifest(folder)
    out = {}
    for split in ("source_train", "source_val", "target_train", "target_test"):
        labeled = split != "target_train" or target_labeled
        x, y = read_split(folder, split, with_labels=labeled)
        train = split in ("source_train", "target_train")
        out[split] = ArrayDataset(x, y, input_key, prepare, augment if train else None)
    if target_labeled:  # train-on-target: the labeled stream is target-train
        out["source_train"] = out["target_train"]
    out["num_classes"] = int(manifest["num_classes"])
    return out


def build_data(cfg: DataConfig) -> DomainData:
    return lookup(DATASETS, cfg.name, "dataset").build(cfg)


# ---- the DANN paper's datasets ----------------------------------------------------------


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


# Image-folder and point-cloud datasets live in their own modules; importing registers them.
from da.data import images, paper_digits, rebar3d, segmentation2d  # noqa: E402, F401
