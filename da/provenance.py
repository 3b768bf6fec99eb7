"""Where a run came from: code version, packages, machine, seeds, command."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import torch

PACKAGES = ("torch", "torchvision", "numpy", "scipy", "open3d", "tensorboard", "omegaconf",
            "scikit-learn", "scikit-image")


def git_state(repo: Path | None = None) -> dict:
    repo = repo or Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True,
                              timeout=10).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        # Result tables are rewritten by the runs themselves: they don't make the code dirty.
        dirty = bool(git("status", "--porcelain", "--", ".", ":(exclude)experiments/results"))
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "", False
    return {"commit": commit or "unknown", "dirty": dirty}


def package_versions() -> dict:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def machine(device: torch.device | None = None) -> dict:
    info = {"host": platform.node(), "platform": platform.platform(), "processor": platform.machine(),
            "cpu_model": cpu_model(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    if device is not None and device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def cpu_model() -> str:
    """The CPU's model name with its family / model numbers and whether it has AVX-512, from
    /proc/cpuinfo where there is one. Machines of one kind differ (AMD EPYC of two
    generations, Intel Xeon) and a virtual machine's name alone ("AMD EPYC") does not say
    which: the same code and seeds have given different last bits on two "AMD EPYC"s."""
    try:
        info: dict[str, str] = {}
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            info.setdefault(key.strip(), value.strip())
        if "model name" in info:
            detail = [f"family {info[k]}" if k == "cpu family" else f"model {info[k]}"
                      for k in ("cpu family", "model") if k in info]
            if "avx512f" in info.get("flags", "").split():
                detail.append("AVX-512")
            return info["model name"] + (f" ({', '.join(detail)})" if detail else "")
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine_summary() -> str:
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{platform.machine()} {cpu_model()}, {os.cpu_count()} CPU cores, {gpu}, torch {torch.__version__}"


def provenance(seed: int, data_seed: int | None, device: torch.device) -> dict:
    return {
        "git": git_state(),
        "packages": package_versions(),
        "machine": machine(device),
        "device": str(device),
        # run: model init, dropout, data order and augmentation; data: dataset generation
        "seeds": {"run": seed, "data": data_seed},
        "command": " ".join(sys.argv),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
