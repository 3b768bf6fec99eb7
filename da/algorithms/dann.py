"""Domain-adversarial training of neural networks (Ganin et al., JMLR 2016).

lambda_p scales only the reversed gradient that reaches the feature extractor; the
domain classifier itself always learns at full strength (its loss weight is
domain_weight, 1 by default).

BatchNorm: with bn_mode="joint" (default) source and target go through the feature
extractor in ONE concatenated pass (as Transfer-Learning-Library does): batch and running
statistics describe the two-domain mixture. With bn_mode="separate" they go through in
two passes, so each domain is normalised with its own batch statistics during training
(as Dassl does) and the running statistics average both domains. The default was
"separate" until 2026-12-01, chosen by reading target-test accuracy; it is now the
choice of reverse validation, which picked joint (lambda ceiling 0.3) on all 5 seeds of
the digits table's grid (experiments/results/digits/digits.standard.md). Target labels would
have preferred separate (0.597 vs 0.555 at lambda 0.3): the validator is not perfect,
and the table says so. For networks without BatchNorm the two modes compute the same
thing (joint is one pass cheaper).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from da.algorithms.base import ALGORITHMS, Algorithm, concat_batches
from da.config_schema import AlgorithmConfig
from da.domain_loss import DomainAdversarialLoss, sample_rows
from da.grl import LAMBDA_SCHEDULES
from da.models.domain import DomainClassifier
from da.registry import register


@dataclass
class DannConfig(AlgorithmConfig):
    name: str = "dann"
    lambda_schedule: str = "dann"  # dann: 2/(1+exp(-gamma p))-1 | constant
    lambda_max: float = 1.0  # multiplies the schedule (the moons toy uses a constant 6)
    gamma: float = 10.0
    disc_hidden: list[int] = field(default_factory=lambda: [1024, 1024])
    disc_dropout: float = 0.0
    # Zero weights and biases (only sensible without hidden layers: a hidden layer at zero
    # never breaks symmetry); the authors' shallow DANN starts its regressor there.
    disc_zero_init: bool = False
    bn_mode: str = "joint"  # joint | separate (see module docstring: chosen by reverse validation)
    # Weight of the domain loss for BOTH the classifier and (times lambda) the features.
    # 1 = the deep DANN of the paper; the shallow DANN of its Algorithm 1 (two moons)
    # scales both by lambda and SUMS the source and target terms, which our averaged loss
    # matches with domain_weight = 2 * lambda and lambda_max = 1 (moons_paper_dann.yaml).
    domain_weight: float = 1.0
    target_entropy: float = 0.0  # weight of mean prediction entropy on target (DANN+E); 0 = paper
    # Which features the domain classifier sees, for dense tasks (per pixel / per point):
    # dense = every row of (B, C, *) flattened to (M, C) (point-wise / pixel-wise);
    # global = one pooled vector per sample; both = two classifiers, losses summed.
    # For per-sample features (B, C) all three reduce to the paper's DANN.
    domain_level: str = "dense"
    global_pool: str = "max"  # max | mean, over points / pixels for the global level
    # Rows per domain fed to the dense classifier each step (random subset; 0 = all):
    # 8 blocks x 1024 points would be 8k rows per domain through the classifier's MLP.
    domain_rows: int = 0

    def validate(self) -> None:
        if self.lambda_schedule not in LAMBDA_SCHEDULES:
            raise ValueError(f"lambda_schedule must be one of {sorted(LAMBDA_SCHEDULES)}, "
                             f"got '{self.lambda_schedule}'")
        if self.domain_level not in ("dense", "global", "both"):
            raise ValueError(f"domain_level must be dense, global or both, got '{self.domain_level}'")
        if self.global_pool not in ("max", "mean"):
            raise ValueError(f"global_pool must be max or mean, got '{self.global_pool}'")
        if self.disc_zero_init and self.disc_hidden:
            raise ValueError("disc_zero_init needs disc_hidden: [] (hidden units at zero never break symmetry)")
        if self.bn_mode not in ("joint", "separate"):
            raise ValueError(f"bn_mode must be joint or separate, got '{self.bn_mode}'")


@register(ALGORITHMS, "dann", DannConfig)
class DANN(Algorithm):
    uses_target = True

    def __init__(self, feature_extractor, task_head, cfg: DannConfig):
        super().__init__(feature_extractor, task_head, cfg)
        cfg.validate()
        def adversary() -> DomainAdversarialLoss:
            return DomainAdversarialLoss(DomainClassifier(feature_extractor.num_features,
                                                          list(cfg.disc_hidden), cfg.disc_dropout,
                                                          cfg.disc_zero_init))

        # `domain_loss` keeps its name (dense level) so older checkpoints still load.
        self.domain_loss = adversary() if cfg.domain_level in ("dense", "both") else None
        self.global_domain_loss = adversary() if cfg.domain_level in ("global", "both") else None

    def adaptation_factor(self, progress: float) -> float:
        return self.cfg.lambda_max * LAMBDA_SCHEDULES[self.cfg.lambda_schedule](progress, gamma=self.cfg.gamma)

    def _features(self, source, target):
        if self.cfg.bn_mode == "separate":
            return self.features(source), self.features(target)
        both = self.features(concat_batches(source, target))
        n = next(iter(source.values())).shape[0]
        return both[:n], both[n:]

    def _rows(self, f: torch.Tensor) -> torch.Tensor:
        return sample_rows(f, self.cfg.domain_rows)

    def _pooled(self, f: torch.Tensor) -> torch.Tensor:
        if f.dim() == 2:
            return f
        flat = f.flatten(2)
        return flat.amax(dim=2) if self.cfg.global_pool == "max" else flat.mean(dim=2)

    def losses(self, source, target, progress):
        f_s, f_t = self._features(source, target)
        task = self.task_loss(self.task_head(f_s), source["label"])
        lam = self.adaptation_factor(progress)
        out = {"task": task, "lambda": torch.tensor(lam)}
        domain = torch.zeros((), device=task.device)
        if self.domain_loss is not None:
            loss, acc = self.domain_loss(self._rows(f_s), self._rows(f_t), lam)
            domain = domain + loss
            out.update(domain_dense=loss, domain_acc=acc)
        if self.global_domain_loss is not None:
            loss, acc = self.global_domain_loss(self._pooled(f_s), self._pooled(f_t), lam)
            domain = domain + loss
            out.update(domain_global=loss, domain_acc_global=acc)
            out.setdefault("domain_acc", acc)
        out["domain"] = domain
        total = task + self.cfg.domain_weight * domain
        if self.cfg.target_entropy > 0:
            p = self.task_head(f_t).float().softmax(dim=1)
            entropy = -(p * p.clamp_min(1e-8).log()).sum(dim=1).mean()
            out["entropy"] = entropy
            total = total + self.cfg.target_entropy * entropy
        out["total"] = total
        return out
