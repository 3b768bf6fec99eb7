"""Atomic checkpoints with everything a bit-exact resume needs."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch


def save_atomic(obj: Any, path: Path) -> None:
    """torch.save to a temporary file in the same folder, then rename over the target, so a
    kill during the write leaves the previous checkpoint intact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the run; the message names the file."""


def load(path: Path, device: torch.device | str = "cpu") -> dict:
    try:
        return torch.load(path, map_location=device, weights_only=False)
    except Exception as exc:
        raise CheckpointError(f"{path}: cannot read checkpoint ({type(exc).__name__}: {exc}); "
                              "delete it to restart the run from scratch") from None


# What a training checkpoint (checkpoints/last.pt) holds; best.pt and exported weights hold less.
RESUME_KEYS = ("model", "optimizer", "scheduler", "scaler", "source_loader", "target_loader", "rng",
               "step", "best_source_val", "sums", "count")


def check_resumable(ckpt: object, path: Path) -> None:
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: not a training checkpoint (a {type(ckpt).__name__}, not a dict)")
    missing = [k for k in RESUME_KEYS if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path}: not a training checkpoint (lacks {', '.join(missing)}); "
                              "delete it to restart the run")


def load_model_state(module: torch.nn.Module, state: dict, path: Path) -> None:
    """load_state_dict that names the file and the first mismatching tensors; nothing is
    loaded unless every tensor fits (never a silent partial load)."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state)
                   if not isinstance(state[k], torch.Tensor) or tuple(state[k].shape) != tuple(own[k].shape))
    if missing or unexpected or wrong:
        raise CheckpointError(
            f"{path}: its model does not fit this run (missing {missing[:4]}, unexpected {unexpected[:4]}, "
            f"other shapes {wrong[:4]}); it was written for another model or algorithm - delete it "
            "to restart the run")
    module.load_state_dict(state)


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


# Parts of an Algorithm that an initial checkpoint must provide; anything else it lacks
# (domain classifiers, teachers, ...) keeps its fresh initialisation.
REQUIRED_PARTS = ("feature_extractor.", "task_head.")


def init_weights(module: torch.nn.Module, source: str | Path) -> tuple[Path, list[str]]:
    """Load model weights from a run folder (checkpoints/last.pt) or a checkpoint file into
    `module`; returns the file read and the parts of the checkpoint left out. Missing
    feature-extractor / task-head tensors, model tensors the module does not have, or
    shapes that differ are errors naming the file - never a silent partial load of the
    model. What the source run's ALGORITHM added beside the model (a domain classifier, a
    mean teacher) is left out when this module has no such part, and named in the return
    value: AdaBN after DANN or self-training starts from their feature extractor and head."""
    path = Path(source)
    if path.is_dir():
        path = path / "checkpoints" / "last.pt"
    if not path.is_file():
        raise FileNotFoundError(f"train.init_from: {path} does not exist (train that run first)")
    state = load(path, "cpu")
    state = state.get("model", state) if isinstance(state, dict) else state
    own = module.state_dict()
    own_parts = {k.split(".", 1)[0] for k in own}
    # a top-level part of the checkpoint this algorithm does not have at all
    foreign = sorted({k.split(".", 1)[0] for k in state if not k.startswith(REQUIRED_PARTS)}
                     - own_parts)
    state = {k: v for k, v in state.items() if k.split(".", 1)[0] not in foreign}
    unexpected = sorted(k for k in state if k not in own)
    missing = sorted(k for k in own if k not in state and k.startswith(REQUIRED_PARTS))
    wrong = sorted(k for k in state if k in own and tuple(state[k].shape) != tuple(own[k].shape))
    if unexpected or missing or wrong:
        raise ValueError(f"{path}: does not fit this model (unexpected {unexpected[:5]}, missing "
                         f"{missing[:5]}, other shapes {wrong[:5]}); init_from needs the same "
                         "backbone and inputs")
    module.load_state_dict(state, strict=False)
    return path, foreign
