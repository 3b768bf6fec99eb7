"""DANN beats a plain network on the rotated two-moons target, seed by seed."""

import pytest

from da.config import load_config
from da.logging import read_results
from da.train import train
from tests.conftest import moons_configs

SHORT = ["train.eval_every=2000", "train.checkpoint_every=2000", "train.embedding_samples=0"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dann_beats_source_only_on_moons(seed, tmp_path, moons_overrides):
    acc = {}
    for dann in (False, True):
        cfg = load_config(moons_configs(dann), moons_overrides + SHORT + [
            f"seed={seed}", f"run_dir={tmp_path / str(dann)}"])
        acc[dann] = read_results(train(cfg))[-1]["target_acc"]
    assert acc[True] > acc[False] + 0.03, acc
