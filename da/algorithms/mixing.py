"""CoSMix: compositional semantic mix for point-cloud adaptation (Saltori et al., ECCV 2022).

Self-training (da/algorithms/self_training.py: mean teacher, class-balanced confident
pseudo-labels) where the pseudo-labelled target is learnt in MIXED blocks. Every step
builds two mixed batches, pairing source block i with target block i, by moving whole
classes' points across the domains:

- target <- source: the target block (teacher pseudo-labels) plus the points of a random
  subset of the classes present in the source block (each chosen with probability
  `class_fraction`), with their true labels;
- source <- target: the source block (true labels) plus the confident points of a random
  subset of the target block's pseudo-labelled classes, with their pseudo-labels.

The student thus sees known-labelled source bars inside target clutter and target bars
inside clean source context, which is what closes the gap in the paper beyond plain
pseudo-labelling.

Mixing is point SELECTION: a point keeps its own coord / feat / grid and takes its label
with it, so no per-point tensor can disagree with another. Both domains' blocks share one
frame (column-centred x, y; absolute z: da/data/blocks.py), so pasted bars land where bars
stand in the other domain. A mixed block has the base block's N points: N drawn without
replacement from the base block's points and the pasted ones (the base alone has N, so no
padding is ever needed; short columns are padded by the loader already). The draws come
from a generator seeded by a seed and a step counter kept in the state dict, so a resumed
run mixes exactly as an uninterrupted one, and switching DANN or dropout on does not
change the mixes.

Loss: task(source) + weight(p) * [CE(target <- source) + CE(source <- target)], points
without a confident label ignored; weight ramps 0 -> `mix_weight` over the first `ramp` of
training. Unlike the paper (the two mixes alone), the clean source loss stays, as in
self_training, so the two rows differ by the mixing only.

Optional point-wise DANN (`dann_weight` > 0): DANN's dense level on the UNMIXED source and
target features (a domain classifier behind the gradient reversal layer, DANN's lambda
schedule, `domain_rows` rows per domain), each domain in its own pass as DANN's
bn_mode=separate, which the 3D DANN runs use.

Per-sample tasks (labels (B,): moons, digits) mix too: the whole batch is one block and its
samples are its points, i.e. whole samples of chosen classes cross the domains. Image
segmentation (labels (B, H, W)) is refused: a pixel cannot leave its place, it needs a
pasting mix (ClassMix / DACS) rather than point selection.

Left out: the paper's local augmentation of the pasted points (rotation, scaling); it would
have to recompute the voxel grid and turn the shape features' directions, which the data
layer owns (da.data.blocks.augment_block).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from da.algorithms.base import ALGORITHMS, IGNORE_INDEX
from da.algorithms.self_training import SelfTraining, pseudo_labels
from da.config_schema import AlgorithmConfig
from da.domain_loss import DomainAdversarialLoss, sample_rows
from da.grl import LAMBDA_SCHEDULES
from da.models.domain import DomainClassifier
from da.registry import register

Batch = dict[str, torch.Tensor]


@dataclass
class CosMixConfig(AlgorithmConfig):
    name: str = "cosmix"
    mix_weight: float = 1.0  # weight of the two mixed-block losses (each), after the ramp
    class_fraction: float = 0.5  # chance that a class present in a block is pasted (the paper's 50%)
    keep_fraction: float = 0.5  # pseudo-labels: per predicted class, the most confident share kept
    min_confidence: float = 0.5
    ema: float = 0.99  # teacher <- ema * teacher + (1 - ema) * student, every step
    ramp: float = 0.1  # share of training over which the mix weight rises to its value
    # Point-wise DANN on the unmixed features; 0 = off (the keys below are then unused).
    dann_weight: float = 0.0
    lambda_schedule: str = "dann"  # as DannConfig: dann 2/(1+exp(-gamma p))-1 | constant
    lambda_max: float = 1.0
    gamma: float = 10.0
    disc_hidden: list[int] = field(default_factory=lambda: [1024, 1024])
    disc_dropout: float = 0.0
    domain_rows: int = 0  # point rows per domain fed to the domain classifier (0 = all)

    def validate(self) -> None:
        if not 0 < self.keep_fraction <= 1 or not 0 <= self.min_confidence < 1:
            raise ValueError("need 0 < keep_fraction <= 1 and 0 <= min_confidence < 1")
        if not 0 <= self.ema < 1 or not 0 <= self.ramp <= 1 or self.mix_weight < 0:
            raise ValueError("need 0 <= ema < 1, 0 <= ramp <= 1 and mix_weight >= 0")
        if not 0 <= self.class_fraction <= 1 or self.dann_weight < 0 or self.domain_rows < 0:
            raise ValueError("need 0 <= class_fraction <= 1, dann_weight >= 0 and domain_rows >= 0")
        if self.lambda_schedule not in LAMBDA_SCHEDULES:
            raise ValueError(f"lambda_schedule must be one of {sorted(LAMBDA_SCHEDULES)}, "
                             f"got '{self.lambda_schedule}'")


def present_classes(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(B, N) labels -> (B, K) bool: which classes each block holds (IGNORE_INDEX is none)."""
    ok = labels != IGNORE_INDEX
    hit = torch.zeros(labels.shape[0], num_classes + 1, dtype=torch.bool, device=labels.device)
    hit.scatter_(1, labels.masked_fill(~ok, num_classes), True)  # column K: the ignored ones
    return hit[:, :num_classes]


