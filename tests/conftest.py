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


@pytest.fixture(scope="session")
def tiny2d(tmp_path_factory):
    """Overrides for a tiny rendered rebar2d dataset (time shift), rendered once per session."""
    root = tmp_path_factory.mktemp("r2d")
    return ["data.name=rebar2d", f"data.root={root}", "data.shift=time", "data.images=[2,1,2,1]",
            "data.size=[96,96]", "data.views=2", "data.crop=64", "data.augment=true"]


# The configs the tiny rebar3d overrides go with: a small PointNet on top of the 3D defaults.
TINY_REBAR3D_CONFIGS = [REPO / "experiments/configs/rebar3d.yaml", REPO / "experiments/configs/rebar3d_pointnet.yaml"]


def tiny_rebar3d_overrides(folder: Path, tmp: Path, name: str, *extra: str) -> list[str]:
    """Overrides that make a rebar3d run on a tiny dataset `folder` take seconds: 256-point
    blocks, 2 cm voxels, one shape radius, a small PointNet (rebar3d_pointnet.yaml)."""
    return [f"data.path={folder}", f"data.root={tmp}", "data.num_points=256", "data.voxel=0.02",
            "data.shape_radii=[0.04]", "model.local=[16,32]", "model.global_width=32",
            "model.fuse=[32,16]", "model.head_hidden=[16]", "train.progress_bar=false",
            "train.embedding_samples=0", "train.batch_size=2", "train.log_every=2",
            f"run_dir={tmp / name}", *extra]
