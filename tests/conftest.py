"""Shared small fixtures: tiny data built once per session, runs in tmp folders."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> Path:
    # One data folder for the whole session so each dataset is generated once.
    return tmp_path_factory.mktemp("data")


@pytest.fixture
def moons_overrides(data_root) -> list[str]:
    return [f"data.root={data_root}", "train.progress_bar=false", "train.embedding_samples=20"]


def moons_configs(dann: bool) -> list[Path]:
    base = [REPO / "experiments/configs/moons.yaml"]
    return base + ([REPO / "experiments/configs/moons_dann.yaml"] if dann else [])
