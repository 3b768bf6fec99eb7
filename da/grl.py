"""Gradient reversal and the DANN paper's schedules.

The reversal layer is the identity going forward and multiplies the gradient by -coeff
going backward, so minimising the domain loss through it *maximises* the domain
confusion of the features below it (Ganin & Lempitsky 2015).
"""

from __future__ import annotations

import math

import torch
from torch import nn


class GradientReversalFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, coeff: float) -> torch.Tensor:
        ctx.coeff = float(coeff)
        # view_as keeps autograd from treating the output as the same tensor as the input.
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        return -ctx.coeff * grad_output, None


def grad_reverse(x: torch.Tensor, coeff: float = 1.0) -> torch.Tensor:
    return GradientReversalFunction.apply(x, coeff)


class GradientReversal(nn.Module):
    """Module form; the coefficient is passed per call because it follows a schedule."""

    def forward(self, x: torch.Tensor, coeff: float = 1.0) -> torch.Tensor:
        return grad_reverse(x, coeff)


def dann_lambda(progress: float, gamma: float = 10.0) -> float:
    """lambda_p = 2 / (1 + exp(-gamma p)) - 1: ramps 0 -> ~1 to damp early noisy domain signal."""
    return 2.0 / (1.0 + math.exp(-gamma * progress)) - 1.0


def dann_lr_factor(progress: float, alpha: float = 10.0, beta: float = 0.75) -> float:
    """mu_p / mu_0 = 1 / (1 + alpha p)^beta (JMLR 2016 Sec. 5.2.2)."""
    return 1.0 / (1.0 + alpha * progress) ** beta


def constant_schedule(progress: float, **_: float) -> float:
    return 1.0


def cosine_schedule(progress: float, **_: float) -> float:
    """(1 + cos(pi p)) / 2: from 1 down to 0 at the last step."""
    return 0.5 * (1.0 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))


# Schedules by config name; each maps progress p in [0, 1] to a multiplier.
LAMBDA_SCHEDULES = {"dann": dann_lambda, "constant": constant_schedule}
LR_SCHEDULES = {"dann": dann_lr_factor, "cosine": cosine_schedule, "constant": constant_schedule}
