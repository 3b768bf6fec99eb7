"""MNIST-M by the DANN paper's recipe, from the real MNIST and the colour photos that ship offline.

Ganin & Lempitsky (2015) built MNIST-M by blending every MNIST digit with a random patch of
a BSDS500 photo: out = |patch - digit| per channel. BSDS500 (500 photos) is not available
here; the photos are the ten colour photos that ship inside scikit-image and scikit-learn
(`data_tools.digits.PHOTOS` + China and Flower), the same list as Digits-M. RECIPE and the
photo list were fixed before any MNIST -> MNIST-M run and are not to be changed after
reading a result: a change makes another dataset (the folder records both).

Fewer photos make a narrower target: 10 photos give fewer distinct textures and colours
than 500, so a network can learn the backgrounds' statistics more easily - the task may
be easier for DANN (fewer modes to align) or harder for source-only (a few strong colour
casts), and numbers are not the paper's MNIST-M to the digit.

Written in the layout `data_tools.digit_files.read_mnistm` reads (what the original
MNIST-M release holds):

    ROOT/mnist_m/mnist_m_{train,test}/NNNNNNNN.png   28 x 28 RGB
    ROOT/mnist_m/mnist_m_{train,test}_labels.txt     "NNNNNNNN.png LABEL" per line
    ROOT/mnist_m/recipe.json                         recipe, photos, seed, counts

train blends MNIST's 60,000 training digits, test its 10,000 test digits, one patch each.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from data_tools.atomic import atomic_folder
from data_tools.digits import PHOTOS, blend_with_photos, load_photos

RECIPE = {"blend": "abs(patch - digit) per channel", "patch": "uniform random 28x28 crop of a uniformly "
          "chosen photo", "digit": "MNIST grey levels / 255, broadcast to 3 channels", "copies": 1,
          "photos": [*PHOTOS, "sklearn china", "sklearn flower"], "seed": 0}


def blend_split(images: np.ndarray, photos: list[np.ndarray], rng: np.random.Generator,
                chunk: int = 5000) -> np.ndarray:
    """(N, 28, 28, 1) uint8 MNIST digits -> (N, 28, 28, 3) uint8 MNIST-M images."""
    out = np.empty((len(images), 28, 28, 3), np.uint8)
    for start in range(0, len(images), chunk):
        digits = images[start:start + chunk, :, :, 0].astype(np.float32) / 255.0
        blended = blend_with_photos(digits, photos, 1, rng)  # (n, 3, 28, 28) in [0, 1]
        out[start:start + chunk] = np.round(blended.transpose(0, 2, 3, 1) * 255.0).astype(np.uint8)
    return out


def build_mnistm(root: str | Path, mnist_root: str | Path | None = None, seed: int = RECIPE["seed"],
                 limit: int | None = None) -> Path:
    """Write ROOT/mnist_m from MNIST (read by data_tools.digit_files: ROOT/mnist or the
    installed copy); `limit` keeps the first digits of each split (tests)."""
    from PIL import Image

    from data_tools.digit_files import read_mnist

    root = Path(root)
    photos = load_photos()
    rng = np.random.default_rng(seed)
    out_dir = root / "mnist_m"
    counts = {}
    with atomic_folder(out_dir) as tmp:
        for split in ("train", "test"):
            images, labels = read_mnist(Path(mnist_root) if mnist_root else root, split)
            if limit:
                images, labels = images[:limit], labels[:limit]
            blended = blend_split(images, photos, rng)
            folder = tmp / f"mnist_m_{split}"
            folder.mkdir()
            lines = []
            for i, (img, label) in enumerate(zip(blended, labels)):
                name = f"{i:08d}.png"
                Image.fromarray(img).save(folder / name)
                lines.append(f"{name} {int(label)}")
            (tmp / f"mnist_m_{split}_labels.txt").write_text("\n".join(lines) + "\n")
            counts[split] = len(lines)
        (tmp / "recipe.json").write_text(json.dumps({**RECIPE, "seed": seed, "counts": counts}, indent=1) + "\n")
    return out_dir
