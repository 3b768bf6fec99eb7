"""Image-classification data from ImageFolder-style directories (what users have).

A dataset folder holds one sub-folder per split, each with one sub-folder per class:

    <path>/train/<class>/*.png|jpg   labeled training images
    <path>/val/<class>/...           labeled validation images (model selection)
    <path>/test/<class>/...          labeled test images (reported only)

Classes are the sorted folder names of train/ (val/ and test/ must not add any). Images
are decoded once, resized (shorter side, then centre crop) to `image_size` and held in
memory as uint8; batches are normalised as the model's weights expect (`normalisation`,
filled from the model when `auto`: ImageNet's mean / std for torchvision's networks,
(x - 127) / 128 for EfficientNet-Lite; see da.normalisation) and, for training, randomly
flipped and shifted.

Transfer learning: `path` is the target task; its train split is the labeled stream.
Domain adaptation: `target_path` names a second folder whose train split is used WITHOUT
labels and whose test split is the reported one; `path`'s test split is then unused.
`per_class` > 0 keeps that many training images per class (seeded by data_seed): the
"small target" of the transfer table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

import da.data.transforms as transforms
from da import normalisation
from da.config_schema import DataConfig
from da.data.base import DATASETS, ArrayDataset, DomainData, dataset_folder
from da.normalisation import Normalise
from da.registry import register
from data_tools.splits import DatasetFileError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".webp"}


def read_image(path: Path, size: int) -> np.ndarray:
    """(3, size, size) uint8: shorter side resized to `size`, centre crop."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img = img.convert("RGB")
            w, h = img.size
            scale = size / min(w, h)
            img = img.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BILINEAR)
            w, h = img.size
            left, top = (w - size) // 2, (h - size) // 2
            arr = np.asarray(img.crop((left, top, left + size, top + size)), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DatasetFileError(f"{path}: unreadable image ({type(exc).__name__}: {exc})") from None
    return arr.transpose(2, 0, 1).copy()


def list_split(folder: Path, classes: list[str] | None = None) -> tuple[list[Path], list[int], list[str]]:
    """Image files and class indices of one split folder; `classes` fixes the label set."""
    if not folder.is_dir():
        raise DatasetFileError(f"{folder}: missing split folder (expected <class>/<image> inside)")
    found = sorted(d.name for d in folder.iterdir() if d.is_dir())
    if classes is None:
        classes = found
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise DatasetFileError(f"{folder}: class folder(s) {unknown} are not classes of the train split "
                               f"({', '.join(classes)})")
    files, labels = [], []
    for k, name in enumerate(classes):
        d = folder / name
        if not d.is_dir():
            continue
        imgs = sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        files += imgs
        labels += [k] * len(imgs)
    if not files:
        raise DatasetFileError(f"{folder}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in any class folder")
    return files, labels, classes


def split_class_folder(root: Path, fractions: list[float], seed: int) -> dict[str, tuple[list[Path], list[int]]]:
    """A plain folder of class folders split per class into train / val / test by
    `fractions` (shuffled with `seed`: the same split every time); each split gets at
    least one image of every class with >= 3 images."""
    files, labels, classes = list_split(root)
    rng = np.random.default_rng(seed)
    out: dict[str, tuple[list[Path], list[int]]] = {s: ([], []) for s in ("train", "val", "test")}
    for k in range(len(classes)):
        mine = [files[i] for i in rng.permutation(np.flatnonzero(np.asarray(labels) == k))]
        if len(mine) < 3:
            raise DatasetFileError(f"{root / classes[k]}: {len(mine)} image(s); a split needs at least 3 per class")
        n_val = max(1, int(round(fractions[1] * len(mine))))
        n_test = max(1, int(round(fractions[2] * len(mine))))
        parts = {"val": mine[:n_val], "test": mine[n_val:n_val + n_test], "train": mine[n_val + n_test:]}
        for split, chosen in parts.items():
            out[split][0].extend(chosen)
            out[split][1].extend([k] * len(chosen))
    return out


def has_splits(root: Path) -> bool:
    return (root / "train").is_dir()


def load_split_images(folder: Path, size: int, classes: list[str] | None = None, per_class: int = 0,
                      seed: int = 0, listed: tuple[list[Path], list[int]] | None = None
                      ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """listed: (files, labels) of a split made by `split_class_folder` instead of a folder."""
    if listed is None:
        files, labels, classes = list_split(folder, classes)
    else:
        files, labels = listed
        classes = classes or list_split(folder)[2]
    y = np.asarray(labels, np.int64)
    keep = np.arange(len(files))
    if per_class > 0:
        rng = np.random.default_rng(seed)
        keep = np.sort(np.concatenate([rng.permutation(np.flatnonzero(y == k))[:per_class]
                                       for k in range(len(classes))]))
    x = np.stack([read_image(files[i], size) for i in keep])
    return x, y[keep], classes


def augment_images(x: torch.Tensor, g: torch.Generator, max_shift: int) -> torch.Tensor:
    flip = torch.rand(x.shape[0], generator=g) < 0.5
    x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
    return transforms.random_shift(x, g, max_shift, fill=0.0) if max_shift > 0 else x


@dataclass
class ImageFolderConfig(DataConfig):
    name: str = "image_folder"
    path: str = ""  # folder with train/ val/ test/ (labeled task), or one folder per class
    # a folder of class folders (no train/): per-class shares for train, val, test, split
    # with data_seed
    split: list[float] = field(default_factory=lambda: [0.7, 0.15, 0.15])
    target_path: str = ""  # optional: a second domain, its train/ used unlabeled (DANN)
    image_size: int = 64
    per_class: int = 0  # > 0: keep this many training images per class
    data_seed: int = 0
    max_shift: int = 4  # augmentation: random translation in pixels (+ horizontal flips)
    normalisation: str = "auto"  # auto = the model's (da.normalisation) | imagenet | tf_lite

    def validate(self) -> None:
        if not self.path:
            raise ValueError("data.path must name an image folder with train/ val/ test/")
        if self.image_size < 16 or self.per_class < 0:
            raise ValueError("need image_size >= 16 and per_class >= 0")
        if len(self.split) != 3 or min(self.split) <= 0 or abs(sum(self.split) - 1) > 1e-6:
            raise ValueError(f"split: three positive shares (train, val, test) summing to 1, got {list(self.split)}")
        normalisation.check(self.normalisation)


def image_splits(root: Path, cfg: ImageFolderConfig) -> dict[str, tuple[list[Path], list[int]] | None]:
    """train / val / test of `root`: its split folders, or a seeded split of its class folders."""
    if not root.is_dir():
        raise DatasetFileError(f"{root}: no such folder (data.path)")
    if has_splits(root):
        return {"train": None, "val": None, "test": None}
    made = split_class_folder(root, list(cfg.split), cfg.data_seed)
    counts = "/".join(str(len(made[s][0])) for s in ("train", "val", "test"))
    print(f"{root}: no train/ val/ test/: split per class {'/'.join(f'{100 * f:g}' for f in cfg.split)}% "
          f"with data_seed {cfg.data_seed} ({counts} images)", flush=True)
    return made


@register(DATASETS, "image_folder", ImageFolderConfig)
def build_image_folder(cfg: ImageFolderConfig) -> DomainData:
    cfg.validate()
    root = Path(cfg.path)
    lists = image_splits(root, cfg)
    folder = (lambda split: root / split) if lists["train"] is None else (lambda split: root)  # noqa: E731
    x_tr, y_tr, classes = load_split_images(folder("train"), cfg.image_size, None, cfg.per_class, cfg.data_seed,
                                            lists["train"])
    x_va, y_va, _ = load_split_images(folder("val"), cfg.image_size, classes, listed=lists["val"])
    augment = (lambda x, g: augment_images(x, g, cfg.max_shift)) if cfg.augment else None
    if cfg.target_path:
        troot = Path(cfg.target_path)
        x_tt, y_tt, _ = load_split_images(troot / "train", cfg.image_size, classes)
        x_te, y_te, _ = load_split_images(troot / "test", cfg.image_size, classes)
        if cfg.target_labeled:  # the oracle: the target's own train labels
            x_tr, y_tr = x_tt, y_tt
    else:
        x_tt = x_tr
        x_te, y_te, _ = load_split_images(folder("test"), cfg.image_size, classes, listed=lists["test"])
    normalise = Normalise(normalisation.resolved(cfg.normalisation))
    source_train = ArrayDataset(x_tr, y_tr, "image", normalise, augment)
    return DomainData(
        source_train=source_train,
        source_val=ArrayDataset(x_va, y_va, "image", normalise, None),
        target_train=ArrayDataset(x_tt, None, "image", normalise, augment),
        target_test=ArrayDataset(x_te, y_te, "image", normalise, None),
        num_classes=len(classes), input_key="image", input_shape=(3, cfg.image_size, cfg.image_size))


@dataclass
class RenderedClassesConfig(ImageFolderConfig):
    """A built-in rendered task (data_tools.rendered_classes), built once under data.root and
    read as an image folder. `path` is ignored (the folder is named by these keys)."""

    name: str = "rendered_classes"
    task: str = "element"  # element | spacing
    train_images: int = 200  # per class
    val_images: int = 40
    test_images: int = 100
    render_size: int = 64
    views: int = 4  # images per cage
    lights: list[str] = field(default_factory=lambda: ["noon", "overcast", "morning"])
    # Domain adaptation across render presets: a second folder of the same task rendered
    # under these lights (other cages: data_seed + TARGET_SEED_OFFSET), its train split
    # unlabeled, its test split reported. Empty = a plain (transfer) task.
    target_lights: list[str] = field(default_factory=list)
    target_train_images: int = 60  # per class, unlabeled (target_labeled=true: the oracle's)
    target_test_images: int = 40

    def validate(self) -> None:
        if self.image_size < 16 or self.per_class < 0:
            raise ValueError("need image_size >= 16 and per_class >= 0")
        normalisation.check(self.normalisation)


TARGET_SEED_OFFSET = 1000  # the target domain's cages come from other seeds than the source's


@register(DATASETS, "rendered_classes", RenderedClassesConfig)
def build_rendered(cfg: RenderedClassesConfig) -> DomainData:
    from dataclasses import replace

    cfg.validate()
    if cfg.target_path:  # (checked here: the folders below are passed on as path / target_path)
        raise ValueError("rendered_classes builds its own target folder: set target_lights, not target_path")
    source = {"train": cfg.train_images, "val": cfg.val_images, "test": cfg.test_images}
    folder = rendered_folder(cfg, source, list(cfg.lights), cfg.data_seed)
    target = ""
    if cfg.target_lights:
        counts = {"train": cfg.target_train_images, "test": cfg.target_test_images}
        target = str(rendered_folder(cfg, counts, list(cfg.target_lights), cfg.data_seed + TARGET_SEED_OFFSET))
    return build_image_folder(replace(cfg, path=str(folder), target_path=target))


def rendered_folder(cfg: RenderedClassesConfig, per_class: dict[str, int], lights: list[str], seed: int) -> Path:
    from data_tools.rendered_classes import VERSIONS, build_rendered_classes

    params = dict(task=cfg.task, per_class=per_class, size=cfg.render_size, views=cfg.views, seed=seed,
                  lights=lights)
    if VERSIONS[cfg.task] > 1:  # version-1 folders were named before versions existed
        params["version"] = VERSIONS[cfg.task]
    return dataset_folder(cfg.root, f"rendered-{cfg.task}", params, build_rendered_classes)


@dataclass
class DigitsMFolderConfig(ImageFolderConfig):
    """Digits-M (sklearn digits blended with photo crops, data_tools.digits) as a built-in
    image folder under data.root: the "very different" target of the transfer table.
    `path` is ignored. train_digits / val_digits / test_digits count distinct digits per
    class (disjoint between splits, <= ~174 in all); each train digit is blended with
    `train_blends` photo crops."""

    name: str = "digits_m_folder"
    train_digits: int = 100
    val_digits: int = 20
    test_digits: int = 50
    train_blends: int = 2
    render_size: int = 64

    def validate(self) -> None:
        if self.image_size < 16 or self.per_class < 0 or self.train_blends < 1:
            raise ValueError("need image_size >= 16, per_class >= 0 and train_blends >= 1")
        normalisation.check(self.normalisation)


@register(DATASETS, "digits_m_folder", DigitsMFolderConfig)
def build_digits_m(cfg: DigitsMFolderConfig) -> DomainData:
    from dataclasses import replace

    from data_tools.digits import build_digits_m_folder

    cfg.validate()
    params = dict(per_class={"train": cfg.train_digits, "val": cfg.val_digits, "test": cfg.test_digits},
                  image_size=cfg.render_size, seed=cfg.data_seed, train_blends=cfg.train_blends)
    folder = dataset_folder(cfg.root, "digits-m", params, build_digits_m_folder)
    return build_image_folder(replace(cfg, path=str(folder)))
