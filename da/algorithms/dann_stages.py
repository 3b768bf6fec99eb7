"""DANN for segmentation networks: image-level domain classifiers on several encoder stages,
and optionally a per-pixel one on the softmax output.

- Stage level (as the NTU rebar DA-Mask R-CNN code does on res2-res5): for each stage
  named in `stages` (1 = layer1 ... 4 = layer4 of the ResNet encoder; read from the
  feature extractor's `stage_features` after its forward), a small conv classifier
  (3x3 conv -> ReLU -> 1x1 conv to one logit per location) behind the gradient reversal
  layer, its logits averaged over the image into ONE logit per image. The loss is the
  focal loss (gamma `focal_gamma`; 0 = plain BCE): easy, already-confused images weigh
  little, so the features are pushed where the domains still differ.
- Output level (`output_weight` > 0; AdaptSegNet, Tsai et al. 2018): a fully convolutional
  classifier on the task head's softmax maps, per pixel, behind its own reversal layer -
  the predicted layouts of source and target images are made alike.

Every classifier sees source and target equally weighted; lambda follows DANN's schedule.
The feature extractor must expose `stage_features` and `stage_channels` (model.name=unet).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from da.algorithms.base import ALGORITHMS, Algorithm
from da.config_schema import AlgorithmConfig
from da.grl import GradientReversal, dann_lambda
from da.registry import register


@dataclass
class DannStagesConfig(AlgorithmConfig):
    name: str = "dann_stages"
    stages: list[int] = field(default_factory=lambda: [1, 2, 3, 4])
    lambda_max: float = 1.0
    gamma: float = 10.0  # of the lambda schedule 2 / (1 + exp(-gamma p)) - 1
    focal_gamma: float = 2.0
    disc_channels: int = 128
    output_weight: float = 0.0  # > 0: the per-pixel output-level classifier, this weight
    domain_weight: float = 1.0

    def validate(self) -> None:
        if not self.stages and self.output_weight <= 0:
            raise ValueError("dann_stages needs stages or output_weight > 0")
        if any(s < 1 or s > 4 for s in self.stages):
            raise ValueError(f"stages are 1..4 (layer1..layer4), got {self.stages}")
        if self.focal_gamma < 0 or self.output_weight < 0:
            raise ValueError("focal_gamma and output_weight must be >= 0")


def focal_bce(logits: torch.Tensor, target: float, gamma: float) -> torch.Tensor:
    """Mean binary focal loss of logits against a constant label (0 source, 1 target)."""
    y = torch.full_like(logits, target)
    bce = F.binary_cross_entropy_with_logits(logits, y, reduction="none")
    if gamma == 0:
        return bce.mean()
    p_true = torch.exp(-bce)  # the probability given to the true domain
    return ((1 - p_true) ** gamma * bce).mean()


class ConvDiscriminator(nn.Module):
    def __init__(self, cin: int, width: int):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(cin, width, 3, padding=1), nn.LeakyReLU(0.2, inplace=True),
                                 nn.Conv2d(width, 1, 1))
        self.grl = GradientReversal()

    def forward(self, x: torch.Tensor, coeff: float) -> torch.Tensor:
        return self.net(self.grl(x, coeff)).float()  # (B, 1, h, w)


@register(ALGORITHMS, "dann_stages", DannStagesConfig)
class DannStages(Algorithm):
    uses_target = True

    def __init__(self, feature_extractor, task_head, cfg: DannStagesConfig):
        super().__init__(feature_extractor, task_head, cfg)
        cfg.validate()
        widths = getattr(feature_extractor, "stage_channels", None)
        if widths is None:
            raise ValueError("dann_stages needs a feature extractor with stage_features (model.name=unet)")
        self.stage_discs = nn.ModuleDict({str(s): ConvDiscriminator(widths[s], cfg.disc_channels)
                                          for s in cfg.stages})
        k = task_head.out_channels
        self.output_disc = ConvDiscriminator(k, cfg.disc_channels // 2) if cfg.output_weight > 0 else None

    def losses(self, source, target, progress):
        cfg = self.cfg
        f_s = self.features(source)
        stages_s = list(self.feature_extractor.stage_features)
        logits_s = self.task_head(f_s)
        f_t = self.features(target)
        stages_t = list(self.feature_extractor.stage_features)
        task = self.task_loss(logits_s, source["label"])
        lam = cfg.lambda_max * dann_lambda(progress, cfg.gamma)
        out = {"task": task, "lambda": torch.tensor(lam)}
        domain = torch.zeros((), device=task.device)
        accs = []
        for s, disc in self.stage_discs.items():
            ls = disc(stages_s[int(s)], lam).mean(dim=(1, 2, 3))  # one logit per image
            lt = disc(stages_t[int(s)], lam).mean(dim=(1, 2, 3))
            loss = 0.5 * (focal_bce(ls, 0.0, cfg.focal_gamma) + focal_bce(lt, 1.0, cfg.focal_gamma))
            domain = domain + loss
            out[f"domain_stage{s}"] = loss
            with torch.no_grad():
                accs.append(0.5 * ((ls < 0).float().mean() + (lt >= 0).float().mean()))
        if self.output_disc is not None:
            ps, pt = logits_s.softmax(1), self.task_head(f_t).softmax(1)
            ls, lt = self.output_disc(ps, lam), self.output_disc(pt, lam)
            loss = 0.5 * (F.binary_cross_entropy_with_logits(ls, torch.zeros_like(ls))
                          + F.binary_cross_entropy_with_logits(lt, torch.ones_like(lt)))
            domain = domain + cfg.output_weight * loss
            out["domain_output"] = loss
            with torch.no_grad():
                accs.append(0.5 * ((ls < 0).float().mean() + (lt >= 0).float().mean()))
        out["domain"] = domain
        out["domain_acc"] = torch.stack(accs).mean()
        out["total"] = task + cfg.domain_weight * domain
        return out
