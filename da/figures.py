"""Figures drawn after a table, by name (a table's `figure:` key)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

FIGURES: dict[str, Callable[[dict, Path], Path]] = {}


def figure(name: str) -> Callable:
    def decorator(fn: Callable) -> Callable:
        FIGURES[name] = fn
        return fn

    return decorator


def make_figure(name: str, result: dict, path: Path) -> Path:
    if name not in FIGURES:
        raise KeyError(f"unknown figure '{name}'; known: {', '.join(sorted(FIGURES))}")
    return FIGURES[name](result, path)


@figure("moons_boundaries")
def moons_boundaries(result: dict, path: Path) -> Path:
    """Decision boundaries of the first seed of each row over source and target points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from da.runs import load_trained

    rows = [r for r in result["rows"] if r["role"] in ("source_only", "adapted")]
    fig, axes = plt.subplots(1, len(rows), figsize=(5 * len(rows), 4.5), squeeze=False)
    for ax, row in zip(axes[0], rows):
        run = load_trained(Path(row["run_dirs"][0]))
        src = run.data.source_train.all()
        tgt = run.data.target_test.all()
        pts = torch.cat([src["x"], tgt["x"]])
        lo, hi = (pts.min(0).values - 0.3).tolist(), (pts.max(0).values + 0.3).tolist()
        gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], 300), np.linspace(lo[1], hi[1], 300))
        grid = torch.tensor(np.stack([gx.ravel(), gy.ravel()], 1), dtype=torch.float32)
        with torch.no_grad():
            prob = run.algorithm.predict({"x": grid}).softmax(1)[:, 1].reshape(gx.shape).numpy()
            acc = (run.algorithm.predict({"x": tgt["x"]}).argmax(1) == tgt["label"]).float().mean()
        ax.contourf(gx, gy, prob, levels=[0, 0.5, 1], colors=["#f4d6d6", "#d6e4f4"], alpha=0.8)
        ax.contour(gx, gy, prob, levels=[0.5], colors="k", linewidths=1.5)
        for label, colour in ((0, "#c0392b"), (1, "#2a6fb0")):
            s = src["x"][src["label"] == label]
            ax.scatter(s[:, 0], s[:, 1], s=10, c=colour, marker="+", label=f"source class {label}")
        ax.scatter(tgt["x"][:, 0], tgt["x"][:, 1], s=6, c="#444444", alpha=0.35, label="target (unlabeled)")
        ax.set_title(f"{row['name']} (seed {row['seeds'][0]}): target acc {float(acc):.3f}")
        ax.set_aspect("equal")
    axes[0][0].legend(loc="lower left", fontsize=7)
    fig.suptitle(f"Two moons, target rotated 35°: {result['command']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
