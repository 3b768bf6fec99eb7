"""Digits -> Digits-M: a small, fully offline analogue of MNIST -> MNIST-M.

Source: scikit-learn's 1,797 real handwritten digits (8x8, 17 grey levels), upscaled and
padded MNIST-style to 28x28. Target: *other* digits blended with random crops of real
colour photos shipped in scikit-image / scikit-learn, out = |patch - digit| per channel
(the MNIST-M recipe). Source, target-train and target-test use disjoint digits.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from scipy.ndimage import zoom

from data_tools.splits import write_dataset

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry",
          "hubble_deep_field", "retina", "stereo_motorcycle")


def load_photos() -> list[np.ndarray]:
    """Real colour photos (H, W, 3) uint8 that ship inside the installed packages."""
    import skimage.data
    from sklearn.datasets import load_sample_images

    photos = []
    for name in PHOTOS:
        img = getattr(skimage.data, name)()
        photos.append(img[0] if isinstance(img, tuple) else img)  # stereo pairs: left view
    photos.extend(load_sample_images().images)
    return [p[..., :3] for p in photos]


def upscale_digits(images: np.ndarray, size: int = 28) -> np.ndarray:
    """(N, 8, 8) in 0..16 -> (N, size, size) float in [0, 1]; digit box = 20/28 of the image."""
    box = round(size * 20 / 28)
    pad = (size - box) // 2
    out = np.zeros((len(images), size, size), np.float32)
    for i, img in enumerate(images):
        big = zoom(img.astype(np.float32) / 16.0, box / 8.0, order=1)
        out[i, pad : pad + box, pad : pad + box] = np.clip(big[:box, :box], 0.0, 1.0)
    return out


def blend_with_photos(digits: np.ndarray, photos: list[np.ndarray], copies: int,
                      rng: np.random.Generator) -> np.ndarray:
    """|patch - digit| per channel for `copies` random photo crops per digit -> (N*copies, 3, S, S)."""
    n, size, _ = digits.shape
    out = np.empty((n * copies, 3, size, size), np.float32)
    for k in range(n * copies):
        photo = photos[rng.integers(len(photos))]
        r = rng.integers(photo.shape[0] - size)
        c = rng.integers(photo.shape[1] - size)
        patch = photo[r : r + size, c : c + size].astype(np.float32) / 255.0
        out[k] = np.abs(patch - digits[k % n][:, :, None]).transpose(2, 0, 1)
    return out


def to_uint8(x: np.ndarray) -> np.ndarray:
    return np.round(np.clip(x, 0.0, 1.0) * 255).astype(np.uint8)


def build_digits(
    out_dir: str | Path,
    image_size: int = 28,
    source_train: int = 750,
    source_val: int = 150,
    target_train: int = 600,
    target_train_blends: int = 1,
    target_test_blends: int = 4,
    seed: int = 0,
) -> Path:
    """Writes the four splits; the digits left after source and target-train form target-test."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(digits.images))
    n_src = source_train + source_val
    if n_src + target_train >= len(order):
        raise ValueError(f"only {len(order)} digits: source {n_src} + target-train {target_train} "
                         "leaves none for target-test")
    parts = {
        "source_train": order[:source_train],
        "source_val": order[source_train:n_src],
        "target_train": order[n_src : n_src + target_train],
        "target_test": order[n_src + target_train :],
    }
    photos = load_photos()
    arrays = {}
    for split, idx in parts.items():
        grey = upscale_digits(digits.images[idx], image_size)
        labels = digits.target[idx].astype(np.int64)
        if split.startswith("source"):
            x = np.repeat(grey[:, None], 3, axis=1)
        else:
            copies = target_train_blends if split == "target_train" else target_test_blends
            x = blend_with_photos(grey, photos, copies, rng)
            labels = np.tile(labels, copies)
        arrays[f"{split}/x"], arrays[f"{split}/y"] = to_uint8(x), labels
    manifest = {"dataset": "digits", "image_size": image_size, "seed": seed, "num_classes": 10,
                "photos": list(PHOTOS) + ["sklearn china", "sklearn flower"],
                "target_train_blends": target_train_blends, "target_test_blends": target_test_blends}
    return write_dataset(out_dir, arrays, manifest)


def build_digits_m_folder(out_dir: str | Path, per_class: dict[str, int], image_size: int = 64,
                          seed: int = 0, train_blends: int = 1) -> Path:
    """Digits-M as an ImageFolder task (<out>/{train,val,test}/<digit>/*.png): the "very
    different" target of the transfer table. Each split uses its own digits (disjoint
    sklearn images, so the per-class digit counts of all splits sum to <= ~174); images are
    blended at 28 px, then resized to `image_size`. per_class counts DIGITS; the train split
    blends each of its digits with `train_blends` different photo crops (val / test: one),
    which is how the large target reaches 200 images per class from sklearn's ~180 digits."""
    from PIL import Image
    from sklearn.datasets import load_digits

    from data_tools.atomic import atomic_folder

    digits = load_digits()
    rng = np.random.default_rng(seed)
    photos = load_photos()
    by_class = {k: rng.permutation(np.flatnonzero(digits.target == k)) for k in range(10)}
    need = sum(per_class.values())
    short = [k for k, idx in by_class.items() if len(idx) < need]
    if short:
        raise ValueError(f"digits {short} have fewer than {need} images for {per_class}")
    with atomic_folder(out_dir) as tmp:
        start = 0
        for split, n in per_class.items():
            for k in range(10):
                idx = by_class[k][start:start + n]
                copies = train_blends if split == "train" else 1
                x = to_uint8(blend_with_photos(upscale_digits(digits.images[idx], 28), photos, copies, rng))
                folder = tmp / split / str(k)
                folder.mkdir(parents=True)
                for i, img in enumerate(x):  # blend_with_photos repeats the whole array per copy
                    name = f"{int(idx[i % n]):04d}_{i // n}.png"
                    Image.fromarray(img.transpose(1, 2, 0)).resize((image_size, image_size), Image.BILINEAR) \
                        .save(folder / name)
            start += n
        (tmp / "manifest.json").write_text(json.dumps(
            {"task": "digits_m", "per_class": per_class, "image_size": image_size, "seed": seed,
             "train_blends": train_blends}))
    return Path(out_dir)
