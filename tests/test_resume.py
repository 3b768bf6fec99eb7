"""Stop a run mid-epoch (shuffling, augmentation and dropout on), re-run: identical logs."""

import json

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from da.config import load_config
from da.train import train
from tests.conftest import moons_configs

SETTINGS = ["train.steps=120", "train.eval_every=20", "train.checkpoint_every=40", "train.log_every=10",
            "train.batch_size=32", "data.augment=true", "algorithm.disc_hidden=[8]",
            "algorithm.disc_dropout=0.5", "algorithm.lambda_schedule=dann", "optim.schedule=dann"]


def scalars(run_dir):
    acc = EventAccumulator(str(run_dir / "tb"))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_killed_run_resumes_exactly(tmp_path, moons_overrides):
    def cfg(name):
        return load_config(moons_configs(dann=True), moons_overrides + SETTINGS + [f"run_dir={tmp_path / name}"])

    full = train(cfg("full"))
    part_cfg = cfg("part")
    # 300 source points / 32 = 9 batches per epoch: checkpoint at step 40 is mid-epoch;
    # the "kill" after 70 steps loses steps 41-70 and an evaluation at step 60.
    part = train(part_cfg, stop_after=70)
    assert not (part / "done").exists()
    assert json.loads((part / "results.jsonl").read_text().splitlines()[-1])["step"] == 60
    part = train(part_cfg)  # the same command again
    assert (part / "done").exists()

    full_lines = (full / "results.jsonl").read_text().splitlines()
    assert len(full_lines) == 6
    assert (part / "results.jsonl").read_text().splitlines() == full_lines
    a = torch.load(full / "checkpoints/last.pt", weights_only=False)["model"]
    b = torch.load(part / "checkpoints/last.pt", weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    sa, sb = scalars(full), scalars(part)
    assert {"train/task", "train/domain", "train/domain_acc", "train/lambda", "train/lr",
            "val/target_acc", "val/source_val_acc", "val/pad"} <= set(sa)
    assert sa == sb


def test_finished_run_is_not_retrained(tmp_path, moons_overrides, capsys):
    cfg = load_config(moons_configs(dann=False), moons_overrides + ["train.steps=20", "train.eval_every=10",
                                                                    f"run_dir={tmp_path / 'r'}"])
    run = train(cfg)
    before = (run / "results.jsonl").read_text()
    train(cfg)
    assert "already done" in capsys.readouterr().out
    assert (run / "results.jsonl").read_text() == before


def test_changed_config_in_same_folder_is_refused(tmp_path, moons_overrides):
    import pytest

    from da.config import ConfigError

    base = moons_overrides + ["train.steps=10", f"run_dir={tmp_path / 'r'}"]
    train(load_config(moons_configs(dann=False), base), stop_after=5)
    with pytest.raises(ConfigError, match="different config"):
        train(load_config(moons_configs(dann=False), base + ["optim.lr=0.3"]))
    train(load_config(moons_configs(dann=False), base))  # finishes
    with pytest.raises(ConfigError, match="different config"):  # even once done
        train(load_config(moons_configs(dann=False), base + ["optim.lr=0.3"]))
    # runtime-only keys may differ
    train(load_config(moons_configs(dann=False), base + ["device=cpu", "train.progress_bar=true"]))


def test_run_killed_before_its_first_checkpoint_starts_clean(tmp_path, moons_overrides):
    def cfg(name):
        return load_config(moons_configs(dann=True), moons_overrides + SETTINGS + [f"run_dir={tmp_path / name}"])

    full = train(cfg("full"))
    part_cfg = cfg("part")
    train(part_cfg, stop_after=30)  # evaluated at step 20, no checkpoint yet (first at 40)
    assert not (tmp_path / "part/checkpoints/last.pt").exists()
    part = train(part_cfg)
    assert (part / "results.jsonl").read_text() == (full / "results.jsonl").read_text()
    assert scalars(part) == scalars(full)  # the killed attempt's events are gone


def test_bad_value_fails_before_any_folder_is_written(tmp_path, moons_overrides):
    import pytest

    from da.config import ConfigError

    run = tmp_path / "r"
    with pytest.raises(ConfigError, match="bn_mode must be joint or separate"):
        train(load_config(moons_configs(dann=True), moons_overrides + ["algorithm.bn_mode=foo", f"run_dir={run}"]))
    assert not run.exists()


def test_a_run_saved_before_a_new_config_key_still_resumes(tmp_path, data_root):
    from da.config import ConfigError, load_config
    from da.run_folder import check_run_dir
    from da.train import train

    cfg = load_config(["experiments/configs/moons.yaml"],
                      [f"data.root={data_root}", "train.steps=4", "train.eval_every=4",
                       "train.progress_bar=false", "train.embedding_samples=0", f"run_dir={tmp_path / 'r'}"])
    run_dir = train(cfg)
    saved = run_dir / "config.yaml"
    # as written by code that did not know train.init_from yet
    saved.write_text(saved.read_text().replace("  init_from: ''\n", ""))
    assert "init_from" not in saved.read_text()
    check_run_dir(run_dir, cfg)  # the key at its default: the same run
    with pytest.raises(ConfigError, match="different config"):
        check_run_dir(run_dir, load_config(["experiments/configs/moons.yaml"],
                                           [f"data.root={data_root}", "train.steps=5",
                                            f"run_dir={tmp_path / 'r'}"]))
    saved.write_text(saved.read_text().replace("train:\n", "train:\n  retired_key: 1\n"))
    with pytest.raises(ConfigError, match="no longer loads"):
        check_run_dir(run_dir, cfg)
