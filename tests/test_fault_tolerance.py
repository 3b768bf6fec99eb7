"""Runs survive signals, non-finite losses and checkpoints that do not fit (issue 14)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from da import checkpoint
from da.config import load_config
from da.train import NonFiniteLossError, train
from tests.conftest import REPO, moons_configs

SETTINGS = ["train.eval_every=20", "train.checkpoint_every=20", "train.log_every=10",
            "train.batch_size=32", "train.embedding_samples=0", "device=cpu"]


def cfg_for(run_dir, moons_overrides, *extra):
    return load_config(moons_configs(dann=True),
                       moons_overrides + SETTINGS + ["train.steps=60", f"run_dir={run_dir}", *extra])


def cli(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "da", "train", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_sigterm_finishes_the_step_checkpoints_and_the_rerun_ends_like_an_uninterrupted_run(
        tmp_path, data_root):
    # Checkpoints only every 10,000 steps: the checkpoint found after the signal can only
    # come from the signal handling.
    args = [str(REPO / "experiments/configs/moons.yaml"), str(REPO / "experiments/configs/moons_dann.yaml"),
            f"data.root={data_root}", "train.progress_bar=false", "train.embedding_samples=0",
            "train.steps=3000", "train.eval_every=500", "train.checkpoint_every=10000",
            "train.log_every=100", "device=cpu"]
    full = cli(args + [f"run_dir={tmp_path / 'full'}"])
    part = cli(args + [f"run_dir={tmp_path / 'part'}"])
    results = tmp_path / "part" / "results.jsonl"
    deadline = time.time() + 120
    while not results.exists() and time.time() < deadline and part.poll() is None:
        time.sleep(0.05)  # the first evaluation (step 500) is logged: training is under way
    part.send_signal(signal.SIGTERM)
    out = part.communicate(timeout=120)[0]
    assert full.wait(timeout=300) == 0
    if part.returncode == 0:
        pytest.skip("the run finished before the signal arrived (a very fast machine)")
    assert part.returncode == 128 + signal.SIGTERM, out
    assert "SIGTERM received" in out and "run the same command again" in out
    saved = torch.load(tmp_path / "part/checkpoints/last.pt", weights_only=False)
    assert 500 <= saved["step"] < 3000  # a step count no periodic checkpoint writes
    assert not (tmp_path / "part" / "done").exists()

    rerun = cli(args + [f"run_dir={tmp_path / 'part'}"])
    out = rerun.communicate(timeout=300)[0]
    assert rerun.returncode == 0, out
    assert f"resuming from {tmp_path / 'part/checkpoints/last.pt'} at step {saved['step']}" in out
    a = (tmp_path / "full" / "results.jsonl").read_text().splitlines()
    b = (tmp_path / "part" / "results.jsonl").read_text().splitlines()
    assert len(a) == 6 and a == b  # every evaluation identical, none lost or repeated
    ma = torch.load(tmp_path / "full/checkpoints/last.pt", weights_only=False)["model"]
    mb = torch.load(tmp_path / "part/checkpoints/last.pt", weights_only=False)["model"]
    assert all(torch.equal(ma[k], mb[k]) for k in ma)


def test_a_non_finite_loss_stops_the_run_naming_step_and_term(tmp_path, moons_overrides, monkeypatch):
    from da.algorithms.dann import DANN

    plain = DANN.losses
    calls = {"n": 0}

    def poisoned(self, source, target, progress):
        out = plain(self, source, target, progress)
        calls["n"] += 1
        if calls["n"] >= 27:  # from step 27 on the domain term is NaN
            out["domain"] = out["domain"] * float("nan")
            out["total"] = out["task"] + out["domain"]
        return out

    monkeypatch.setattr(DANN, "losses", poisoned)
    run = tmp_path / "r"
    with pytest.raises(NonFiniteLossError) as err:
        train(cfg_for(run, moons_overrides))
    msg = str(err.value)
    assert "step 27" in msg and "term 'domain'" in msg and "total@27" in msg and str(run) in msg
    kept = torch.load(run / "checkpoints/last.pt", weights_only=False)
    assert kept["step"] == 20  # the checkpoint due at step 40 was never written
    assert all(torch.isfinite(v).all() for v in kept["model"].values())
    assert not (run / "done").exists()
    assert [json.loads(x)["step"] for x in (run / "results.jsonl").read_text().splitlines()] == [20]


def test_a_checkpoint_that_does_not_fit_is_a_clear_error(tmp_path, moons_overrides):
    run = tmp_path / "r"
    train(cfg_for(run, moons_overrides), stop_after=25)  # checkpoint at step 20
    last = run / "checkpoints" / "last.pt"
    good = torch.load(last, weights_only=False)

    bad = dict(good, model={k: v for k, v in good["model"].items() if "domain" not in k})
    torch.save(bad, last)
    with pytest.raises(checkpoint.CheckpointError, match=f"{last}: its model does not fit this run"):
        train(cfg_for(run, moons_overrides))

    shape = dict(good, model={k: (v[:1] if v.dim() else v) for k, v in good["model"].items()})
    torch.save(shape, last)
    with pytest.raises(checkpoint.CheckpointError, match="other shapes"):
        train(cfg_for(run, moons_overrides))

    torch.save({k: v for k, v in good.items() if k != "optimizer"}, last)
    with pytest.raises(checkpoint.CheckpointError, match="lacks optimizer"):
        train(cfg_for(run, moons_overrides))

    last.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(checkpoint.CheckpointError, match="cannot read checkpoint"):
        train(cfg_for(run, moons_overrides))

    # A checkpoint copied in from a run with another config.
    other = tmp_path / "other"
    train(cfg_for(other, moons_overrides, "optim.lr=0.05"), stop_after=25)
    last.write_bytes((other / "checkpoints" / "last.pt").read_bytes())
    with pytest.raises(checkpoint.CheckpointError, match="another config .*optim.lr"):
        train(cfg_for(run, moons_overrides))
    assert not (run / "done").exists()  # nothing was loaded partially and trained on

    torch.save(good, last)  # the right one again: resumes and finishes
    assert (train(cfg_for(run, moons_overrides)) / "done").exists()


def test_a_checkpoint_from_another_commit_resumes_with_a_recorded_warning(tmp_path, moons_overrides):
    run = tmp_path / "r"
    train(cfg_for(run, moons_overrides), stop_after=25)
    last = run / "checkpoints" / "last.pt"
    ckpt = torch.load(last, weights_only=False)
    assert len(ckpt["git_commit"]) in (40, 7)  # a full hash ("unknown" has 7 letters)
    ckpt["git_commit"] = "0123456789abcdef" * 2 + "01234567"
    torch.save(ckpt, last)
    train(cfg_for(run, moons_overrides))
    assert (run / "done").exists()
    warning = (run / "warnings.txt").read_text()
    assert "written by commit 0123456789ab" in warning and "resumed by" in warning
