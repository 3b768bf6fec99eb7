"""Domain-adversarial loss over (M, C) feature rows.

Global features (B, C), per-pixel (B, C, H, W) and per-point (B, C, N) features all
flatten to rows, so image-level, pixel-level and point-level adaptation are one call.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from da.grl import GradientReversal


def feature_rows(features: torch.Tensor) -> torch.Tensor:
    """(B, C, *spatial) channels-first -> (M, C)."""
    if features.dim() == 2:
        return features
    return features.flatten(2).transpose(1, 2).reshape(-1, features.shape[1])


def sample_rows(features: torch.Tensor, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """(M, C) rows of `features` (see feature_rows), a random n of them when 0 < n < M
    (0 = all). generator: a CPU generator to draw them from (e.g. a resumable per-step one);
    None draws from the global stream on the features' device."""
    rows = feature_rows(features)
    if 0 < n < len(rows):
        perm = (torch.randperm(len(rows), device=rows.device) if generator is None
                else torch.randperm(len(rows), generator=generator).to(rows.device))
        rows = rows[perm[:n]]
    return rows


class DomainAdversarialLoss(nn.Module):
    """BCE of a domain classifier behind a gradient reversal layer.

    Each domain's mean loss is weighted equally, so a domain with more rows (e.g. a
    larger target image) does not dominate. Returns (loss, accuracy) as tensors so the
    trainer decides when to synchronise with the device.
    """

    def __init__(self, classifier: nn.Module):
        super().__init__()
        self.classifier = classifier
        self.grl = GradientReversal()

    def forward(self, source: torch.Tensor, target: torch.Tensor, coeff: float):
        rows_s, rows_t = feature_rows(source), feature_rows(target)
        logits = self.classifier(self.grl(torch.cat([rows_s, rows_t]), coeff)).float()
        logit_s, logit_t = logits[: len(rows_s)], logits[len(rows_s) :]
        loss = 0.5 * (F.binary_cross_entropy_with_logits(logit_s, torch.zeros_like(logit_s))
                      + F.binary_cross_entropy_with_logits(logit_t, torch.ones_like(logit_t)))
        with torch.no_grad():
            acc = 0.5 * ((logit_s < 0).float().mean() + (logit_t >= 0).float().mean())
        return loss, acc
