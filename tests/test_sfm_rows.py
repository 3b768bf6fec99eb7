"""Evaluating a trained 3D run on another target test: `da evaluate RUN data.path=...` and
experiments/sfm_rows.py's swapped-target_test dataset."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from da.cli import main as da_main
from da.config import load_config
from da.evaluation import evaluate
from da.runs import load_trained
from da.train import train
from data_tools.splits import DatasetFileError
from data_tools.target_dataset import build_rebar3d

REPO = Path(__file__).resolve().parent.parent
CONFIGS = [REPO / "experiments/configs/rebar3d.yaml", REPO / "experiments/configs/rebar3d_pointnet.yaml"]


def _script():
    spec = importlib.util.spec_from_file_location("sfm_rows", REPO / "experiments/sfm_rows.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """(dataset, finished run) on a tiny fast dataset with two target-test scenes."""
    tmp = tmp_path_factory.mktemp("sfm_rows")
    ds = build_rebar3d(tmp / "ds", scenes=8, mode="fast", preset="typical", seed=1, density=4000,
                       progress=False, elements=["column", "beam"])
    over = [f"data.path={ds}", f"data.root={tmp}", "data.num_points=256", "data.voxel=0.02",
            "model.local=[16,32]", "model.global_width=32", "model.fuse=[32,16]",
            "model.head_hidden=[16]", "train.progress_bar=false", "train.embedding_samples=0",
            "train.steps=4", "train.batch_size=2", "train.eval_every=4", "train.checkpoint_every=4",
            "train.log_every=4", f"run_dir={tmp / 'run'}"]
    return ds, train(load_config(CONFIGS, over))


def _copy_target_test(ds: Path, to: Path) -> list[str]:
    """The dataset's target_test clouds laid out as sfm_test_set.py writes them."""
    to.mkdir(parents=True)
    manifest = json.loads((ds / "manifest.json").read_text())
    stems = []
    for entry in manifest["splits"]["target_test"]:
        stem = Path(entry["file"]).stem
        shutil.copy(ds / "target_test" / entry["file"], to / f"{stem}.ply")
        shutil.copy(ds / "target_test" / entry["labels_file"], to / f"{stem}_labels.npy")
        stems.append(stem)
    return stems


def test_swapped_target_test_evaluates_what_it_holds(trained, tmp_path):
    ds, run_dir = trained
    sfm_rows = _script()
    before = evaluate(load_trained(run_dir), step=-1)
    # the run's own final evaluation (its `done` file) is what evaluating it again gives
    assert sfm_rows.final_evaluation(run_dir)["target_miou"] == before["target_miou"]
    stems = _copy_target_test(ds, tmp_path / "same")
    assert len(stems) == 2
    same = sfm_rows.evaluation_dataset(ds, tmp_path / "same", tmp_path / "eval_same", voxel=0.02)
    # the same clouds behind another folder: the same numbers, to the last bit
    again = sfm_rows.evaluate_on(run_dir, same)
    assert again["target_miou"] == before["target_miou"] and again["source_val_miou"] == before["source_val_miou"]
    # other labels on the swapped clouds: other numbers (the swapped files are what is read)
    _copy_target_test(ds, tmp_path / "other")
    for stem in stems:
        path = tmp_path / "other" / f"{stem}_labels.npy"
        labels = np.load(path)
        np.save(path, np.where(labels == 255, 255, (labels + 1) % 3).astype(labels.dtype))
    other = sfm_rows.evaluate_on(run_dir, sfm_rows.evaluation_dataset(ds, tmp_path / "other",
                                                                      tmp_path / "eval_other", voxel=0.02))
    assert abs(other["target_miou"] - before["target_miou"]) > 1e-3
    assert other["source_val_miou"] == before["source_val_miou"]  # source splits linked, unchanged
    # the first clouds re-made with the other labels, same folder: the cache does not hide it
    for stem in stems:
        shutil.copy(tmp_path / "other" / f"{stem}_labels.npy", tmp_path / "same" / f"{stem}_labels.npy")
    remade = sfm_rows.evaluate_on(run_dir, sfm_rows.evaluation_dataset(ds, tmp_path / "same",
                                                                       tmp_path / "eval_same", voxel=0.02))
    assert remade["target_miou"] == other["target_miou"]


def test_missing_scene_is_left_out_and_listed(trained, tmp_path):
    ds, _ = trained
    sfm_rows = _script()
    stems = _copy_target_test(ds, tmp_path / "clouds")
    (tmp_path / "clouds" / f"{stems[0]}.ply").unlink()  # SfM failed on that scene
    out = sfm_rows.evaluation_dataset(ds, tmp_path / "clouds", tmp_path / "eval", voxel=0.02)
    manifest = json.loads((out / "manifest.json").read_text())
    assert [e["file"] for e in manifest["splits"]["target_test"]] == [f"{stems[1]}.ply"]
    assert manifest["target_test_missing"] == [stems[0]]
    for stem in stems:
        (tmp_path / "clouds" / f"{stem}.ply").unlink(missing_ok=True)
    with pytest.raises(DatasetFileError, match="none of the benchmark's target_test"):
        sfm_rows.evaluation_dataset(ds, tmp_path / "clouds", tmp_path / "eval", voxel=0.02)


def test_evaluate_cli_takes_data_overrides_only(trained, tmp_path, capsys):
    ds, run_dir = trained
    assert da_main(["evaluate", str(run_dir), f"data.path={ds}"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert 0 <= printed["target_miou"] <= 1
    with pytest.raises(ValueError, match="only data"):
        load_trained(run_dir, overrides=["model.global_width=64"])
