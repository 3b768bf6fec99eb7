import math

import pytest
import torch
from torch.autograd.gradcheck import GradcheckError

from da.grl import (
    LAMBDA_SCHEDULES,
    LR_SCHEDULES,
    GradientReversal,
    dann_lambda,
    dann_lr_factor,
    grad_reverse,
)


def test_forward_is_identity():
    x = torch.randn(4, 3)
    assert torch.equal(GradientReversal()(x, 0.7), x)


@pytest.mark.parametrize("coeff", [0.0, 0.5, 1.0, 6.0])
def test_backward_is_minus_coeff_times_gradient(coeff):
    torch.manual_seed(0)
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, dtype=torch.float64)

    def f(inp):
        return (torch.tanh(inp @ w) ** 2).sum()

    (plain,) = torch.autograd.grad(f(x), x)
    (reversed_,) = torch.autograd.grad(f(grad_reverse(x, coeff)), x)
    torch.testing.assert_close(reversed_, -coeff * plain)
    # and the plain gradient itself is right (central differences), so the check has teeth
    eps = 1e-6
    num = torch.zeros_like(x)
    for i in range(x.numel()):
        d = torch.zeros_like(x).view(-1)
        d[i] = eps
        d = d.view_as(x)
        num.view(-1)[i] = (f(x + d) - f(x - d)) / (2 * eps)
    torch.testing.assert_close(reversed_, -coeff * num, rtol=1e-5, atol=1e-6)


def test_gradcheck_fails_on_reversal_by_design():
    # gradcheck compares backward with numerical derivatives of forward: the reversal is
    # exactly the layer whose backward is NOT the derivative of its forward.
    x = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    with pytest.raises(GradcheckError):
        torch.autograd.gradcheck(lambda t: grad_reverse(t, 1.0), (x,))
    (g,) = torch.autograd.grad(grad_reverse(x, 2.0).sum(), x)
    assert torch.equal(g, torch.full_like(x, -2.0))


def test_lambda_schedule_values():
    assert dann_lambda(0.0) == 0.0
    assert dann_lambda(0.5) == pytest.approx(2 / (1 + math.exp(-5)) - 1)
    assert dann_lambda(0.5) == pytest.approx(0.986614, abs=1e-6)
    assert dann_lambda(1.0) == pytest.approx(0.999909, abs=1e-6)


def test_lr_schedule_values():
    assert dann_lr_factor(0.0) == 1.0
    assert dann_lr_factor(0.5) == pytest.approx(6 ** -0.75)
    assert 0.01 * dann_lr_factor(1.0) == pytest.approx(0.01 / 11 ** 0.75)
    assert 0.01 * dann_lr_factor(1.0) == pytest.approx(0.0016556, abs=1e-6)


def test_constant_schedules():
    for p in (0.0, 0.5, 1.0):
        assert LR_SCHEDULES["constant"](p, alpha=10, beta=0.75) == 1.0
        assert LAMBDA_SCHEDULES["constant"](p, gamma=10) == 1.0