def choose_classes(labels: torch.Tensor, num_classes: int, fraction: float,
                   generator: torch.Generator) -> torch.Tensor:
    """(B, K) bool: each class present in a block, independently with chance `fraction`."""
    draw = torch.rand(labels.shape[0], num_classes, generator=generator) < fraction
    return present_classes(labels, num_classes) & draw.to(labels.device)


def mix_blocks(base: Batch, base_labels: torch.Tensor, other: Batch, other_labels: torch.Tensor,
               chosen: torch.Tensor, generator: torch.Generator) -> tuple[Batch, torch.Tensor, torch.Tensor]:
    """Block i of `base` plus the points of block i of `other` whose label is chosen in
    chosen[i]; N_base of that union drawn without replacement, every point with its own
    inputs and label. Returns (inputs, labels (B, N), pasted (B, N) bool)."""
    keys = sorted(k for k in base if k != "label")
    if keys != sorted(k for k in other if k != "label"):
        raise ValueError(f"cannot mix batches with inputs {keys} and {sorted(other)}")
    (b, n), n_other = base_labels.shape, other_labels.shape[1]
    ok = other_labels != IGNORE_INDEX
    paste = ok & chosen.gather(1, other_labels.masked_fill(~ok, 0))
    valid = torch.cat([torch.ones_like(base_labels, dtype=torch.bool), paste], dim=1)
    # Random order of the union, invalid points last: the first n are a uniform draw
    # without replacement, since the n base points alone are valid.
    score = torch.rand(b, n + n_other, generator=generator).to(base_labels.device)
    pick = score.masked_fill(~valid, 2.0).argsort(dim=1)[:, :n]
    rows = torch.arange(b, device=pick.device)[:, None]
    mixed = {k: torch.cat([base[k], other[k]], dim=1)[rows, pick] for k in keys}
    labels = torch.cat([base_labels, other_labels], dim=1)[rows, pick]
    return mixed, labels, pick >= n


def _layout(source: Batch, target: Batch) -> str:
    """'point' for (B, N) blocks, 'sample' for per-sample batches; anything else refused."""
    y = source["label"]
    if y.dim() == 1:
        return "sample"
    blocks = y.dim() == 2 and all(v.shape[:2] == y.shape for v in source.values())
    if blocks and all(v.dim() >= 2 for v in target.values()):
        return "point"
    shapes = {k: tuple(v.shape) for k, v in source.items()}
    raise ValueError(f"cosmix mixes point blocks (labels (B, N)) or whole samples (labels (B,)); got "
                     f"{shapes} - image segmentation needs a pasting mix (ClassMix / DACS), not point "
                     "selection")


def _one_block(batch: Batch) -> Batch:
    """A per-sample batch as one block whose points are the samples."""
    return {k: v.unsqueeze(0) for k, v in batch.items()}


