"""A Run: data, algorithm and optimisation built from a config - or from a run folder.

`build_run` is what the trainer starts from; `load_trained` rebuilds a finished (or
interrupted) run with its weights, for evaluation, validators, figures and `da predict`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from da import checkpoint
from da.algorithms import Algorithm, build_algorithm
from da.config import Config, ConfigError, load_run_config
from da.contracts import DomainData
from da.data import build_data
from da.grl import LR_SCHEDULES
from da.models import build_model


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"device={name!r} is not a device name (auto | cpu | cuda | cuda:N): {exc}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name} asked for, but CUDA is not available here")
    return device



@dataclass
class Run:
    """Everything built from a config: data, algorithm, optimisation."""

    cfg: Config
    device: torch.device
    data: DomainData
    algorithm: Algorithm
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler


def build_run(cfg: Config, device: torch.device, data: DomainData | None = None) -> Run:
    """Data, algorithm and optimisation from a config; `data` given = reuse it (e.g. a
    stand-in carrying only num_classes / input_shape when predicting on new clouds)."""
    checkpoint.seed_everything(cfg.seed)
    data = build_data(cfg.data) if data is None else data
    parts = build_model(cfg.model, data)
    algorithm = build_algorithm(cfg.algorithm, parts.feature_extractor, parts.task_head)
    algorithm = algorithm.to(device, dtype=DTYPES[cfg.train.dtype])
    algorithm.class_weights = data.class_weights  # None = plain cross-entropy
    slow = parts.slow_parameters if parts.slow_parameters is not None else algorithm.feature_parameters()
    feature_ids = {id(p) for p in slow}
    groups = [
        {"params": slow, "lr": cfg.optim.lr * cfg.optim.feature_lr_mult},
        {"params": [p for p in algorithm.parameters() if id(p) not in feature_ids], "lr": cfg.optim.lr},
    ]
    if cfg.optim.name == "sgd":
        optimizer = torch.optim.SGD(groups, momentum=cfg.optim.momentum, weight_decay=cfg.optim.weight_decay)
    elif cfg.optim.name == "adamw":
        optimizer = torch.optim.AdamW(groups, weight_decay=cfg.optim.weight_decay)
    else:
        optimizer = torch.optim.Adam(groups, weight_decay=cfg.optim.weight_decay)
    schedule = LR_SCHEDULES[cfg.optim.schedule]
    steps, alpha, beta = cfg.train.steps, cfg.optim.alpha, cfg.optim.beta
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: schedule(s / steps, alpha=alpha, beta=beta))
    scaler = torch.amp.GradScaler(device.type, enabled=use_scaler(cfg, device))
    return Run(cfg, device, data, algorithm, optimizer, scheduler, scaler)


def use_amp(cfg: Config, device: torch.device) -> bool:
    return cfg.optim.amp and device.type == "cuda"


def use_scaler(cfg: Config, device: torch.device) -> bool:
    """Loss scaling is for float16 only: bfloat16 has float32's exponent range."""
    return use_amp(cfg, device) and cfg.optim.amp_dtype == "float16"


# train.dtype: float64 exists to check that a result does not hinge on float32 rounding.
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def load_trained(run_dir: Path, checkpoint_name: str = "last.pt", device: str = "cpu",
                 data: DomainData | None = None, overrides: list[str] = ()) -> Run:
    """Rebuild a finished (or interrupted) run from its folder, weights loaded, in eval mode.
    `overrides`: data.* keys only (the weights fix the rest), e.g. data.path=OTHER_DATASET."""
    run_dir = Path(run_dir)
    wrong = [o for o in overrides if not o.startswith("data.")]
    if wrong:
        raise ValueError(f"only data.* keys can change for a trained run (the checkpoint fixes the "
                         f"rest), got: {' '.join(wrong)}")
    cfg = load_run_config(run_dir / "config.yaml", overrides)
    dev = resolve_device(device)
    run = build_run(cfg, dev, data)
    ckpt = checkpoint.load(run_dir / "checkpoints" / checkpoint_name, dev)
    run.algorithm.load_state_dict(ckpt["model"])
    run.algorithm.eval()
    return run
