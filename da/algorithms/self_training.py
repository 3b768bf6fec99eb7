"""Self-training with confident, class-balanced pseudo-labels from a mean teacher.

The strongest family in recent point-cloud adaptation (e.g. the self-training stages of
PolarMix / CoSMix / SALUDA): a teacher labels the unlabeled target, the student learns
from the labels the teacher is sure of, beside the usual source loss.

- Teacher: an exponential moving average of the student (mean teacher; `ema` per step),
  always in eval mode, never trained by gradients. It starts as a copy of the student at
  step 0 - meant to follow train.init_from (a source-only run), so the first
  pseudo-labels are the source model's.
- Pseudo-labels (per point / pixel / sample): the teacher's argmax, kept where its
  confidence is in the top `keep_fraction` of the batch's samples predicted as that class
  AND at least `min_confidence`. Per-class quantiles (class-balanced, as CBST, Zou et al.
  2018) stop the frequent class taking every label: a global threshold keeps almost no
  tie points.
- Loss: task(source) + weight(p) * CE(student(target), pseudo-labels), weight ramped
  linearly from 0 to `pseudo_weight` over the first `ramp` of training.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from da.algorithms.base import ALGORITHMS, IGNORE_INDEX, Algorithm
from da.config_schema import AlgorithmConfig
from da.registry import register


@dataclass
class SelfTrainingConfig(AlgorithmConfig):
    name: str = "self_training"
    pseudo_weight: float = 1.0
    keep_fraction: float = 0.5  # per predicted class, the most confident share kept
    min_confidence: float = 0.5
    ema: float = 0.99  # teacher <- ema * teacher + (1 - ema) * student, every step
    ramp: float = 0.1  # share of training over which the pseudo-label weight rises to its value

    def validate(self) -> None:
        if not 0 < self.keep_fraction <= 1 or not 0 <= self.min_confidence < 1:
            raise ValueError("need 0 < keep_fraction <= 1 and 0 <= min_confidence < 1")
        if not 0 <= self.ema < 1 or not 0 <= self.ramp <= 1 or self.pseudo_weight < 0:
            raise ValueError("need 0 <= ema < 1, 0 <= ramp <= 1 and pseudo_weight >= 0")


def pseudo_labels(probs: torch.Tensor, keep_fraction: float, min_confidence: float) -> torch.Tensor:
    """(B, K, *) probabilities -> (B, *) labels, IGNORE_INDEX where not confident enough:
    per predicted class, only the top `keep_fraction` confidences (and >= min_confidence)."""
    conf, label = probs.max(dim=1)
    keep = conf >= min_confidence
    for k in range(probs.shape[1]):
        of_k = (label == k) & keep  # the share is of the confident enough ones
        if of_k.any() and keep_fraction < 1:
            cut = torch.quantile(conf[of_k].float(), 1.0 - keep_fraction)
            keep &= ~of_k | (conf >= cut)
    return torch.where(keep, label, torch.full_like(label, IGNORE_INDEX))


@register(ALGORITHMS, "self_training", SelfTrainingConfig)
class SelfTraining(Algorithm):
    uses_target = True

    def __init__(self, feature_extractor, task_head, cfg: SelfTrainingConfig):
        super().__init__(feature_extractor, task_head, cfg)
        cfg.validate()
        self.teacher = nn.ModuleDict({"feature_extractor": copy.deepcopy(feature_extractor),
                                      "task_head": copy.deepcopy(task_head)})
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        # 0 until the teacher has been copied from the (possibly just loaded) student
        self.register_buffer("teacher_ready", torch.zeros((), dtype=torch.bool))

    def train(self, mode: bool = True):
        super().train(mode)
        self.teacher.eval()  # always: its BatchNorm keeps its statistics, dropout off
        return self

    @torch.no_grad()
    def _update_teacher(self) -> None:
        student = {"feature_extractor": self.feature_extractor, "task_head": self.task_head}
        if not bool(self.teacher_ready):
            for name, part in student.items():
                self.teacher[name].load_state_dict(part.state_dict())
            self.teacher_ready.fill_(True)
            return
        for name, part in student.items():
            t_state = self.teacher[name].state_dict()
            for key, value in part.state_dict().items():
                if value.is_floating_point():
                    t_state[key].mul_(self.cfg.ema).add_(value.detach(), alpha=1 - self.cfg.ema)
                else:
                    t_state[key].copy_(value)

    def losses(self, source, target, progress):
        self._update_teacher()
        with torch.no_grad():
            t_logits = self.teacher["task_head"](self.teacher["feature_extractor"](target))
            labels = pseudo_labels(t_logits.float().softmax(dim=1), self.cfg.keep_fraction,
                                   self.cfg.min_confidence)
        task = self.task_loss(self.predict(source), source["label"])
        s_logits = self.predict(target)
        kept = labels != IGNORE_INDEX
        pseudo = (F.cross_entropy(s_logits.float(), labels, ignore_index=IGNORE_INDEX)
                  if kept.any() else s_logits.sum() * 0.0)
        ramp = self.cfg.ramp
        weight = self.cfg.pseudo_weight * (min(1.0, progress / ramp) if ramp > 0 else 1.0)
        out = {"task": task, "pseudo": pseudo, "pseudo_kept": kept.float().mean(),
               "pseudo_weight": torch.tensor(weight), "total": task + weight * pseudo}
        for k in range(t_logits.shape[1]):  # what the teacher hands out, per class
            out[f"pseudo_share_{k}"] = ((labels == k).float().sum() / kept.float().sum().clamp_min(1))
        return out