def _masked_ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over labelled points; 0 (still in the graph) when there are none,
    with no host sync to find out. Unweighted, as self_training's pseudo loss: the
    pseudo-labels are class-balanced already."""
    total = F.cross_entropy(logits.float(), labels, ignore_index=IGNORE_INDEX, reduction="sum")
    return total / (labels != IGNORE_INDEX).sum().clamp_min(1)


@register(ALGORITHMS, "cosmix", CosMixConfig)
class CosMix(SelfTraining):
    """The mean teacher (its copy at the first step, EMA updates, eval mode) is
    SelfTraining's; this class adds the mixing, its losses and the optional DANN term."""

    uses_target = True

    def __init__(self, feature_extractor, task_head, cfg: CosMixConfig):
        super().__init__(feature_extractor, task_head, cfg)
        # Drawn from the run's seeded RNG once, then saved: the mixes depend on it and on
        # the step counter only.
        self.register_buffer("mix_seed", torch.randint(0, 2**62, ()))
        self.register_buffer("mix_step", torch.zeros((), dtype=torch.long))
        self.domain_loss = None
        if cfg.dann_weight > 0:
            self.domain_loss = DomainAdversarialLoss(DomainClassifier(
                feature_extractor.num_features, list(cfg.disc_hidden), cfg.disc_dropout))

    def _generator(self) -> torch.Generator:
        """This step's generator (on the CPU: the same draws on every device); ranks under
        torchrun draw differently, as their blocks differ."""
        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        words = [int(self.mix_seed), int(self.mix_step), rank]
        self.mix_step.add_(1)
        seed = int(np.random.SeedSequence(words).generate_state(1, np.uint64)[0])
        return torch.Generator().manual_seed(seed)

    def _ramped(self, progress: float) -> float:
        ramp = self.cfg.ramp
        return self.cfg.mix_weight * (min(1.0, progress / ramp) if ramp > 0 else 1.0)

    @torch.no_grad()
    def _pseudo(self, target: Batch) -> torch.Tensor:
        logits = self.teacher["task_head"](self.teacher["feature_extractor"](target))
        return pseudo_labels(logits.float().softmax(dim=1), self.cfg.keep_fraction, self.cfg.min_confidence)

    def mixes(self, source: Batch, target: Batch, pseudo: torch.Tensor, num_classes: int,
              generator: torch.Generator) -> dict[str, tuple[Batch, torch.Tensor, torch.Tensor]]:
        """{"target": target <- source, "source": source <- target} as (inputs, labels, pasted),
        in the batches' own layout."""
        per_sample = _layout(source, target) == "sample"
        s, t = (_one_block(source), _one_block(target)) if per_sample else (source, target)
        s_labels, t_labels = (s.pop("label"), pseudo[None]) if per_sample else (source["label"], pseudo)
        if s_labels.shape[0] != t_labels.shape[0]:
            raise ValueError(f"cosmix pairs blocks: {s_labels.shape[0]} source vs {t_labels.shape[0]} target")
        frac = self.cfg.class_fraction
        out = {"target": mix_blocks(t, t_labels, s, s_labels,
                                    choose_classes(s_labels, num_classes, frac, generator), generator),
               "source": mix_blocks(s, s_labels, t, t_labels,
                                    choose_classes(t_labels, num_classes, frac, generator), generator)}
        if per_sample:
            out = {k: tuple(_squeeze(x) for x in v) for k, v in out.items()}
        return out

    def _domain(self, f_s: torch.Tensor, target: Batch, progress: float,
                generator: torch.Generator) -> dict[str, torch.Tensor]:
        lam = self.cfg.lambda_max * LAMBDA_SCHEDULES[self.cfg.lambda_schedule](progress, gamma=self.cfg.gamma)
        rows = [sample_rows(f, self.cfg.domain_rows, generator) for f in (f_s, self.features(target))]
        loss, acc = self.domain_loss(rows[0], rows[1], lam)
        return {"domain": loss, "domain_acc": acc, "lambda": torch.tensor(lam)}

    def losses(self, source, target, progress):
        self._update_teacher()
        generator = self._generator()
        pseudo = self._pseudo(target)
        f_s = self.features(source)
        logits = self.head(f_s)
        task = self.task_loss(logits, source["label"])
        weight = self._ramped(progress)
        out = {"task": task, "mix_weight": torch.tensor(weight)}
        mix = torch.zeros((), device=task.device)
        for side, (inputs, labels, pasted) in self.mixes(source, target, pseudo, logits.shape[1],
                                                          generator).items():
            out[f"mix_{side}"] = _masked_ce(self.predict(inputs), labels)
            out[f"pasted_{side}"] = pasted.float().mean()  # share of the mixed block pasted
            mix = mix + out[f"mix_{side}"]
        total = task + weight * mix
        if self.domain_loss is not None:
            out.update(self._domain(f_s, target, progress, generator))
            total = total + self.cfg.dann_weight * out["domain"]
        out.update(_pseudo_stats(pseudo, logits.shape[1]))
        out["total"] = total
        return out


def _squeeze(x: torch.Tensor | Batch) -> torch.Tensor | Batch:
    return {k: v.squeeze(0) for k, v in x.items()} if isinstance(x, dict) else x.squeeze(0)


def _pseudo_stats(pseudo: torch.Tensor, num_classes: int) -> dict[str, torch.Tensor]:
    """Kept share and, per class, what the teacher hands out (as self_training logs)."""
    kept = (pseudo != IGNORE_INDEX).float().sum()
    out = {"pseudo_kept": kept / pseudo.numel()}
    for k in range(num_classes):
        out[f"pseudo_share_{k}"] = (pseudo == k).float().sum() / kept.clamp_min(1)
    return out
