"""Accuracy, confusion matrix, per-class IoU / mIoU, and the proxy A-distance."""

from __future__ import annotations

import numpy as np
import torch

from da.algorithms.base import IGNORE_INDEX


def confusion_matrix(pred: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(K, K) counts, rows = true class; labels == 255 are never counted."""
    keep = labels != IGNORE_INDEX
    idx = labels[keep].long() * num_classes + pred[keep].long()
    return torch.bincount(idx, minlength=num_classes**2).reshape(num_classes, num_classes).cpu()


def accuracy(cm: torch.Tensor) -> float:
    total = cm.sum().item()
    return cm.trace().item() / total if total else float("nan")


def per_class_iou(cm: torch.Tensor) -> list[float]:
    """IoU per class; NaN for a class absent from both prediction and truth."""
    cm = cm.double()
    inter = cm.diag()
    union = cm.sum(0) + cm.sum(1) - inter
    return [float(i / u) if u > 0 else float("nan") for i, u in zip(inter, union)]


def mean_iou(cm: torch.Tensor) -> float:
    ious = [v for v in per_class_iou(cm) if not np.isnan(v)]
    return float(np.mean(ious)) if ious else float("nan")


def proxy_a_distance(source: np.ndarray, target: np.ndarray, seed: int = 0) -> float:
    """PAD = 2 (1 - 2 err) of a linear domain classifier trained on half the features.

    0 means the domains are indistinguishable from these features, 2 means separable
    (Ben-David et al. 2007; used in the JMLR DANN paper, Sec. 5.2.3).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    n = min(len(source), len(target))
    rng = np.random.default_rng(seed)
    s = source[rng.permutation(len(source))[:n]]
    t = target[rng.permutation(len(target))[:n]]
    x = np.concatenate([s, t]).astype(np.float64)
    y = np.concatenate([np.zeros(n), np.ones(n)])
    order = rng.permutation(2 * n)
    train, test = order[:n], order[n:]
    scaler = StandardScaler().fit(x[train])
    clf = LogisticRegression(max_iter=500, C=1.0).fit(scaler.transform(x[train]), y[train])
    err = 1.0 - clf.score(scaler.transform(x[test]), y[test])
    return float(2.0 * (1.0 - 2.0 * min(err, 0.5)))
