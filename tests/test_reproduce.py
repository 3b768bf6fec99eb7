"""`da reproduce` and `da train` in-process on a tiny table."""

import json

import pytest

from da.cli import main
from da.provenance import cpu_model
from tests.conftest import REPO

TABLE = """
description: tiny moons table for tests
configs: [{repo}/experiments/configs/moons.yaml]
primary_metric: target_acc
metrics: [target_acc, source_val_acc, pad, target_acc_at_best_source_val]
seeds: [0, 1]
rows:
  - name: source_only
    role: source_only
  - name: dann
    role: adapted
    configs: [{repo}/experiments/configs/moons_dann.yaml]
    grid: {{algorithm.lambda_max: [1.0, 6.0]}}
  - name: train_on_target
    role: oracle
    overrides: [data.target_labeled=true]
  - name: source_only_lr0.1
    overrides: [optim.lr=0.1]
  - name: dann_lr0.1
    role: adapted
    baseline: source_only_lr0.1
    configs: [{repo}/experiments/configs/moons_dann.yaml]
    overrides: [optim.lr=0.1]
profiles:
  quick:
    overrides: [train.steps=40, train.eval_every=20, train.log_every=10, train.embedding_samples=10,
                train.progress_bar=false, data.root={data}]
figure: moons_boundaries
"""


@pytest.fixture
def table(tmp_path, data_root):
    path = tmp_path / "tiny.yaml"
    path.write_text(TABLE.format(repo=REPO, data=data_root))
    return path


