"""The domain classifier stays at chance on identical features and separates distinct ones."""

import torch

from da.domain_loss import DomainAdversarialLoss, feature_rows
from da.models.domain import DomainClassifier


def train_classifier(source: torch.Tensor, target: torch.Tensor, steps: int = 300) -> float:
    torch.manual_seed(0)
    loss_fn = DomainAdversarialLoss(DomainClassifier(source.shape[1], [32]))
    opt = torch.optim.Adam(loss_fn.parameters(), lr=1e-2)
    for _ in range(steps):
        loss, _ = loss_fn(source, target, coeff=1.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        _, acc = loss_fn(source, target, coeff=1.0)
    return float(acc), float(loss.detach())


def test_chance_on_identical_features():
    feats = torch.randn(256, 8)
    acc, loss = train_classifier(feats, feats.clone())
    assert abs(acc - 0.5) < 0.02
    assert abs(loss - 0.6931) < 0.01  # ln 2: nothing to learn


def test_separable_features_exceed_95_percent():
    g = torch.Generator().manual_seed(1)
    source = torch.randn(256, 8, generator=g)
    target = torch.randn(256, 8, generator=g) + torch.tensor([2.0] + [0.0] * 7)
    acc, _ = train_classifier(source, target)
    assert acc > 0.95


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
