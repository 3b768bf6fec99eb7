"""ImageFolder-style datasets: reading, class sets, per-class limits, bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from da.config import load_config
from da.data import build_data
from data_tools.splits import DatasetFileError


def write_folder(root: Path, classes=("a", "b", "c"), per_split=None, size=(40, 30), seed=0) -> Path:
    """Class k's images are mostly colour k: a task a network can learn."""
    rng = np.random.default_rng(seed)
    per_split = per_split or {"train": 6, "val": 2, "test": 3}
    for split, n in per_split.items():
        for k, name in enumerate(classes):
            d = root / split / name
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                img = rng.integers(0, 60, (size[1], size[0], 3)).astype(np.uint8)
                img[..., k % 3] += 150
                Image.fromarray(img).save(d / f"{i}.png")
    return root


def _cfg(path, *extra):
    return load_config(None, ["data.name=image_folder", f"data.path={path}", "data.image_size=24", *extra])


def test_image_folder_splits_classes_and_limits(tmp_path):
    root = write_folder(tmp_path / "ds")
    data = build_data(_cfg(root).data)
    assert data.num_classes == 3 and data.input_shape == (3, 24, 24)
    assert len(data.source_train) == 18 and len(data.source_val) == 6 and len(data.target_test) == 9
    batch = data.source_val.all()
    assert batch["image"].shape == (6, 3, 24, 24)
    # class k is brightest in channel k (after ImageNet normalisation the order holds)
    for k in range(3):
        means = batch["image"][batch["label"] == k].mean(dim=(0, 2, 3))
        assert int(means.argmax()) == k
    small = build_data(_cfg(root, "data.per_class=2").data)
    assert len(small.source_train) == 6
    assert np.bincount(small.source_train.y.numpy()).tolist() == [2, 2, 2]
    other = build_data(_cfg(root, "data.per_class=2", "data.data_seed=1").data)
    assert not np.array_equal(other.source_train.x.numpy(), small.source_train.x.numpy())


def test_second_domain_is_unlabeled_in_training(tmp_path):
    src = write_folder(tmp_path / "src")
    tgt = write_folder(tmp_path / "tgt", per_split={"train": 4, "test": 2}, seed=3)
    data = build_data(_cfg(src, f"data.target_path={tgt}").data)
    assert data.target_train.y is None and len(data.target_train) == 12
    assert len(data.target_test) == 6
    oracle = build_data(_cfg(src, f"data.target_path={tgt}", "data.target_labeled=true").data)
    assert len(oracle.source_train) == 12 and oracle.source_train.y is not None


def test_bad_image_files_name_the_file(tmp_path):
    root = write_folder(tmp_path / "ds")
    bad = root / "train" / "b" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)  # a PNG header, then nothing
    with pytest.raises(DatasetFileError, match="broken.png: unreadable image"):
        build_data(_cfg(root).data)
    bad.unlink()
    (root / "test" / "zebra").mkdir()
    with pytest.raises(DatasetFileError, match=r"\['zebra'\] are not classes"):
        build_data(_cfg(root).data)
    with pytest.raises(DatasetFileError, match="nowhere: no such folder"):
        build_data(_cfg(tmp_path / "nowhere").data)
