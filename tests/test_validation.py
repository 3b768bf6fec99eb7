"""Unsupervised validators (da.validation) and model selection in `da reproduce`."""

import json
import shutil

import pytest
import torch

from da import checkpoint
from da.cli import main
from da.config import ConfigError, load_config
from da.reproduce import reproduce as da_reproduce
from da.train import train
from da.validation import validate_run
from tests.conftest import REPO, moons_configs

SHORT = ["train.steps=300", "train.eval_every=300", "train.checkpoint_every=300", "train.log_every=100",
         "train.embedding_samples=0"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A trained source-only moons run, and a copy whose task head is negated: its
    predictions (hence its pseudo-labels) are the opposite class everywhere."""
    root = tmp_path_factory.mktemp("val")
    data = tmp_path_factory.mktemp("valdata")
    cfg = load_config(moons_configs(False), SHORT + [f"run_dir={root / 'good'}", f"data.root={data}",
                                                     "train.progress_bar=false"])
    good = train(cfg)
    bad = root / "bad"
    shutil.copytree(good, bad)
    last = checkpoint.load(bad / "checkpoints" / "last.pt")
    for key in ("task_head.weight", "task_head.bias"):
        last["model"][key] = -last["model"][key]
    checkpoint.save_atomic(last, bad / "checkpoints" / "last.pt")
    (bad / "config.yaml").write_text((good / "config.yaml").read_text().replace(str(good), str(bad)))
    return good, bad


def test_reverse_validation_scores_good_labels_high_and_flipped_low(runs):
    good, bad = runs
    g, b = validate_run(good, "reverse"), validate_run(bad, "reverse")
    # Pseudo-labels ~75% right give a reverse model that is mostly right on source_val;
    # flipped ones give one that is mostly wrong. Seen: 0.87 vs 0.13.
    assert g["score"] > 0.6 and b["score"] < 0.4, (g, b)
    assert (good / "reverse" / "done").exists()
    assert sum(g["pseudo_label_counts"]) == 300  # every target_train sample labelled


def test_reverse_validation_is_cached_per_checkpoint(runs):
    good, _ = runs
    first = validate_run(good, "reverse")
    stamp = (good / "reverse" / "done").stat().st_mtime_ns
    again = validate_run(good, "reverse")
    assert again == first and (good / "reverse" / "done").stat().st_mtime_ns == stamp
    cached = json.loads((good / "validation" / "reverse.json").read_text())
    assert cached["step"] == 300 and cached["score"] == first["score"]


def test_dev_risk_is_lower_for_the_good_model(runs):
    good, bad = runs
    g, b = validate_run(good, "dev"), validate_run(bad, "dev")
    assert g["risk"] < b["risk"] and g["score"] > b["score"], (g, b)
    assert g["weight_mean"] > 0


def test_source_val_validator_reads_the_last_evaluation(runs):
    good, _ = runs
    last = [json.loads(line) for line in (good / "results.jsonl").read_text().splitlines()][-1]
    assert validate_run(good, "source_val")["score"] == last["source_val_acc"]


def test_validate_command_prints_cached_scores(runs, capsys):
    good, _ = runs
    assert main(["validate", str(good), "--validator", "source_val", "dev"]) == 0
    out = capsys.readouterr().out
    assert '"validator": "source_val"' in out and '"validator": "dev"' in out
    assert main(["validate", str(good), "--validator", "nope"]) == 2


def test_unknown_validator_and_unfinished_run(tmp_path, runs):
    with pytest.raises(ConfigError, match="unknown validator"):
        validate_run(runs[0], "nope")
    with pytest.raises(ConfigError, match="not a finished run"):
        validate_run(tmp_path, "source_val")


TABLE = """
description: tiny selection table
configs: [{repo}/experiments/configs/moons.yaml]
primary_metric: target_acc
metrics: [target_acc, source_val_acc]
seeds: [0]
rows:
  - name: source_only
    role: source_only
  - name: dann
    role: adapted
    configs: [{repo}/experiments/configs/moons_dann.yaml]
    grid: {{algorithm.lambda_max: [0.0, 6.0]}}
    select: [reverse, dev, source_val]
  - name: train_on_target
    role: oracle
    overrides: [data.target_labeled=true]
profiles:
  quick:
    overrides: [train.steps=200, train.eval_every=100, train.log_every=50, train.embedding_samples=0,
                train.progress_bar=false, data.root={data}]
  standard:
    overrides: [train.steps=200, data.root={data}]
"""


def test_reproduce_selects_grid_points_without_target_labels(tmp_path, data_root):
    table = tmp_path / "sel.yaml"
    table.write_text(TABLE.format(repo=REPO, data=data_root))
    out = tmp_path / "results"
    assert main(["reproduce", str(table), "--profile", "quick", "--out", str(out),
                 "--runs", str(tmp_path / "runs")]) == 0
    result = json.loads((out / "sel.quick.json").read_text())
    names = [r["name"] for r in result["rows"]]
    for by in ("reverse", "dev", "source_val", "target labels"):
        assert f"dann <- {by}" in names
    rep = result["selection"][0]
    assert rep["family"] == "dann" and len(rep["grid"]) == 2
    rows = {r["name"]: r for r in result["rows"]}
    # the picked row holds exactly the picked grid point's numbers
    for by in ("reverse", "target labels"):
        pick = rows[f"dann <- {by}"]["picks"]["0"]
        assert rows[f"dann <- {by}"]["metrics"]["target_acc"]["mean"] == rows[pick]["metrics"]["target_acc"]["mean"]
    # the target-label pick is by definition the best grid point on target accuracy
    best = max(rep["grid"], key=lambda g: g["target"]["mean"])
    assert rows["dann <- target labels"]["picks"]["0"] == best["name"]
    md = (out / "sel.quick.md").read_text()
    assert "Model selection: `dann`" in md and "no user can do that" in md

    # --finished-only trains nothing: with the scores gone, no reverse run is retrained
    # and the selection is left out rather than computed
    runs = tmp_path / "runs"
    for folder in list(runs.rglob("validation")) + list(runs.rglob("reverse")):
        shutil.rmtree(folder)
    again = da_reproduce(str(table), "quick", out_dir=tmp_path / "again", runs_root=runs, finished_only=True)
    assert not list(runs.rglob("reverse")) and "selection" not in again
    assert not any("<-" in r["name"] for r in again["rows"])


def test_select_needs_a_grid_and_known_validators(tmp_path, data_root):
    bad = TABLE.replace("select: [reverse, dev, source_val]", "select: [oracle_peek]")
    table = tmp_path / "bad.yaml"
    table.write_text(bad.format(repo=REPO, data=data_root))
    with pytest.raises(ConfigError, match="unknown validator"):
        from da.tables import load_table
        load_table(str(table))


def test_non_quick_profile_refuses_a_dirty_tree(tmp_path, data_root, monkeypatch):
    import da.reproduce

    monkeypatch.setattr(da.reproduce, "git_state", lambda: {"commit": "abc", "dirty": True})
    table = tmp_path / "sel.yaml"
    table.write_text(TABLE.format(repo=REPO, data=data_root))
    with pytest.raises(ConfigError, match="uncommitted changes"):
        da.reproduce.reproduce(str(table), "standard", out_dir=tmp_path / "o", runs_root=tmp_path / "r")
    assert not (tmp_path / "r").exists()  # refused before training anything


def test_float64_training(tmp_path, data_root):
    cfg = load_config(moons_configs(True), ["train.steps=20", "train.eval_every=20", "train.embedding_samples=0",
                                            "train.dtype=float64", f"data.root={data_root}",
                                            f"run_dir={tmp_path / 'r'}", "train.progress_bar=false"])
    run_dir = train(cfg)
    state = checkpoint.load(run_dir / "checkpoints" / "last.pt")["model"]
    assert all(v.dtype == torch.float64 for v in state.values() if v.is_floating_point())
    with pytest.raises(ConfigError, match="dtype"):
        load_config(moons_configs(False), ["train.dtype=float16"])