def test_reproduce_writes_tables_and_resumes(table, tmp_path, capsys):
    out, runs = tmp_path / "results", tmp_path / "runs"
    args = ["reproduce", str(table), "--profile", "quick", "--out", str(out), "--runs", str(runs)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "| source_only | source_only |" in printed and "gap closed" in printed
    result = json.loads((out / "tiny.quick.json").read_text())
    assert {"table", "profile", "command", "git_commit", "machine", "primary_metric", "rows"} <= set(result)
    names = [r["name"] for r in result["rows"]]
    assert names == ["source_only", "dann[lambda_max=1.0]", "dann[lambda_max=6.0]", "train_on_target",
                     "source_only_lr0.1", "dann_lr0.1"]
    for row in result["rows"]:
        acc = row["metrics"]["target_acc"]
        assert len(acc["values"]) == 2 and 0.0 <= acc["mean"] <= 1.0
        assert {"name", "algorithm", "seeds", "metrics"} <= set(row)
    so, dann, oracle = (result["rows"][i]["metrics"]["target_acc"]["mean"] for i in (0, 1, 3))
    assert result["rows"][1]["gap_closed"] == pytest.approx((dann - so) / (oracle - so))
    so_b, dann_b = (result["rows"][i]["metrics"]["target_acc"]["mean"] for i in (4, 5))
    assert result["rows"][5]["gap_closed"] == pytest.approx((dann_b - so_b) / (oracle - so_b))
    assert "gap_closed" not in result["rows"][4]
    assert (out / "tiny.quick.md").read_text().startswith("# tiny (quick profile)")
    assert (out / "tiny.quick.png").stat().st_size > 10_000
    # every run is finished; a second call trains nothing and gives the same numbers
    done = sorted(runs.rglob("done"))
    assert len(done) == 12
    stamps = [p.stat().st_mtime_ns for p in done]
    assert main(args) == 0
    assert "already done" in capsys.readouterr().out
    assert [p.stat().st_mtime_ns for p in done] == stamps
    assert json.loads((out / "tiny.quick.json").read_text())["rows"] == result["rows"]
    # the best.pt column reports the checkpoint the trainer actually kept
    import torch

    for row in result["rows"]:
        kept = [torch.load(f"{d}/checkpoints/best.pt", weights_only=False)["metrics"]["target_acc"]
                for d in row["run_dirs"]]
        assert row["metrics"]["target_acc_at_best_source_val"]["values"] == kept
    # a subset of rows writes its own files and leaves the full table alone
    full_md = (out / "tiny.quick.md").read_text()
    assert main([*args, "--rows", "dann*"]) == 0
    assert (out / "tiny.quick.md").read_text() == full_md
    subset = json.loads((out / "tiny.quick.subset.json").read_text())
    assert [r["name"] for r in subset["rows"]] == ["dann[lambda_max=1.0]", "dann[lambda_max=6.0]", "dann_lr0.1"]
    # the provenance of a run is recorded
    run = runs / "tables/tiny/quick/source_only/seed0"
    prov = json.loads((run / "provenance.json").read_text())
    assert {"git", "packages", "machine", "seeds"} <= set(prov) and prov["seeds"]["run"] == 0
    assert prov["machine"]["cpu_model"] == cpu_model() and prov["machine"]["cpu_model"]  # not only "x86_64"
    assert (run / "config.yaml").read_text().count("target_labeled: false") == 1
    assert list((run / "tb").glob("events.out.tfevents.*"))
    assert (run / "checkpoints/best.pt").exists() and (run / "checkpoints/last.pt").exists()


def test_unknown_table_key_and_profile(tmp_path, table, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(table.read_text().replace("primary_metric", "primary_metrik"))
    assert main(["reproduce", str(bad), "--profile", "quick"]) == 2
    assert "primary_metrik" in capsys.readouterr().err
    assert main(["reproduce", str(table), "--profile", "huge"]) == 2
    assert "no profile 'huge'" in capsys.readouterr().err
    bad.write_text(table.read_text().replace("baseline: source_only_lr0.1", "baseline: nope"))
    assert main(["reproduce", str(bad), "--profile", "quick"]) == 2
    assert "baseline 'nope', which is not a row" in capsys.readouterr().err


def test_profile_rows_restrict_the_table(tmp_path, table):
    text = table.read_text().replace("    overrides: [train.steps=40,",
                                     "    rows: [source_only, 'dann[lambda_max=6*']\n    overrides: [train.steps=40,")
    small = tmp_path / "small.yaml"
    small.write_text(text)
    out = tmp_path / "results"
    assert main(["reproduce", str(small), "--profile", "quick", "--out", str(out),
                 "--runs", str(tmp_path / "runs")]) == 0
    result = json.loads((out / "small.quick.json").read_text())  # the profile's table, not a subset
    assert [r["name"] for r in result["rows"]] == ["source_only", "dann[lambda_max=6.0]"]
    small.write_text(text.replace("rows: [source_only, 'dann[lambda_max=6*']", "rows: [nothing*]"))
    assert main(["reproduce", str(small), "--profile", "quick", "--out", str(out),
                 "--runs", str(tmp_path / "runs")]) == 2


def test_train_and_config_commands(tmp_path, data_root, capsys):
    base = [str(REPO / "experiments/configs/moons.yaml"), f"data.root={data_root}", "train.steps=10",
            "train.eval_every=10", "train.progress_bar=false", f"run_dir={tmp_path / 'r'}"]
    assert main(["config", *base, "optim.lr=0.3"]) == 0
    assert "lr: 0.3" in capsys.readouterr().out
    assert main(["train", *base]) == 0
    assert (tmp_path / "r" / "done").exists()
    assert main(["evaluate", str(tmp_path / "r")]) == 0
    assert '"target_acc"' in capsys.readouterr().out
    assert main(["train", *base, "optim.lrr=1"]) == 2
    assert "optim.lrr" in capsys.readouterr().err


def test_every_committed_table_resolves_for_every_profile():
    from pathlib import Path

    from da.tables import load_table, row_config

    for path in sorted((REPO / "experiments/tables").glob("*.yaml")):
        table = load_table(str(path))
        for profile in table.profiles:
            for row in table.rows:  # builds each row's config: unknown keys would raise here
                row_config(table, profile, row, 0, Path("runs"), [f"{k}=/a/users/folder" for k in table.requires])


def test_finished_only_tabulates_what_is_done_and_trains_nothing(table, tmp_path):
    out, runs = tmp_path / "results", tmp_path / "runs"
    base = ["reproduce", str(table), "--profile", "quick", "--out", str(out), "--runs", str(runs)]
    assert main(base + ["--rows", "source_only", "train_on_target"]) == 0  # both seeds
    assert main(base + ["--rows", "dann_lr0.1", "--seeds", "0"]) == 0
    assert main(base + ["--finished-only"]) == 0
    result = json.loads((out / "tiny.quick.partial.json").read_text())
    seeds = {r["name"]: r["seeds"] for r in result["rows"]}
    assert seeds == {"source_only": [0, 1], "train_on_target": [0, 1], "dann_lr0.1": [0]}
    assert "dann[lambda_max=1.0] seed 0" in result["missing_runs"]
    assert not (runs / "tables/tiny/quick/dann_lambda_max1.0").exists()  # nothing was trained
    md = (out / "tiny.quick.partial.md").read_text()
    assert "Partial table" in md and "| dann_lr0.1 | dann | 0 |" in md

    # Another session: runs/ lost one run; --carry takes its numbers from the earlier table.
    import shutil

    earlier = tmp_path / "earlier.json"
    earlier.write_text((out / "tiny.quick.partial.json").read_text())
    before = {r["name"]: r["per_seed"] for r in result["rows"]}
    shutil.rmtree(runs / "tables/tiny/quick/source_only/seed1")
    assert main(base + ["--finished-only"]) == 0
    lost = json.loads((out / "tiny.quick.partial.json").read_text())
    assert {r["name"]: r["seeds"] for r in lost["rows"]}["source_only"] == [0]
    assert main(base + ["--finished-only", "--carry", str(earlier)]) == 0
    again = json.loads((out / "tiny.quick.partial.json").read_text())
    rows = {r["name"]: r for r in again["rows"]}
    assert rows["source_only"]["seeds"] == [0, 1]
    assert rows["source_only"]["per_seed"]["1"] == before["source_only"]["1"]
    assert rows["source_only"]["per_seed"]["0"] == before["source_only"]["0"]  # from disk, same run
    assert again["carried_runs"]["runs"] == ["source_only seed 1"]
    assert "Carried runs" in (out / "tiny.quick.partial.md").read_text()
    assert main(base + ["--carry", str(earlier)]) == 2  # carrying while training is refused


INIT_TABLE = """
description: a row that starts from another row's runs
configs: [{repo}/experiments/configs/moons.yaml]
primary_metric: target_acc
metrics: [target_acc]
seeds: [0, 1]
rows:
  - name: source_only
    role: source_only
  - name: self_training
    role: adapted
    init_from: source_only
    overrides: [algorithm.name=self_training, train.steps=10]
profiles:
  quick:
    rows: [self_training]
    overrides: [train.steps=20, train.eval_every=10, train.log_every=10, train.embedding_samples=0,
                train.progress_bar=false, data.root={data}]
"""


def test_init_from_row_trains_its_start_first_and_loads_the_same_seed(tmp_path, data_root):
    path = tmp_path / "init.yaml"
    path.write_text(INIT_TABLE.format(repo=REPO, data=data_root))
    runs = tmp_path / "runs"
    # the profile lists only self_training: its starting runs are trained anyway
    assert main(["reproduce", str(path), "--profile", "quick", "--out", str(tmp_path / "out"),
                 "--runs", str(runs)]) == 0
    for seed in (0, 1):
        start = runs / f"tables/init/quick/source_only/seed{seed}"
        assert (start / "done").exists()
        prov = json.loads((runs / f"tables/init/quick/self_training/seed{seed}/provenance.json").read_text())
        assert prov["init_from"] == str(start / "checkpoints" / "last.pt")
    path.write_text(INIT_TABLE.format(repo=REPO, data=data_root).replace("init_from: source_only",
                                                                         "init_from: nothing"))
    assert main(["reproduce", str(path), "--profile", "quick", "--runs", str(runs)]) == 2


def test_profile_row_seeds_give_a_row_fewer_seeds(tmp_path, data_root):
    text = INIT_TABLE.format(repo=REPO, data=data_root).replace(
        "    rows: [self_training]\n", "    row_seeds: {self_training: [1]}\n")
    path = tmp_path / "few.yaml"
    path.write_text(text)
    out, runs = tmp_path / "out", tmp_path / "runs"
    assert main(["reproduce", str(path), "--profile", "quick", "--out", str(out), "--runs", str(runs)]) == 0
    result = json.loads((out / "few.quick.json").read_text())
    seeds = {r["name"]: r["seeds"] for r in result["rows"]}
    assert seeds == {"source_only": [0, 1], "self_training": [1]}
    assert "missing_runs" not in result  # fewer seeds by design is not a partial table
    assert "| seeds |" in (out / "few.quick.md").read_text()
    path.write_text(text.replace("row_seeds: {self_training", "row_seeds: {nothing"))
    assert main(["reproduce", str(path), "--profile", "quick", "--runs", str(runs)]) == 2


WEIGHTS_TABLE = """
description: transfer rows built on one pretrained run
configs: [{repo}/experiments/configs/transfer.yaml]
primary_metric: target_acc_at_best_source_val
metrics: [target_acc_at_best_source_val, target_acc]
seeds: [0, 1]
rows:
  - name: pretrain
    overrides: [data.path={pre}]
  - name: probe
    weights_from: pretrain
    overrides: [data.path={tgt}, model.strategy=feature_extractor, data.augment=false]
profiles:
  quick:
    rows: [probe]
    overrides: [data.name=image_folder, data.image_size=32, train.steps=4, train.eval_every=2,
                train.batch_size=6, train.log_every=2, train.progress_bar=false]
"""


def test_weights_from_row_pretrains_once_and_every_seed_reads_that_backbone(tmp_path):
    import torch

    from da.models.torchvision_nets import run_backbone
    from tests.test_images import write_folder

    pre = write_folder(tmp_path / "pre", classes=("a", "b"), size=(36, 36))
    tgt = write_folder(tmp_path / "tgt", classes=("x", "y", "z"), size=(36, 36), seed=3)
    path = tmp_path / "weights.yaml"
    path.write_text(WEIGHTS_TABLE.format(repo=REPO, pre=pre, tgt=tgt))
    runs = tmp_path / "runs"
    assert main(["reproduce", str(path), "--profile", "quick", "--out", str(tmp_path / "out"),
                 "--runs", str(runs)]) == 0
    start = runs / "tables/weights/quick/pretrain"
    assert sorted(p.name for p in start.iterdir()) == ["seed0"]  # one pretrained network
    backbone, _ = run_backbone(start / "seed0")
    for seed in (0, 1):
        run = runs / f"tables/weights/quick/probe/seed{seed}"
        assert f"weights: {start / 'seed0'}" in (run / "config.yaml").read_text()
        state = torch.load(run / "checkpoints/last.pt", weights_only=False)["model"]
        for k, v in backbone.state_dict().items():  # frozen: the pretrained tensors, unchanged
            assert torch.equal(state[f"feature_extractor.{k}"], v), k
    path.write_text(WEIGHTS_TABLE.format(repo=REPO, pre=pre, tgt=tgt).replace("weights_from: pretrain",
                                                                              "weights_from: probe"))
    assert main(["reproduce", str(path), "--profile", "quick", "--runs", str(runs)]) == 2


def test_gap_closed_uses_each_rows_own_baseline_and_oracle_and_the_spread_rule():
    from da.table_report import gap_closed

    def row(name, role, mean, std=0.01, **kw):
        return {"name": name, "role": role, "metrics": {"m": {"mean": mean, "std": std}}, **kw}

    rows = [row("a_so", "source_only", 0.30), row("a_or", "oracle", 0.70),
            row("b_so", "source_only", 0.50, std=0.05), row("b_or", "oracle", 0.60),
            row("a_ad", "adapted", 0.50, baseline="a_so", oracle="a_or"),
            row("b_ad", "adapted", 0.55, baseline="b_so", oracle="b_or")]
    gap_closed(rows, "m")
    assert rows[4]["gap_closed"] == pytest.approx(0.5) and rows[4]["gap_spread_ratio"] == pytest.approx(40)
    assert rows[5]["gap_closed"] == pytest.approx(0.5) and rows[5]["gap_spread_ratio"] == pytest.approx(2)


def test_rows_from_target_calibrated_simulation_are_marked():
    from da.config import load_config
    from da.reproduce import target_calibrated
    from da.table_report import to_markdown

    base = [REPO / "experiments/configs/rebar3d.yaml"]
    assert target_calibrated(load_config(base, ["data.simulated_source=typical"]))
    assert target_calibrated(load_config(base, ["data.simulated_source=harsh"]))
    assert not target_calibrated(load_config(base, ["data.simulated_source=randomised"]))
    assert not target_calibrated(load_config(base, []))
    assert not target_calibrated(load_config([REPO / "experiments/configs/moons.yaml"], []))
    metric = {"mean": 0.5, "std": 0.0, "values": [0.5]}
    rows = [{"name": n, "algorithm": "source_only", "role": "", "seeds": [0], "run_commits": [],
             "metrics": {"target_miou": metric}, "target_calibrated": n == "sim"} for n in ("plain", "sim")]
    md = to_markdown({"table": "t", "profile": "p", "command": "c", "git_commit": "g", "machine": "m",
                      "seeds": [0], "rows": rows, "primary_metric": "target_miou"}, ["target_miou"])
    assert "| sim (target-calibrated) |" in md and "| plain |" in md and "FITTED to the target" in md


def test_validator_rank_correlation_reads_every_run_and_its_sign():
    from da.table_report import score_target_rank_correlation

    def report(scores, target):
        # two grid points x 3 seeds, values listed per seed as the selection report stores them
        return {"grid": [{"scores": {"v": {"values": scores[:3]}}, "target": {"values": target[:3]}},
                         {"scores": {"v": {"values": scores[3:]}}, "target": {"values": target[3:]}}]}

    target = [0.60, 0.62, 0.61, 0.80, 0.85, 0.83]
    assert score_target_rank_correlation(report([1, 3, 2, 4, 6, 5], target), "v") == pytest.approx(1.0)
    assert score_target_rank_correlation(report([6, 4, 5, 3, 1, 2], target), "v") == pytest.approx(-1.0)
    # ties share their mean rank: the same as scipy's Spearman coefficient
    from scipy.stats import spearmanr
    tied = [1, 1, 2, 3, 3, 0]
    assert score_target_rank_correlation(report(tied, target), "v") == pytest.approx(
        spearmanr(tied, target).statistic)
    assert score_target_rank_correlation(report([2] * 6, target), "v") is None
