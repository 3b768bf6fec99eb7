"""Two-moons toy of the DANN paper (JMLR 2016 Sec. 5.1.1).

Source: two interleaving moons (150 points each). Target: the same distribution rotated
by 35 degrees about the data's centre; 300 unlabeled training points and a separate
labeled test sample.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.datasets import make_moons

from data_tools.splits import write_dataset

# Centre of sklearn's moons (x in [-1, 2], y in [-0.5, 1]); rotating about it keeps the
# target overlapping the source, as in the paper's figure.
CENTRE = np.array([0.5, 0.25])


def rotate(x: np.ndarray, degrees: float) -> np.ndarray:
    a = np.deg2rad(degrees)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return (x - CENTRE) @ rot.T + CENTRE


def sample(n: int, noise: float, rng: np.random.Generator, degrees: float = 0.0):
    x, y = make_moons(n_samples=n, noise=noise, random_state=int(rng.integers(2**31)))
    return rotate(x, degrees).astype(np.float32), y.astype(np.int64)


def build_moons(
    out_dir: str | Path,
    per_moon: int = 150,
    target_train: int = 300,
    target_test: int = 1000,
    source_val: int = 300,
    rotation: float = 35.0,
    noise: float = 0.1,
    seed: int = 0,
) -> Path:
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n, deg in (
        ("source_train", 2 * per_moon, 0.0),
        ("source_val", source_val, 0.0),
        ("target_train", target_train, rotation),
        ("target_test", target_test, rotation),
    ):
        arrays[f"{split}/x"], arrays[f"{split}/y"] = sample(n, noise, rng, deg)
    manifest = {"dataset": "moons", "per_moon": per_moon, "rotation": rotation, "noise": noise,
                "seed": seed, "num_classes": 2}
    return write_dataset(out_dir, arrays, manifest)
