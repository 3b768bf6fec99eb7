"""Label-shift correction by EM (da/algorithms/prior_em.py) on a problem with a known answer.

Two 1-D Gaussian classes N(-1, 1) and N(+1, 1). With equal priors the exact posterior is
softmax(-x, x), which a linear head can hold exactly; the target draws the classes 20 / 80.
The EM estimate of the target prior is then the only unknown."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from da.algorithms.prior_em import PriorEM, PriorEMConfig, em_target_prior, output_classes


class Features(nn.Module):
    """x -> BatchNorm (identity at its initial statistics, in eval) -> x."""

    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm1d(1)
        self.num_features = 1

    def forward(self, batch):
        return self.bn(batch["x"])


def bayes_model() -> tuple[nn.Module, nn.Linear]:
    head = nn.Linear(1, 2)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[-1.0], [1.0]]))
        head.bias.zero_()
    return Features(), head


def draw(n: int, p1: float, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    y = (torch.rand(n, generator=g) < p1).long()
    x = (2.0 * y - 1.0) + torch.randn(n, generator=g)
    return x[:, None], y


def test_em_recovers_the_target_prior_from_exact_posteriors():
    g = torch.Generator().manual_seed(0)
    x, _ = draw(20000, 0.8, g)
    posteriors = torch.cat([-x, x], dim=1).softmax(1)
    prior = em_target_prior(posteriors, torch.tensor([0.5, 0.5]))
    # sampling error of 20 000 draws ~0.005; the margin is 6x that
    assert abs(float(prior[1]) - 0.8) < 0.03
    # no shift, no change: a 50 / 50 target gives back ~50 / 50
    x0, _ = draw(20000, 0.5, g)
    same = em_target_prior(torch.cat([-x0, x0], dim=1).softmax(1), torch.tensor([0.5, 0.5]))
    assert abs(float(same[1]) - 0.5) < 0.03


def test_prior_em_estimates_the_shift_and_improves_target_accuracy_without_changing_weights():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    fe, head = bayes_model()
    algo = PriorEM(fe, head, PriorEMConfig(samples_per_batch=512, capacity=4096))
    before = {k: v.clone() for k, v in algo.state_dict().items() if k.startswith(("feature_extractor", "task_head"))}
    algo.train()
    assert not algo.training and not algo.feature_extractor.bn.training  # always eval
    steps = 20
    for step in range(steps):
        xs, _ = draw(512, 0.5, g)
        xt, _ = draw(512, 0.8, g)
        out = algo.losses({"x": xs}, {"x": xt}, step / steps)
    source, target = algo.priors()
    assert abs(float(source[1]) - 0.5) < 0.03 and abs(float(target[1]) - 0.8) < 0.04
    assert abs(float(out["prior_target_1"]) - float(target[1])) < 1e-6
    after = algo.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())  # weights and BN statistics kept

    xt, yt = draw(20000, 0.8, g)
    adjusted = (algo.predict({"x": xt}).argmax(1) == yt).float().mean()
    plain = (head(fe({"x": xt})).argmax(1) == yt).float().mean()
    # Bayes accuracies: 0.841 with the source prior, 0.888 with the target's; std ~0.003
    assert adjusted > plain + 0.02

    # a resumed copy (state dict round trip) predicts the same
    fe2, head2 = bayes_model()
    copy = PriorEM(fe2, head2, PriorEMConfig(samples_per_batch=512, capacity=4096))
    copy.load_state_dict(algo.state_dict())
    assert torch.allclose(copy.predict({"x": xt}), algo.predict({"x": xt}))
    assert int(copy.filled) == 4096  # 20 x 512 draws into 4096 slots: full, replaced at random


def test_prior_em_on_dense_logits_and_bad_settings():
    torch.manual_seed(0)
    head = nn.Conv2d(4, 3, 1)
    with torch.no_grad():  # logit c = channel c
        head.weight.copy_(torch.eye(3, 4).view(3, 4, 1, 1))
        head.bias.zero_()
    assert output_classes(nn.Sequential(nn.Conv2d(8, 4, 3), nn.ReLU(), head)) == 3

    class Dense(nn.Module):
        num_features = 4

        def forward(self, batch):
            return batch["image"]

    algo = PriorEM(Dense(), head, PriorEMConfig(samples_per_batch=128, capacity=256))
    x = {"image": torch.randn(2, 4, 8, 8)}
    algo.losses(x, x, 0.0)
    assert algo.predict(x).shape == (2, 3, 8, 8) and int(algo.filled) == 128
    # the same 128 pixels on both sides: the source prior is EM's fixed point, no shift
    assert algo.log_prior_ratio.abs().max() < 1e-3
    y = {"image": torch.randn(2, 4, 8, 8) + torch.tensor([0.0, 3.0, 0.0, 0.0]).view(1, 4, 1, 1)}
    algo.losses(x, y, 0.5)  # half the reservoir now leans to class 1: its prior ~1/3 -> ~0.6
    assert algo.log_prior_ratio[1] > 0.3 and algo.log_prior_ratio[0] < 0 and algo.log_prior_ratio[2] < 0
    with pytest.raises(ValueError, match="samples_per_batch"):
        PriorEM(Dense(), head, PriorEMConfig(samples_per_batch=512, capacity=256))
    with pytest.raises(ValueError, match="number of classes"):
        PriorEM(Dense(), nn.ReLU(), PriorEMConfig())


def test_calibration_undoes_a_miscalibrated_head_before_em():
    """Logits 3x too sharp and +1 on class 1 (as class weights / Dice skew a model): BCTS on
    the labeled source batches recovers T = 3, p_s from the labels, and the target prior."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(2)
    fe, head = bayes_model()
    with torch.no_grad():
        head.weight.mul_(3.0)
        head.bias.copy_(torch.tensor([0.0, 1.0]))
    algo = PriorEM(fe, head, PriorEMConfig(samples_per_batch=512, capacity=8192, calibrate=True))
    for step in range(16):
        xs, ys = draw(512, 0.5, g)
        xt, _ = draw(512, 0.8, g)
        out = algo.losses({"x": xs, "label": ys}, {"x": xt}, step / 16)
    assert 2.5 < float(out["temperature"]) < 3.5
    assert abs(float(algo.priors()[0][1]) - 0.5) < 0.03  # label frequency of the source batches
    assert abs(float(algo.priors()[1][1]) - 0.8) < 0.04  # sampling error ~0.01
    xt, yt = draw(20000, 0.8, g)
    # calibrated + re-weighted: the target's Bayes rule, accuracy ~0.888 (std ~0.003)
    assert float((algo.predict({"x": xt}).argmax(1) == yt).float().mean()) > 0.87


