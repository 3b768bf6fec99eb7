"""docs/adding_a_dataset.md's worked example, run: a dataset from one file, registered and trained."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import numpy as np
import pytest

import da.data
from da.config import ConfigError, load_config
from da.data import DATASETS
from da.run_log import read_results
from da.train import train

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "adding_a_dataset.md"


def example_source() -> str:
    """The first python block of the page: the whole dataset file."""
    return re.search(r"```python\n(.*?)```", DOC.read_text(), re.S).group(1)


@pytest.fixture
def npz_dataset(tmp_path):
    """The page's file, imported from a copy under tmp_path (as da/data/ would), then removed
    from the registry again so other tests see the registry they expect."""
    path = tmp_path / "npz_features.py"
    path.write_text(example_source())
    spec = importlib.util.spec_from_file_location("npz_features_example", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        DATASETS.pop("npz_features", None)
        sys.modules.pop(spec.name, None)


def blobs(rng: np.random.Generator, n: int, shift: float) -> tuple[np.ndarray, np.ndarray]:
    """Two Gaussian classes 4 std apart in 5-D; the target moves every class by `shift`."""
    y = rng.integers(0, 2, n)
    x = rng.normal(0, 1, (n, 5)) + 4.0 * y[:, None] * np.eye(5)[0] + shift
    return x.astype(np.float32), y


def test_every_module_of_da_data_is_discovered():
    files = {p.stem for p in Path(da.data.__file__).parent.glob("*.py") if p.stem != "__init__"}
    assert {f"da.data.{f}" for f in files} <= set(sys.modules)
    assert {"moons", "digits", "rebar2d", "rebar3d", "seg_files"} <= set(DATASETS)


def test_a_dataset_from_one_file_registers_and_trains(npz_dataset, tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "source.npz", *(), **dict(zip("xy", blobs(rng, 400, 0.0))))
    np.savez(tmp_path / "target.npz", *(), **dict(zip("xy", blobs(rng, 300, 0.5))))
    cfg = load_config([REPO / "experiments/configs/moons.yaml"],
                      ["data.name=npz_features", f"data.path={tmp_path}", "train.steps=150",
                       "train.eval_every=150", "train.checkpoint_every=150", "train.progress_bar=false",
                       "train.embedding_samples=20", f"run_dir={tmp_path / 'run'}"])
    assert type(cfg.data).__name__ == "NpzFeaturesConfig"
    final = read_results(train(cfg))[-1]
    # classes 4 std apart: the Bayes error is ~2%, chance is 50%; a trained MLP is far above 0.8
    assert final["source_val_acc"] > 0.8 and final["target_acc"] > 0.7
    assert (tmp_path / "run" / "done").is_file()


def test_its_keys_and_values_are_checked(npz_dataset, tmp_path):
    with pytest.raises(ConfigError, match="valid keys"):
        load_config(None, ["data.name=npz_features", f"data.path={tmp_path}", "data.val_fration=0.1"])
    with pytest.raises(ConfigError, match="val_fraction"):
        load_config(None, ["data.name=npz_features", f"data.path={tmp_path}", "data.val_fraction=2"])
    cfg = load_config(None, ["data.name=npz_features", f"data.path={tmp_path}"])
    with pytest.raises(FileNotFoundError, match="source.npz"):
        da.data.build_data(cfg.data)
