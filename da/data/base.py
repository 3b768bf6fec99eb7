"""The dataset registry and what dataset modules share: in-memory arrays, cached folders.

`data.name` picks an entry of DATASETS; its dataclass validates the `data.*` keys. An
entry builds (or reuses) the files with data_tools and returns a DomainData
(`da.contracts`) with the four splits and the name of its task.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.data import Dataset

from da.contracts import DomainData  # noqa: F401 - re-exported for dataset modules
from da.registry import Entry
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
