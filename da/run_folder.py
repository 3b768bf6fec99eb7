"""A run folder holds one config: what differs between a saved config and today's.

A resumed run must have been started with the same settings (RUNTIME_KEYS aside, which
change how a run executes, not what it computes); a finished run is not reused by a
command whose config changed.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from da.config import Config, ConfigError, load_run_config, to_flat_dict

# Keys that change how a run executes, not what it computes: a resumed run may differ here.
RUNTIME_KEYS = ("device", "train.progress_bar", "train.num_workers", "run_dir", "train.compile",
                "train.channels_last", "train.pin_memory")


def config_differences(saved: str | Path, cfg: Config) -> list[str]:
    """The keys (dotted) whose values differ between a saved config - a config.yaml or its
    text - and `cfg`, ignoring RUNTIME_KEYS. The saved config is resolved with today's code
    first, so a key added since (at its default value, which computes what the old code
    did) is no difference. Raises ConfigError if the saved config no longer loads."""
    if isinstance(saved, Path):
        old = load_run_config(saved)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "config.yaml"
            path.write_text(saved)
            old = load_run_config(path)
    a, b = to_flat_dict(old), to_flat_dict(cfg)
    skip = set(RUNTIME_KEYS)
    return sorted(k for k in set(a) | set(b) if k not in skip and a.get(k) != b.get(k))


def check_run_dir(run_dir: Path, cfg: Config) -> None:
    """A folder holds one config: refuse to resume a run whose settings changed."""
    saved = run_dir / "config.yaml"
    if not saved.exists():
        return
    try:
        changed = config_differences(saved, cfg)
    except ConfigError as exc:
        raise ConfigError(f"{run_dir} holds a run whose config no longer loads ({exc}); choose another "
                          "name= / run_dir=, or delete the folder to start over") from None
    if changed:
        raise ConfigError(f"{run_dir} holds a run with a different config ({saved}; differs in "
                          f"{', '.join(changed[:6])}); choose another name= / run_dir=, or delete the "
                          "folder to start over")
