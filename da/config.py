"""Config files: YAML files and key=value overrides (OmegaConf) into a validated Config.

The sections `data`, `model` and `algorithm` are polymorphic: their `name` picks a registry
entry and that entry's dataclass (`da.config_schema`) is the schema for the section.
Unknown keys anywhere are an error that lists the valid names. This module sits above the
registries it reads; the registries' own modules import only `da.config_schema`.
"""

from __future__ import annotations

from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from da import normalisation
from da.algorithms import ALGORITHMS
from da.config_schema import (  # noqa: F401 - re-exported: `from da.config import ...` for users
    AlgorithmConfig,
    Config,
    ConfigError,
    DataConfig,
    ModelConfig,
    OptimConfig,
    TrainConfig,
)
from da.data import DATASETS
from da.grl import LR_SCHEDULES
from da.models import MODELS

SECTIONS = {  # polymorphic section -> (registry, base schema)
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


def resolve(raw: DictConfig, where: str = "config", overrides: list[str] = ()) -> Config:
    """Turn a raw (YAML + overrides) tree into a validated Config. `overrides` (the
    command line's key=value items) let an error name where a bad value came from."""
    sections = {}
    for section, (registry, base) in SECTIONS.items():
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
    validate(cfg, where, overrides)
    fill_normalisation(cfg, where)
    return cfg


def fill_normalisation(cfg: Config, where: str = "config") -> None:
    """An image dataset's `normalisation: auto` becomes the model's (da.normalisation), so
    the batches are scaled as the network's weights were trained; naming another is refused."""
    if not hasattr(cfg.data, "normalisation"):
        return  # not an image dataset
    wanted = normalisation.of_model(cfg.model)
    if cfg.data.normalisation == "auto":
        cfg.data.normalisation = wanted or normalisation.DEFAULT
    elif wanted and cfg.data.normalisation != wanted:
        raise ConfigError(f"{where}: data.normalisation={cfg.data.normalisation}, but model.name="
                          f"{cfg.model.name} (arch {getattr(cfg.model, 'arch', '-')}) reads inputs normalised "
                          f"as '{wanted}'; leave data.normalisation at auto")


def origin(section: str, where: str, overrides: list[str]) -> str:
    """Where a section's values came from: the command line's items for it, over the files."""
    mine = [o for o in overrides if o.split("=", 1)[0].strip().startswith(f"{section}.")]
    if not mine:
        return where
    files = where if where != "command line" else ""
    return f"command line ({' '.join(mine)})" + (f" over {files}" if files else "")


def validate(cfg: Config, where: str = "config", overrides: list[str] = ()) -> None:
    """Value checks, so a bad value fails before any run folder is written.

    A section dataclass may define `validate()` raising ValueError for its own values.
    """
    for section in ("data", "model", "algorithm"):
        check = getattr(getattr(cfg, section), "validate", None)
        if check is not None:
            try:
                check()
            except ValueError as exc:
                raise ConfigError(f"{origin(section, where, list(overrides))}: {section}: {exc}") from None

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
    if cfg.train.source_order not in ("shuffled", "fixed"):
        raise ConfigError(f"{where}: train.source_order must be shuffled or fixed, got '{cfg.train.source_order}'")
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


def load_run_config(path: str | Path, overrides: list[str] = ()) -> Config:
    """A run folder's config.yaml, written by the code of its day: a key since renamed
    (REFUSED_SPELLINGS) is read under its current name, so runs made before still load.
    `overrides` (key=value) apply after the renaming, e.g. data.path=OTHER to evaluate the
    run on another dataset."""
    raw = load_raw([path])
    for section in raw.values():
        if isinstance(section, DictConfig):
            for old, new in REFUSED_SPELLINGS.items():
                if old in section:
                    section[new] = section.pop(old)
    if overrides:
        raw = OmegaConf.merge(raw, load_raw([], overrides))
    return resolve(raw, str(path), list(overrides))


def load_config(paths: list[str | Path] | str | Path | None, overrides: list[str] = ()) -> Config:
    """Config from YAML files (merged in order) and key=value overrides, validated."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    where = " + ".join(map(str, paths or [])) or "command line"
    return resolve(load_raw(paths, overrides), where, list(overrides))


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
