"""The domain classifier stays at chance on identical features and separates distinct ones."""

import torch

from da.domain_loss import DomainAdversarialLoss, feature_rows
from da.models.domain import DomainClassifier


def train_classifier(draw, steps: int = 300) -> tuple[float, float]:
    """Train on one draw of (source, target) features, measure on a fresh draw."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    source, target = draw(g)
    loss_fn = DomainAdversarialLoss(DomainClassifier(source.shape[1], [32]))
    opt = torch.optim.Adam(loss_fn.parameters(), lr=1e-2)
    for _ in range(steps):
        loss, _ = loss_fn(source, target, coeff=1.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        loss, acc = loss_fn(*draw(g), coeff=1.0)
    return float(acc), float(loss)


def same_distribution(g):
    return torch.randn(2000, 8, generator=g), torch.randn(2000, 8, generator=g)


def shifted(g):
    shift = torch.tensor([4.0] + [0.0] * 7)  # Bayes accuracy Phi(2) = 0.977
    return torch.randn(2000, 8, generator=g), torch.randn(2000, 8, generator=g) + shift


def test_chance_on_features_from_one_distribution():
    acc, loss = train_classifier(same_distribution)
    assert abs(acc - 0.5) < 0.04  # held-out draws: what it memorised does not carry over
    assert loss > 0.68  # ~ln 2 = 0.693: nothing general to learn


def test_separable_features_exceed_95_percent():
    acc, loss = train_classifier(shifted)
    assert acc > 0.95 and loss < 0.2


def test_dense_features_flatten_to_rows():
    pixels = torch.randn(2, 5, 3, 4)  # (B, C, H, W)
    rows = feature_rows(pixels)
    assert rows.shape == (24, 5)
    assert torch.equal(rows[1], pixels[0, :, 0, 1])
    points = torch.randn(2, 5, 7)  # (B, C, N)
    assert torch.equal(feature_rows(points)[8], points[1, :, 1])


def test_reversed_gradient_reaches_features_scaled_by_coeff():
    torch.manual_seed(0)
    loss_fn = DomainAdversarialLoss(DomainClassifier(4, []))
    f_s = torch.randn(8, 4, requires_grad=True)
    f_t = torch.randn(8, 4)
    loss, _ = loss_fn(f_s, f_t, coeff=0.0)
    loss.backward()
    assert torch.count_nonzero(f_s.grad) == 0
    cls_grad = [p.grad.clone() for p in loss_fn.parameters()]
    assert all(g.abs().sum() > 0 for g in cls_grad)  # classifier learns at full strength
    f_s.grad = None
    loss, _ = loss_fn(f_s, f_t, coeff=0.5)
    loss.backward()
    g_half = f_s.grad.clone()
    f_s.grad = None
    loss_fn.zero_grad()
    loss, _ = loss_fn(f_s, f_t, coeff=1.0)
    loss.backward()
    torch.testing.assert_close(g_half, 0.5 * f_s.grad)