def test_evaluation_scores_the_corrected_outputs():
    """The classification task's evaluation (the trainer's, for per-sample tasks) goes
    through Algorithm.head, so the confusion matrix counts the re-weighted predictions."""
    from da.tasks import TASKS

    class Samples:
        def __init__(self, x, y):
            self.x, self.y = x, y

        def __len__(self):
            return len(self.x)

        def __getitems__(self, keys):
            idx = [i for i, _ in keys]
            return {"x": self.x[idx], "label": self.y[idx]}

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(3)
    fe, head = bayes_model()
    algo = PriorEM(fe, head, PriorEMConfig(samples_per_batch=512, capacity=4096))
    for step in range(8):
        algo.losses({"x": draw(512, 0.5, g)[0]}, {"x": draw(512, 0.8, g)[0]}, step / 8)
    xt, yt = draw(4000, 0.8, g)
    cm = TASKS["classification"].evaluate(algo, Samples(xt, yt), torch.device("cpu"), batch_size=1000).confusion
    corrected = algo.predict({"x": xt}).argmax(1)
    plain = head(fe({"x": xt})).argmax(1)
    assert int(cm[:, 1].sum()) == int((corrected == 1).sum())
    assert int((corrected == 1).sum()) - int((plain == 1).sum()) > 100  # the bias moved >= 100 of 4000
