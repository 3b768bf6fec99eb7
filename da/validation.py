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
import torch.nn.functional as F

from da.config import ConfigError, load_run_config
from da.run_log import read_results

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


def _array_splits(run, what: str):
    from da.data import ArrayDataset

    data = run.data
    if run.cfg.data.target_labeled:
        raise ConfigError(f"{what}: a train-on-target run reads target labels; nothing to validate")
    for split in ("source_train", "source_val", "target_train"):
        if not isinstance(getattr(data, split), ArrayDataset):
            raise ConfigError(f"{what} needs in-memory array datasets (moons, digits); "
                              f"data.name={run.cfg.data.name} is not supported yet")
    return data


@torch.no_grad()
def _predict(algorithm, dataset, device: torch.device, batch_size: int = 512):
    """Logits and pooled features over a whole split, in order, WITHOUT its training
    augmentation (pseudo-labels and density ratios describe the data, not a random view)."""
    from da.data import ArrayDataset
    from da.train import iterate, model_dtype, to_device

    plain = ArrayDataset(dataset.x, dataset.y, dataset.input_key, dataset.prepare, None)
    was_training = algorithm.training
    algorithm.eval()
    logits, feats = [], []
    for batch in iterate(plain, batch_size):
        batch = to_device(batch, device, model_dtype(algorithm))
        f = algorithm.features(batch)
        logits.append(algorithm.head(f).float().cpu())
        feats.append((f.flatten(2).mean(-1) if f.dim() > 2 else f).float().cpu())
    algorithm.train(was_training)
    return torch.cat(logits), torch.cat(feats)


@register_validator("reverse")
def reverse_validation(run_dir: Path, device: str) -> dict:
    from da.data import ArrayDataset, DomainData
    from da.train import load_trained, train

    forward = load_trained(run_dir, "last.pt", device)
    data = _array_splits(forward, "reverse validation")
    logits, _ = _predict(forward.algorithm, data.target_train, forward.device)
    pseudo = logits.argmax(1)
    tt, st = data.target_train, data.source_train
    reverse_data = DomainData(
        source_train=ArrayDataset(tt.x, pseudo, tt.input_key, tt.prepare, tt.augment),
        # the reverse run's "source_val" is its own (pseudo-labelled) training data: a
        # diagnostic only; its TARGET test is the real, labeled source_val
        source_val=ArrayDataset(tt.x, pseudo, tt.input_key, tt.prepare, None),
        target_train=ArrayDataset(st.x, None, st.input_key, st.prepare, st.augment),
        target_test=data.source_val,
        num_classes=data.num_classes, input_key=data.input_key, input_shape=data.input_shape,
        class_weights=data.class_weights)
    cfg = load_run_config(run_dir / "config.yaml")
    cfg = replace(cfg, name=f"{cfg.name}-reverse", run_dir=str(run_dir / "reverse"),
                  train=replace(cfg.train, embedding_samples=0, progress_bar=False))
    reverse_dir = train(cfg, data=reverse_data)
    last = read_results(reverse_dir)[-1]
    counts = torch.bincount(pseudo, minlength=data.num_classes).tolist()
    return {"score": _task_score(last, "target"), "reverse_run": str(reverse_dir),
            "pseudo_label_counts": counts}


@torch.no_grad()
def _predict_blocks(algorithm, dataset, device: torch.device, n: int, seed: int,
                    batch_size: int = 8) -> tuple[np.ndarray, np.ndarray | None]:
    """Pooled features (one row per block) and, when labeled, the mean per-point
    cross-entropy of each block, over up to `n` seeded blocks of a point-cloud split,
    drawn without augmentation (the same points for every run of the same seed)."""
    from da.algorithms.base import IGNORE_INDEX
    from da.train import model_dtype, to_device

    order = np.random.default_rng(seed).permutation(len(dataset))[:n]
    was_training = algorithm.training
    algorithm.eval()
    feats, losses = [], []
    for start in range(0, len(order), batch_size):
        batch = dataset.__getitems__([(int(i), seed) for i in order[start:start + batch_size]])
        batch = to_device(batch, device, model_dtype(algorithm))
        f = algorithm.features(batch)
        feats.append(f.flatten(2).mean(-1).float().cpu())
        if "label" in batch:
            loss = F.cross_entropy(algorithm.head(f).float(), batch["label"],
                                   ignore_index=IGNORE_INDEX, reduction="none")
            counted = (batch["label"] != IGNORE_INDEX).float()
            losses.append(((loss * counted).sum(1) / counted.sum(1).clamp_min(1)).cpu())
    algorithm.train(was_training)
    return torch.cat(feats).numpy(), torch.cat(losses).numpy() if losses else None


def plain_blocks(like, scenes, labeled: bool):
    """Blocks of `scenes` cut like the training BlockDataset `like`, without augmentation."""
    from da.data.blocks import BlockDataset

    return BlockDataset(scenes, like.block_size, like.stride, like.num_points, like.colour, labeled,
                        False, like.min_points, like.voxel)


def _dev_inputs_blocks(run, max_rows: int):
    """DEV's inputs for point-cloud runs: blocks of source_train, target_train and the
    source_val scenes (columns as in training, no augmentation)."""
    data = run.data
    if run.cfg.data.target_labeled:
        raise ConfigError("deep embedded validation: a train-on-target run reads target labels; nothing to validate")
    st = data.source_train
    plain = lambda scenes, labeled: plain_blocks(st, scenes, labeled)  # noqa: E731
    seed = run.cfg.seed
    f_src, _ = _predict_blocks(run.algorithm, plain(st.scenes, False), run.device, max_rows, seed)
    f_tgt, _ = _predict_blocks(run.algorithm, plain(data.target_train.scenes, False), run.device,
                               max_rows, seed)
    f_val, val_loss = _predict_blocks(run.algorithm, plain(data.source_val.scenes, True), run.device,
                                      max_rows, seed)
    return f_src, f_tgt, f_val, val_loss


@register_validator("dev")
def deep_embedded_validation(run_dir: Path, device: str, max_rows: int = 2000) -> dict:
    """Point-cloud runs are scored per block (up to max_rows blocks per split)."""
    from da.data.blocks import BlockDataset
    from da.train import load_trained

    run = load_trained(run_dir, "last.pt", device)
    rng = np.random.default_rng(run.cfg.seed)
    if isinstance(run.data.source_train, BlockDataset):  # point clouds: per block
        f_src, f_tgt, f_val, val_loss = _dev_inputs_blocks(run, max_rows)
    else:
        data = _array_splits(run, "deep embedded validation")
        _, f_src = _predict(run.algorithm, data.source_train, run.device)
        _, f_tgt = _predict(run.algorithm, data.target_train, run.device)
        val_logits, f_val = _predict(run.algorithm, data.source_val, run.device)
        f_src = f_src.numpy()[rng.permutation(len(f_src))[:max_rows]]
        f_tgt = f_tgt.numpy()[rng.permutation(len(f_tgt))[:max_rows]]
        f_val = f_val.numpy()
        loss = F.cross_entropy(val_logits, data.source_val.y, reduction="none")
        val_loss = (loss.flatten(1).mean(1) if loss.dim() > 1 else loss).numpy()  # one per sample
    return _dev_score(f_src, f_tgt, f_val, val_loss)


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
