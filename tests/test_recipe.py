"""Training-recipe options: soft Dice, label smoothing, AdamW, the cosine schedule."""

from __future__ import annotations

import math

import pytest
import torch

from da.algorithms.base import soft_dice_loss
from da.config import ConfigError, load_config
from da.grl import cosine_schedule
from da.runs import build_run
from tests.conftest import moons_configs


def test_soft_dice_is_zero_when_right_and_counts_rare_classes_equally():
    labels = torch.tensor([[0, 0, 0, 0, 0, 0, 0, 2, 255]])  # class 2 rare, 1 absent
    right = torch.full((1, 3, 9), -20.0)
    right[0, labels[0].clamp_max(2), torch.arange(9)] = 20.0
    assert soft_dice_loss(right, labels) < 1e-3
    # missing the one rare point costs ~0.28 (its class's Dice drops to 0.5 with the +1
    # smoothing), where cross-entropy would average it with 7 right points
    miss = right.clone()
    miss[0, :, 7] = torch.tensor([20.0, -20.0, -20.0])
    assert soft_dice_loss(miss, labels) > 0.25
    # the ignored point never counts, whatever is predicted there
    other = right.clone()
    other[0, :, 8] = torch.tensor([-20.0, 20.0, -20.0])
    assert float(soft_dice_loss(other, labels)) == pytest.approx(float(soft_dice_loss(right, labels)), abs=1e-6)


def test_cosine_schedule_endpoints():
    assert cosine_schedule(0.0) == 1.0 and cosine_schedule(1.0) == pytest.approx(0.0)
    assert cosine_schedule(0.5) == pytest.approx(0.5)
    assert cosine_schedule(2.0) == pytest.approx(0.0)  # never negative past the end


def test_adamw_cosine_and_losses_build_and_bad_values_are_refused(tmp_path):
    cfg = load_config(moons_configs(dann=False), ["optim.name=adamw", "optim.schedule=cosine",
                                        "optim.weight_decay=0.01", "algorithm.label_smoothing=0.1",
                                        "algorithm.dice_weight=0.5", f"run_dir={tmp_path}"])
    run = build_run(cfg, torch.device("cpu"))
    assert isinstance(run.optimizer, torch.optim.AdamW)
    run.optimizer.step()  # (no gradients: a no-op, but the order the scheduler expects)
    run.scheduler.step()
    assert run.scheduler.get_last_lr()[1] == pytest.approx(
        cfg.optim.lr * 0.5 * (1 + math.cos(math.pi / cfg.train.steps)))
    logits, labels = torch.randn(8, 2), torch.randint(0, 2, (8,))
    plain = torch.nn.functional.cross_entropy(logits, labels, label_smoothing=0.1)
    assert float(run.algorithm.task_loss(logits, labels)) == pytest.approx(
        float(plain + 0.5 * soft_dice_loss(logits, labels)), rel=1e-5)
    for bad in ("algorithm.label_smoothing=1.0", "algorithm.dice_weight=-1", "optim.name=lion"):
        with pytest.raises(ConfigError):
            load_config(moons_configs(dann=False), [bad])
