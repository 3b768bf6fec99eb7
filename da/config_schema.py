"""The config dataclasses and ConfigError: a leaf module every registry may import.

The sections `data`, `model` and `algorithm` of a `Config` are polymorphic: each registry
entry (a dataset, a model, an algorithm) subclasses DataConfig, ModelConfig or
AlgorithmConfig with its own keys. Loading, merging and validating files lives in
`da.config`, which sits above the registries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar


class ConfigError(ValueError):
    """A config file or override is invalid; the message names the file / key and the fix."""


@dataclass
class DataConfig:
    TASK: ClassVar[str] = "classification"  # the da.tasks entry that reads its splits (not a key)
    name: str = "moons"
    root: str = "data"  # where data_tools writes generated datasets
    augment: bool = False
    # Train on labeled target data instead of source ("train on target" / oracle row).
    target_labeled: bool = False


@dataclass
class ModelConfig:
    name: str = "mlp"


@dataclass
class AlgorithmConfig:
    name: str = "source_only"
    label_smoothing: float = 0.0  # of the task cross-entropy
    dice_weight: float = 0.0  # + this x soft Dice loss (mean over classes): rare classes' IoU


@dataclass
class OptimConfig:
    name: str = "sgd"  # sgd | adam | adamw (decoupled weight decay)
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "dann"  # dann (mu_0 / (1 + alpha p)^beta) | cosine | constant
    alpha: float = 10.0
    beta: float = 0.75
    feature_lr_mult: float = 1.0  # lr multiplier of the pretrained part (the feature extractor, or the U-Net encoder)
    grad_clip: float = 0.0  # max global grad norm; 0 = off
    amp: bool = False  # mixed precision (CUDA only; ignored on CPU)
    amp_dtype: str = "bfloat16"  # bfloat16 (no loss scaling needed) | float16 (with a GradScaler)


@dataclass
class TrainConfig:
    steps: int = 1000
    batch_size: int = 64  # per domain: a DANN step sees batch_size source + batch_size target
    eval_every: int = 250
    checkpoint_every: int = 250
    log_every: int = 50
    num_workers: int = 0
    embedding_samples: int = 300  # per domain, for TensorBoard's projector at the end; 0 = off
    progress_bar: bool = True
    dtype: str = "float32"  # float32 | float64 (numerics checks; AMP needs float32)
    # shuffled: a fresh permutation of the source examples every epoch; fixed: the dataset's
    # own order every epoch, as the DANN authors' per-example two-moons script runs it.
    # The target is shuffled either way.
    source_order: str = "shuffled"
    # Start from trained weights: a run folder (its checkpoints/last.pt) or a .pt file.
    # Feature extractor and task head must match exactly; modules the checkpoint lacks
    # (a new domain classifier, a teacher) start fresh. Read at step 0 only: a resumed
    # run continues from its own checkpoint.
    init_from: str = ""
    # Speed switches; none changes what is computed beyond float rounding (all RUNTIME_KEYS
    # of da.train: a resumed run may flip them). experiments/bench_runtime_switches.py
    # measures each on this machine; all off by default because none helps on the CPU.
    compile: bool = False  # torch.compile the feature extractor and task head (needs a C compiler)
    channels_last: bool = False  # NHWC memory format for image models and batches
    pin_memory: bool = False  # page-locked batches for faster host-to-GPU copies (CUDA only)
    # Under torchrun: one BatchNorm statistic over all ranks' samples (CUDA only: torch's
    # SyncBatchNorm has no CPU kernel). Off = per-rank statistics.
    sync_batchnorm: bool = False


@dataclass
class Config:
    name: str = "run"
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    run_dir: str = ""  # empty: runs/<name>/seed<seed>
    data: Any = None
    model: Any = None
    algorithm: Any = None
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
