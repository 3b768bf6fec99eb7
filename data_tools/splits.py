"""A dataset on disk: one folder of .npz split files plus manifest.json.

Splits follow the project's contract: source_train and source_val are labeled;
target_train holds inputs only (its labels sit in target_train_labels.npz, read only by
the train-on-target row); target_test keeps its labels in target_test_labels.npz.
A folder is written under a temporary name and renamed, so a killed build never leaves
a half-written dataset behind.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

SPLITS = ("source_train", "source_val", "target_train", "target_test")


class DatasetFileError(ValueError):
    """A dataset file is missing, corrupt or inconsistent; the message names the file."""


def write_dataset(out_dir: str | Path, arrays: dict[str, np.ndarray], manifest: dict) -> Path:
    """arrays: '<split>/x', '<split>/y' for each split. Writes the folder atomically."""
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for split in SPLITS:
        x, y = arrays[f"{split}/x"], arrays[f"{split}/y"]
        if len(x) != len(y):
            raise ValueError(f"{split}: {len(x)} inputs but {len(y)} labels")
        labeled = split.startswith("source")
        if labeled:
            np.savez(tmp / f"{split}.npz", x=x, y=y)
        else:  # inputs and labels in separate files: unlabeled means unlabeled
            np.savez(tmp / f"{split}.npz", x=x)
            np.savez(tmp / f"{split}_labels.npz", y=y)
    counts = {s: len(arrays[f"{s}/x"]) for s in SPLITS}
    (tmp / "manifest.json").write_text(json.dumps({**manifest, "counts": counts}, indent=2))
    if (out_dir / "manifest.json").exists():
        # Another process finished the same build first: keep its folder (it may be
        # reading it) and drop ours.
        shutil.rmtree(tmp)
        return out_dir
    if out_dir.exists():  # a folder without manifest is a leftover, never a finished build
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)
    return out_dir


def _load_npz(path: Path, key: str) -> np.ndarray:
    if not path.is_file():
        raise DatasetFileError(f"{path}: missing dataset file")
    try:
        with np.load(path) as data:
            if key not in data:
                raise DatasetFileError(f"{path}: has no array '{key}' (found {list(data.keys())})")
            return data[key]
    except DatasetFileError:
        raise
    except Exception as exc:  # zipfile.BadZipFile, EOFError, ValueError on truncation
        raise DatasetFileError(f"{path}: corrupt or truncated ({type(exc).__name__}: {exc})") from None


def read_split(folder: str | Path, split: str, with_labels: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Inputs of one split and, if asked, its labels (from the separate file for target splits)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split '{split}'; splits: {', '.join(SPLITS)}")
    folder = Path(folder)
    x = _load_npz(folder / f"{split}.npz", "x")
    if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
        raise DatasetFileError(f"{folder / (split + '.npz')}: inputs contain NaN or infinite values")
    if not with_labels:
        return x, None
    label_file = folder / (f"{split}.npz" if split.startswith("source") else f"{split}_labels.npz")
    y = _load_npz(label_file, "y")
    if len(y) != len(x):
        raise DatasetFileError(f"{label_file}: {len(y)} labels for {len(x)} inputs")
    return x, y


def read_manifest(folder: str | Path) -> dict:
    path = Path(folder) / "manifest.json"
    if not path.is_file():
        raise DatasetFileError(f"{path}: missing manifest")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DatasetFileError(f"{path}: corrupt manifest ({exc})") from None
