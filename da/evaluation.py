"""What a run reports at each evaluation: target-test and source-val metrics, and PAD.

The run's task (`da.tasks`) evaluates each split; target labels are read here only,
never in training or in model selection.
"""

from __future__ import annotations

from da.metrics import accuracy, mean_iou, per_class_iou, proxy_a_distance
from da.runs import Run
from da.tasks import task_of


def evaluate(run: Run, step: int) -> dict[str, float]:
    """`{prefix}_acc` (and for dense tasks `{prefix}_miou`, `{prefix}_iou_K`), the task's
    extra metrics, for prefix target and source_val; `pad` between their pooled features.
    A dataset without a target test (no target labels at all) reports source_val only."""
    task = task_of(run.data)
    out: dict[str, float] = {"step": step}
    feats = {}
    splits = [("target", run.data.target_test), ("source_val", run.data.source_val)]
    for prefix, dataset in [(p, d) for p, d in splits if d is not None]:  # no target test: source only
        pred = task.evaluate(run.algorithm, dataset, run.device)
        feats[prefix] = pred.features
        out[f"{prefix}_acc"] = accuracy(pred.confusion)
        if pred.dense:  # segmentation: mIoU and per-class IoU too
            out[f"{prefix}_miou"] = mean_iou(pred.confusion)
            for k, v in enumerate(per_class_iou(pred.confusion)):
                out[f"{prefix}_iou_{k}"] = v
        out.update({f"{prefix}_{name}": v for name, v in pred.extra.items()})
    if "target" in feats:
        out["pad"] = proxy_a_distance(feats["source_val"], feats["target"], seed=run.cfg.seed)
    return out
