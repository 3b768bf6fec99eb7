"""Accuracy, confusion matrix, per-class IoU / mIoU, and the proxy A-distance."""

from __future__ import annotations

import numpy as np
import torch

from da.contracts import IGNORE_INDEX


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
    if len(np.unique(y[train])) < 2:  # too few samples (a handful of test images): no estimate
        return float("nan")
    scaler = StandardScaler().fit(x[train])
    clf = LogisticRegression(max_iter=500, C=1.0).fit(scaler.transform(x[train]), y[train])
    err = 1.0 - clf.score(scaler.transform(x[test]), y[test])
    return float(2.0 * (1.0 - 2.0 * min(err, 0.5)))


def bootstrap_miou(scene_cms: list[torch.Tensor], resamples: int = 1000, seed: int = 0,
                   level: float = 0.95) -> tuple[float, float]:
    """Percentile confidence interval of the pooled mIoU when the SCENES are resampled.

    Each resample draws len(scene_cms) scenes with replacement and sums their confusion
    matrices; the spread is how much the number depends on which test scenes were drawn
    (beside the spread over training seeds). Seeded: the same matrices give the same CI.
    """
    if not scene_cms:
        raise ValueError("bootstrap_miou needs at least one scene")
    stack = torch.stack([cm.double() for cm in scene_cms])
    rng = np.random.default_rng(seed)
    values = [mean_iou(stack[rng.integers(0, len(stack), len(stack))].sum(0))
              for _ in range(resamples)]
    tail = (1 - level) / 2 * 100
    return float(np.nanpercentile(values, tail)), float(np.nanpercentile(values, 100 - tail))


def grouped_miou(scene_cms: list[torch.Tensor], groups: list[str]) -> dict[str, float]:
    """mIoU of the pooled confusion matrix of each group of scenes (e.g. element type)."""
    out: dict[str, torch.Tensor] = {}
    for cm, g in zip(scene_cms, groups):
        out[g] = out[g] + cm if g in out else cm.clone()
    return {g: mean_iou(cm) for g, cm in sorted(out.items())}
