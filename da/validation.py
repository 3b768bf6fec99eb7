"""Unsupervised model selection: score a trained run without any target label.

A validator maps a finished run folder to a score (higher is better) and details. Scores
are cached in RUN_DIR/validation/NAME.json, keyed by the checkpoint step they describe, so
a table re-run does not redo them. Registered validators:

- `source_val`: the run's own source-validation accuracy (mIoU for segmentation) at the
  last checkpoint. Free, but blind to the target: it tends to favour no adaptation.
- `reverse`: reverse validation (Zhong et al. 2010; Ganin et al., JMLR 2016, Sec. 5.1.2).
  The run's last checkpoint labels target_train; a REVERSE run with the same config is
  trained with that pseudo-labelled target as its labeled source and source_train (labels
  dropped) as its unlabeled target; its accuracy on source_val (true labels) is the score.
  A forward model that fits the target badly hands the reverse run bad labels. The
  reverse run is a normal run folder (RUN_DIR/reverse/): resumable, logged, inspectable.
- `dev`: deep embedded validation (You et al., ICML 2019). A logistic domain classifier on
  the run's pooled features (source_train vs target_train; for point clouds, per block,
  unaugmented, up to 2000 seeded blocks per split) gives density ratios
  w = p_t / p_s; the source-val loss weighted by w, with w as a control variate, estimates
  the target risk. Score = -risk.

Target-test labels are never read here.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from da.config import ConfigError, load_run_config
from da.run_log import read_results
from da.runs import load_trained
from da.tasks import task_of
from da.train import train

VALIDATORS: dict[str, Callable[[Path, str], dict]] = {}


def register_validator(name: str):
    def wrap(fn):
        VALIDATORS[name] = fn
        return fn
    return wrap


def _last_step(run_dir: Path) -> int:
    results = read_results(run_dir)
    if not (run_dir / "done").exists() or not results:
        raise ConfigError(f"{run_dir}: not a finished run (no done marker); train it first")
    return int(results[-1]["step"])


def validate_run(run_dir: Path, name: str, device: str = "cpu", cached_only: bool = False) -> dict | None:
    """Score of one validator for one finished run (cached in RUN_DIR/validation/).
    cached_only: return None instead of computing (reverse validation trains a run)."""
    if name not in VALIDATORS:
        raise ConfigError(f"unknown validator '{name}'; registered: {', '.join(sorted(VALIDATORS))}")
    run_dir = Path(run_dir)
    step = _last_step(run_dir)
    cache = run_dir / "validation" / f"{name}.json"
    if cache.exists():
        cached = json.loads(cache.read_text())
        if cached.get("step") == step:
            return cached
    if cached_only:
        return None
    out = {"validator": name, "step": step, **VALIDATORS[name](run_dir, device)}
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(f".{cache.name}.tmp")
    tmp.write_text(json.dumps(out, indent=2) + "\n")
    os.replace(tmp, cache)
    return out


def _task_score(record: dict, prefix: str) -> float:
    """mIoU where the task is dense (segmentation), else accuracy."""
    return record.get(f"{prefix}_miou", record[f"{prefix}_acc"])


@register_validator("source_val")
def source_val(run_dir: Path, device: str) -> dict:
    last = read_results(run_dir)[-1]
    return {"score": _task_score(last, "source_val")}


def _unsupervised_run(run, what: str):
    """A train-on-target run has read target labels: nothing is left to validate."""
    if run.cfg.data.target_labeled:
        raise ConfigError(f"{what}: a train-on-target run reads target labels; nothing to validate")
    return run


@register_validator("reverse")
def reverse_validation(run_dir: Path, device: str) -> dict:
    forward = _unsupervised_run(load_trained(run_dir, "last.pt", device), "reverse validation")
    reverse_data, pseudo = task_of(forward.data).reverse_data(forward.algorithm, forward.data, forward.device)
    cfg = load_run_config(run_dir / "config.yaml")
    cfg = replace(cfg, name=f"{cfg.name}-reverse", run_dir=str(run_dir / "reverse"),
                  train=replace(cfg.train, embedding_samples=0, progress_bar=False))
    reverse_dir = train(cfg, data=reverse_data)
    last = read_results(reverse_dir)[-1]
    counts = torch.bincount(pseudo, minlength=forward.data.num_classes).tolist()
    return {"score": _task_score(last, "target"), "reverse_run": str(reverse_dir),
            "pseudo_label_counts": counts}


@register_validator("dev")
def deep_embedded_validation(run_dir: Path, device: str, max_rows: int = 2000) -> dict:
    """Point-cloud runs are scored per block (up to max_rows blocks per split)."""
    run = _unsupervised_run(load_trained(run_dir, "last.pt", device), "deep embedded validation")
    inputs = task_of(run.data).dev_inputs(run.algorithm, run.data, run.device, max_rows, run.cfg.seed)
    return _dev_score(*inputs)


def _dev_score(f_src: np.ndarray, f_tgt: np.ndarray, f_val: np.ndarray, val_loss: np.ndarray) -> dict:
    """-risk of DEV from pooled features of the three splits and per-sample source-val losses."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(np.concatenate([f_src, f_tgt]))
    clf = LogisticRegression(max_iter=2000, C=1.0)
    clf.fit(scaler.transform(np.concatenate([f_src, f_tgt])),
            np.r_[np.zeros(len(f_src)), np.ones(len(f_tgt))])
    p = clf.predict_proba(scaler.transform(f_val))[:, 1].clip(1e-6, 1 - 1e-6)
    # density ratio p_t(x) / p_s(x) = (N_s / N_t) * P(target | x) / P(source | x)
    w = (len(f_src) / len(f_tgt)) * p / (1 - p)
    weighted = w * np.asarray(val_loss)
    var_w = w.var(ddof=1)
    eta = -np.cov(weighted, w)[0, 1] / var_w if var_w > 0 else 0.0
    risk = float(weighted.mean() + eta * w.mean() - eta)
    return {"score": -risk, "risk": risk, "weight_mean": float(w.mean()), "weight_max": float(w.max())}
