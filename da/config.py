"""Dataclass configs, YAML files and key=value overrides (OmegaConf), with strict keys.

The sections `data`, `model` and `algorithm` are polymorphic: their `name` picks a registry
entry and that entry's dataclass is the schema for the section. Unknown keys anywhere are
an error that lists the valid names.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException


class ConfigError(ValueError):
    """A config file or override is invalid; the message names the file / key and the fix."""


@dataclass
class DataConfig:
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


def _registries() -> dict[str, tuple[dict, type]]:
    # Imported lazily: the registries' modules import the base classes above.
    from da.algorithms import ALGORITHMS
    from da.data import DATASETS
    from da.models import MODELS

    return {
        "data": (DATASETS, DataConfig),
        "model": (MODELS, ModelConfig),
        "algorithm": (ALGORITHMS, AlgorithmConfig),
    }


# One spelling per setting: the other one is refused with the right one named.
REFUSED_SPELLINGS = {"colour_jitter": "color_jitter"}


def _check_keys(raw: Any, schema: Any, prefix: str, where: str) -> None:
    """Reject keys the schema doesn't have, naming the valid ones."""
    if not isinstance(raw, DictConfig):
        return
    valid = [f.name for f in fields(schema)]
    for key in raw:
        path = f"{prefix}{key}"
        if key in REFUSED_SPELLINGS and REFUSED_SPELLINGS[key] in valid:
            raise ConfigError(f"{where}: '{path}' is spelled '{prefix}{REFUSED_SPELLINGS[key]}' (one spelling "
                              "for every dataset)")
        if key not in valid:
            raise ConfigError(
                f"{where}: unknown config key '{path}'; valid keys for "
                f"'{prefix or 'top level'}' ({type(schema).__name__}): {', '.join(valid)}"
            )
        value = getattr(schema, key)
        if is_dataclass(value):
            _check_keys(raw[key], value, f"{path}.", where)


def resolve(raw: DictConfig, where: str = "config") -> Config:
    """Turn a raw (YAML + overrides) tree into a validated Config."""
    sections = {}
    for section, (registry, base) in _registries().items():
        node = raw.get(section) if isinstance(raw, DictConfig) else None
        if node is not None and not isinstance(node, DictConfig):
            raise ConfigError(f"{where}: '{section}' must be a mapping, got {node!r}")
        name = node.get("name", base.name) if node is not None else base.name
        if not isinstance(name, str) or name not in registry:  # a list for a name: found by config fuzzing
            raise ConfigError(
                f"{where}: unknown {section}.name '{name}'; registered: {', '.join(sorted(registry))}"
            )
        sections[section] = registry[name].config()
    schema = Config(**sections)
    _check_keys(raw, schema, "", where)
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), raw)
        cfg = OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"{where}: {exc}") from None
    validate(cfg, where)
    fill_normalisation(cfg, where)
    return cfg


def fill_normalisation(cfg: Config, where: str = "config") -> None:
    """An image dataset's `normalisation: auto` becomes the model's (da.normalisation), so
    the batches are scaled as the network's weights were trained; naming another is refused."""
    from da import normalisation

    if not hasattr(cfg.data, "normalisation"):
        return  # not an image dataset
    wanted = normalisation.of_model(cfg.model)
    if cfg.data.normalisation == "auto":
        cfg.data.normalisation = wanted or normalisation.DEFAULT
    elif wanted and cfg.data.normalisation != wanted:
        raise ConfigError(f"{where}: data.normalisation={cfg.data.normalisation}, but model.name="
                          f"{cfg.model.name} (arch {getattr(cfg.model, 'arch', '-')}) reads inputs normalised "
                          f"as '{wanted}'; leave data.normalisation at auto")


