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


def load_split_images(folder: Path, size: int, classes: list[str] | None = None, per_class: int = 0,
                      seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    files, labels, classes = list_split(folder, classes)
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
    path: str = ""  # folder with train/ val/ test/ (labeled task)
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
        normalisation.check(self.normalisation)


@register(DATASETS, "image_folder", ImageFolderConfig)
def build_image_folder(cfg: ImageFolderConfig) -> DomainData:
    cfg.validate()
    root = Path(cfg.path)
    x_tr, y_tr, classes = load_split_images(root / "train", cfg.image_size, None, cfg.per_class, cfg.data_seed)
    x_va, y_va, _ = load_split_images(root / "val", cfg.image_size, classes)
    augment = (lambda x, g: augment_images(x, g, cfg.max_shift)) if cfg.augment else None
    if cfg.target_path:
        troot = Path(cfg.target_path)
        x_tt, y_tt, _ = load_split_images(troot / "train", cfg.image_size, classes)
        x_te, y_te, _ = load_split_images(troot / "test", cfg.image_size, classes)
        if cfg.target_labeled:  # the oracle: the target's own train labels
            x_tr, y_tr = x_tt, y_tt
    else:
        x_tt = x_tr
        x_te, y_te, _ = load_split_images(root / "test", cfg.image_size, classes)
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