def validate(cfg: Config, where: str = "config") -> None:
    """Value checks, so a bad value fails before any run folder is written.

    A section dataclass may define `validate()` raising ValueError for its own values.
    """
    from da.grl import LR_SCHEDULES

    for section in ("data", "model", "algorithm"):
        check = getattr(getattr(cfg, section), "validate", None)
        if check is not None:
            try:
                check()
            except ValueError as exc:
                raise ConfigError(f"{where}: {section}: {exc}") from None

    if cfg.optim.name not in ("sgd", "adam", "adamw"):
        raise ConfigError(f"{where}: optim.name must be sgd, adam or adamw, got '{cfg.optim.name}'")
    if not 0 <= cfg.algorithm.label_smoothing < 1 or cfg.algorithm.dice_weight < 0:
        raise ConfigError(f"{where}: algorithm.label_smoothing must be in [0, 1) and "
                          "algorithm.dice_weight >= 0")
    if cfg.optim.schedule not in LR_SCHEDULES:
        raise ConfigError(f"{where}: optim.schedule must be one of {sorted(LR_SCHEDULES)}")
    if cfg.train.steps < 1 or cfg.train.batch_size < 1:
        raise ConfigError(f"{where}: train.steps and train.batch_size must be >= 1")
    if cfg.optim.amp_dtype not in ("bfloat16", "float16"):
        raise ConfigError(f"{where}: optim.amp_dtype must be bfloat16 or float16, got '{cfg.optim.amp_dtype}'")
    if cfg.train.num_workers < 0:
        raise ConfigError(f"{where}: train.num_workers must be >= 0, got {cfg.train.num_workers}")
    if not cfg.optim.lr > 0 or cfg.optim.weight_decay < 0 or cfg.optim.grad_clip < 0:
        raise ConfigError(f"{where}: optim.lr must be > 0, optim.weight_decay and optim.grad_clip >= 0")
    if cfg.train.dtype not in ("float32", "float64"):
        raise ConfigError(f"{where}: train.dtype must be float32 or float64, got '{cfg.train.dtype}'")
    for key in ("eval_every", "checkpoint_every", "log_every"):
        if getattr(cfg.train, key) < 1:
            raise ConfigError(f"{where}: train.{key} must be >= 1")


def load_raw(paths: list[str | Path] | str | Path | None, overrides: list[str] = ()) -> DictConfig:
    """Merge YAML files in order (later ones win), then key=value overrides."""
    if paths is None:
        paths = []
    elif isinstance(paths, (str, Path)):
        paths = [paths]
    raw = OmegaConf.create({})
    for path in map(Path, paths):
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            layer = OmegaConf.load(path)
        except Exception as exc:  # yaml.YAMLError and friends
            raise ConfigError(f"{path}: not a valid YAML config: {exc}") from None
        if not isinstance(layer, DictConfig):
            raise ConfigError(f"{path}: a config file must hold a mapping at the top level")
        raw = OmegaConf.merge(raw, layer)
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise ConfigError(f"overrides must look like key=value, got: {' '.join(bad)}")
    try:
        cli = OmegaConf.from_dotlist(list(overrides))
    except OmegaConfBaseException as exc:
        raise ConfigError(f"bad override: {exc}") from None
    return OmegaConf.merge(raw, cli)


def load_run_config(path: str | Path) -> Config:
    """A run folder's config.yaml, written by the code of its day: a key since renamed
    (REFUSED_SPELLINGS) is read under its current name, so runs made before still load."""
    raw = load_raw([path])
    for section in raw.values():
        if isinstance(section, DictConfig):
            for old, new in REFUSED_SPELLINGS.items():
                if old in section:
                    section[new] = section.pop(old)
    return resolve(raw, str(path))


def load_config(paths: list[str | Path] | str | Path | None, overrides: list[str] = ()) -> Config:
    """Config from YAML files (merged in order) and key=value overrides, validated."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    where = " + ".join(map(str, paths or [])) or "command line"
    return resolve(load_raw(paths, overrides), where)


def to_yaml(cfg: Config) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def to_flat_dict(cfg: Config) -> dict[str, Any]:
    """Dotted keys -> scalar values (lists as strings), for TensorBoard hparams."""
    out: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        for key, value in node.items():
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}.")
            else:
                out[f"{prefix}{key}"] = value if isinstance(value, (int, float, str, bool)) else str(value)

    walk(OmegaConf.to_container(OmegaConf.structured(cfg)), "")
    return out


def run_dir_of(cfg: Config) -> Path:
    return Path(cfg.run_dir) if cfg.run_dir else Path("runs") / cfg.name / f"seed{cfg.seed}"
