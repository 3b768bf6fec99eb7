"""2D semantic segmentation data: whole images in memory, crops to train, full-resolution evaluation.

`SegmentationImages` holds uint8 images (N, 3, H, W) and masks (N, H, W) (255 = ignore):

- training batches (`augment=True`) are random `crop` x `crop` crops with horizontal flips,
  image and mask cropped together, seeded by the batch key (exact resume); with
  `focus_share` > 0 that share of the crops is centred on a random pixel of the rarest
  class (ties: ~0.2% of source pixels, so a uniform 128 px crop holds one rarely) -
  class-balanced crop sampling; only labeled splits can do it (targets stay uniform);
  with `color_jitter` > 0 each training crop also gets a random photometric change
  (`photometric_jitter`: gamma, contrast, brightness, per-channel gain - the kind of
  change a low warm sun, wet steel and under-exposure make), the mask untouched;
  with `geometric` > 0 each training crop is instead SAMPLED through a random affine map
  about its centre (`random_affine`: rotation, zoom, foreshortening along a random axis -
  what another distance, elevation and azimuth do to a bar's apparent width and
  direction), image bilinear and mask nearest through the same map, reflected at the
  image border (image and mask alike, so reflected pixels keep true labels);
- unaugmented batches (validators, PAD features) are deterministic centre crops;
- `predict` (what evaluation reports) runs the model over every WHOLE image with sliding
  windows of `crop` px (overlap 1/4, logits averaged where windows overlap), so thin
  ties are judged at the resolution they were rendered at.

Datasets: `rebar2d` (rendered by data_tools.rebar2d, cached under data.root);
`mask_folder` and `coco_segmentation` (real data: data_tools.segmentation_files) as a
labeled source with an optional unlabeled target folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch.utils.data import Dataset

from da import normalisation
from da.config_schema import DataConfig
from da.data.base import DATASETS, DomainData, dataset_folder
from da.normalisation import Normalise
from da.registry import register

IGNORE = 255


CLASS_COLOURS = np.array([[0, 0, 0], [230, 60, 50], [60, 220, 80]], np.uint8)  # bg, main, tie


def overlay(image: np.ndarray, labels: np.ndarray, alpha: float = 0.6) -> np.ndarray:
    """(H, W, 3) uint8: rebar pixels tinted by class (red main, green tie), background as is."""
    out = image.astype(np.float32)
    rebar = (labels > 0) & (labels != IGNORE)
    colours = CLASS_COLOURS[np.clip(labels, 0, len(CLASS_COLOURS) - 1)].astype(np.float32)
    out[rebar] = (1 - alpha) * out[rebar] + alpha * colours[rebar]
    return out.round().astype(np.uint8)


def photometric_jitter(x: torch.Tensor, strength: float, g: torch.Generator) -> torch.Tensor:
    """(3, H, W) uint8 (or 0..255 float) -> float 0..255, one random photometric change:
    gamma exp(+-0.5 s), contrast about the crop's mean exp(+-0.5 s), brightness exp(+-s),
    per-channel gain exp(+-0.4 s) (s = strength; 0.5 spans brightness x0.61..x1.65)."""
    u = (torch.rand(6, generator=g) * 2 - 1) * strength  # 6 numbers: the same stream always
    v = (x.float() / 255.0).clamp_min(0.0) ** torch.exp(0.5 * u[0])
    mean = v.mean()
    v = mean + (v - mean) * torch.exp(0.5 * u[1])
    v = v * torch.exp(u[2]) * torch.exp(0.4 * u[3:6]).view(3, 1, 1)
    return v.clamp(0.0, 1.0) * 255.0


def random_affine(strength: float, g: torch.Generator) -> torch.Tensor:
    """(2, 2): output crop offsets (px) -> source image offsets (px), one random view change.
    With s = strength: rotation +-90 s degrees; zoom exp(+-0.6 s) (s = 0.5: x0.74..x1.35,
    the spread of the presets' pixels per metre); foreshortening: x(1 - 0.7 s .. 1) along a
    random axis (s = 0.5: down to x0.65, a plane seen 50 degrees off its normal)."""
    u = torch.rand(4, generator=g)  # 4 numbers: the same stream always
    theta = (u[0] * 2 - 1) * (torch.pi / 2) * strength
    zoom = torch.exp((u[1] * 2 - 1) * 0.6 * strength)
    squash = 1.0 - 0.7 * strength * u[2]
    phi = u[3] * torch.pi

    def rot(a: torch.Tensor) -> torch.Tensor:
        c, s = torch.cos(a), torch.sin(a)
        return torch.stack([torch.stack([c, -s]), torch.stack([s, c])])

    # content shrinks by `squash` along phi: one output px spans 1/squash source px there
    shrink = rot(phi) @ torch.diag(torch.stack([1.0 / squash, torch.tensor(1.0)])) @ rot(-phi)
    return (shrink @ rot(theta)) / zoom


def warped_crop(image: torch.Tensor, mask: torch.Tensor | None, centre: tuple[float, float], crop: int,
                matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A crop x crop view of (3, H, W) `image` (and (H, W) `mask`) about `centre` (row, col):
    output pixel offset d from the crop centre shows source pixel centre + matrix @ d.
    Image bilinear, mask nearest (labels are never blended), both reflected at the border."""
    h, w = image.shape[1:]
    half = (crop - 1) / 2
    axis = torch.arange(crop, dtype=torch.float32) - half
    dy, dx = torch.meshgrid(axis, axis, indexing="ij")
    offsets = torch.stack([dy.flatten(), dx.flatten()])  # (2, crop^2), (row, col)
    src = matrix.float() @ offsets + torch.tensor(centre, dtype=torch.float32).view(2, 1)
    # grid_sample wants (x, y) in [-1, 1] with align_corners=True: -1 = first pixel centre
    grid = torch.stack([src[1] / (w - 1) * 2 - 1, src[0] / (h - 1) * 2 - 1], -1).view(1, crop, crop, 2)
    x = torch.nn.functional.grid_sample(image[None].float(), grid, mode="bilinear",
                                        padding_mode="reflection", align_corners=True)[0]
    y = None
    if mask is not None:
        y = torch.nn.functional.grid_sample(mask[None, None].float(), grid, mode="nearest",
                                            padding_mode="reflection", align_corners=True)[0, 0].long()
    return x, y


class SegmentationImages(Dataset):
    def __init__(self, images: np.ndarray, masks: np.ndarray | None, crop: int, augment: bool,
                 num_classes: int = 3, input_key: str = "image", focus_share: float = 0.0,
                 color_jitter: float = 0.0, geometric: float = 0.0, input_scaling: str = "imagenet"):
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (N, 3, H, W), got {images.shape}")
        if masks is not None and masks.shape != (images.shape[0], *images.shape[2:]):
            raise ValueError(f"masks {masks.shape} do not match images {images.shape}")
        if crop > min(images.shape[2:]):
            raise ValueError(f"crop {crop} is larger than the images ({images.shape[3]}x{images.shape[2]})")
        self.images = torch.as_tensor(images)
        self.masks = None if masks is None else torch.as_tensor(masks).long()
        self.crop, self.augment, self.num_classes, self.input_key = crop, augment, num_classes, input_key
        if not 0.0 <= focus_share <= 1.0:
            raise ValueError(f"focus_share must be in [0, 1], got {focus_share}")
        self.focus_share = focus_share if masks is not None else 0.0
        self.focus = self._rare_pixels() if self.focus_share > 0 else []
        if color_jitter < 0:
            raise ValueError(f"color_jitter must be >= 0, got {color_jitter}")
        self.color_jitter = color_jitter if augment else 0.0
        if not 0.0 <= geometric <= 1.0:
            raise ValueError(f"geometric must be in [0, 1], got {geometric}")
        self.geometric = geometric if augment else 0.0
        self.normalise = Normalise(input_scaling)  # the model's (da.normalisation)

    def _rare_pixels(self, keep: int = 4096) -> list[torch.Tensor]:
        """Per image, (n, 2) (row, col) of up to `keep` pixels of the rarest class present
        in the whole split (evenly subsampled: deterministic)."""
        counts = torch.bincount(self.masks[self.masks < self.num_classes].flatten(), minlength=self.num_classes)
        present = [k for k in range(1, self.num_classes) if counts[k] > 0]
        if not present:
            return [torch.zeros(0, 2, dtype=torch.long) for _ in range(len(self.masks))]
        rare = min(present, key=lambda k: int(counts[k]))
        out = []
        for m in self.masks:
            rc = (m == rare).nonzero()
            out.append(rc[:: max(1, len(rc) // keep)])
        return out

    def __len__(self) -> int:
        return len(self.images)

    def __getitems__(self, keys: list[tuple[int, int]]) -> dict[str, torch.Tensor]:
        h, w = self.images.shape[2:]
        c = self.crop
        g = torch.Generator().manual_seed(keys[0][1])
        xs, ys = [], []
        for i, _ in keys:
            if self.augment:
                top = int(torch.randint(0, h - c + 1, (1,), generator=g))
                left = int(torch.randint(0, w - c + 1, (1,), generator=g))
                flip = bool(torch.rand(1, generator=g) < 0.5)
                focus = bool(torch.rand(1, generator=g) < self.focus_share)  # drawn always: same stream
                pick = int(torch.randint(0, 1 << 30, (1,), generator=g))
                if focus and len(self.focus[i]):
                    r, q = self.focus[i][pick % len(self.focus[i])].tolist()
                    top, left = min(max(r - c // 2, 0), h - c), min(max(q - c // 2, 0), w - c)
            else:
                top, left, flip = (h - c) // 2, (w - c) // 2, False
            if self.geometric > 0:  # drawn only when on: runs without it keep their stream
                mask = None if self.masks is None else self.masks[i]
                centre = (top + (c - 1) / 2, left + (c - 1) / 2)
                x, y = warped_crop(self.images[i], mask, centre, c, random_affine(self.geometric, g))
            else:
                x = self.images[i, :, top:top + c, left:left + c]
                y = None if self.masks is None else self.masks[i, top:top + c, left:left + c]
            if flip:
                x = x.flip(-1)
                y = None if y is None else y.flip(-1)
            if self.color_jitter > 0:  # drawn only when on: runs without it keep their stream
                x = photometric_jitter(x, self.color_jitter, g)
            xs.append(x)
            ys.append(y)
        batch = {self.input_key: self.normalise(torch.stack(xs))}
        if self.masks is not None:
            batch["label"] = torch.stack(ys)
        return batch

    def __getitem__(self, key):
        batch = self.__getitems__([key if isinstance(key, tuple) else (key, 0)])
        return {k: v[0] for k, v in batch.items()}

    def whole_image(self, i: int) -> torch.Tensor:
        """(1, 3, H, W) image i, normalised as the model reads it (for sliding-window inference)."""
        return self.normalise(self.images[i:i + 1])


def class_weights(masks: np.ndarray, k: int) -> torch.Tensor:
    """1/sqrt(pixel frequency), normalised to mean 1 (the 3D recipe): thin ties count."""
    counts = np.bincount(masks[masks != IGNORE].ravel(), minlength=k)[:k].astype(np.float64)
    w = 1.0 / np.sqrt(np.maximum(counts / max(counts.sum(), 1), 1e-6))
    return torch.tensor(w / w.mean(), dtype=torch.float32)


def stacked(samples: list[tuple[np.ndarray, np.ndarray | None, str]]):
    """(N, 3, H, W) images and (N, H, W) masks (None when unlabeled) of same-size samples."""
    x = np.stack([img.transpose(2, 0, 1) for img, _, _ in samples])
    masks = [m for _, m, _ in samples if m is not None]
    return x, (np.stack(masks) if masks else None)


def read_split(folder: Path, split: str, with_masks: bool, mask_dir: Path | None = None):
    """images/*.png (+ masks/*.png, or mask_dir) of one split of a rebar2d folder."""
    from data_tools.segmentation_files import read_image_folder, read_mask_folder

    if not with_masks:
        return stacked(read_image_folder(folder / split))
    identity = {k: k for k in range(3)}  # rendered masks already hold our classes
    return stacked(read_mask_folder(folder / split, identity, mask_dir))


@dataclass
class Rebar2dConfig(DataConfig):
    TASK: ClassVar[str] = "segmentation2d"
    name: str = "rebar2d"
    shift: str = "time"  # assembly | time | position | all (data_tools.rebar2d.SHIFTS); or:
    source: str = ""  # ASSEMBLY/TIME/POSITION (both set: they replace `shift`)
    target: str = ""
    images: list[int] = field(default_factory=lambda: [60, 16, 60, 20])  # per split, in SPLITS order
    size: list[int] = field(default_factory=lambda: [512, 512])  # rendered W, H
    views: int = 2
    data_seed: int = 0
    crop: int = 192  # training crops and evaluation windows, px
    focus_share: float = 0.0  # share of labeled training crops centred on a tie pixel
    color_jitter: float = 0.0  # photometric augmentation of training crops (0 = off; 0.5 = strong)
    geometric: float = 0.0  # random affine view change of training crops (0 = off; 0.5 = strong)
    normalisation: str = "auto"  # auto = the model's (da.normalisation) | imagenet | tf_lite

    def validate(self) -> None:
        from data_tools.rebar2d import SHIFTS

        normalisation.check(self.normalisation)
        if bool(self.source) != bool(self.target):
            raise ValueError("data.source and data.target go together (or neither: data.shift)")
        if not self.source and self.shift not in SHIFTS:
            raise ValueError(f"data.shift must be one of {', '.join(SHIFTS)}, got '{self.shift}'")
        if len(self.images) != 4 or min(self.images) < 1:
            raise ValueError("data.images: 4 positive counts (source_train, source_val, target_train, target_test)")
        if self.crop < 32 or self.crop % 32:
            raise ValueError("data.crop must be a multiple of 32 (the encoder downsamples 32x)")
        if not 0.0 <= self.focus_share <= 1.0:
            raise ValueError(f"data.focus_share must be in [0, 1], got {self.focus_share}")
        if self.color_jitter < 0:
            raise ValueError(f"data.color_jitter must be >= 0, got {self.color_jitter}")
        if not 0.0 <= self.geometric <= 1.0:
            raise ValueError(f"data.geometric must be in [0, 1], got {self.geometric}")


@register(DATASETS, "rebar2d", Rebar2dConfig)
def build_rebar2d_data(cfg: Rebar2dConfig) -> DomainData:
    from data_tools.rebar2d import SHIFTS, SPLITS, VERSION, build_rebar2d

    cfg.validate()
    source, target = (cfg.source, cfg.target) if cfg.source else SHIFTS[cfg.shift]
    params = dict(source=source, target=target, images=dict(zip(SPLITS, cfg.images)), size=list(cfg.size),
                  views=cfg.views, seed=cfg.data_seed)
    folder = dataset_folder(cfg.root, f"rebar2d-v{VERSION}", params, build_rebar2d)
    manifest = json.loads((folder / "manifest.json").read_text())
    k = len(manifest["classes"])
    x_tr, y_tr = read_split(folder, "source_train", True)
    x_va, y_va = read_split(folder, "source_val", True)
    x_tt, _ = read_split(folder, "target_train", False)
    x_te, y_te = read_split(folder, "target_test", True)
    if cfg.target_labeled:  # the oracle: target_train with its masks from oracle_labels/
        x_tr, y_tr = read_split(folder, "target_train", True, folder / "oracle_labels" / "target_train")

    def wrap(x, y, train):
        return SegmentationImages(x, y, cfg.crop, augment=train and cfg.augment, num_classes=k,
                                  focus_share=cfg.focus_share if train else 0.0,
                                  color_jitter=cfg.color_jitter if train else 0.0,
                                  geometric=cfg.geometric if train else 0.0,
                                  input_scaling=normalisation.resolved(cfg.normalisation))

    return DomainData(source_train=wrap(x_tr, y_tr, True), source_val=wrap(x_va, y_va, False),
                      target_train=wrap(x_tt, None, True), target_test=wrap(x_te, y_te, False),
                      num_classes=k, input_key="image", input_shape=(3, cfg.crop, cfg.crop),
                      class_weights=class_weights(y_tr, k), task=cfg.TASK)


def resized(samples: list[tuple[np.ndarray, np.ndarray | None, str]], size: list[int]):
    """(N, 3, H, W) uint8 images and (N, H, W) masks at size W x H (bilinear / nearest)."""
    from PIL import Image

    w, h = size
    xs, ys = [], []
    for img, mask, _ in samples:
        xs.append(np.asarray(Image.fromarray(img).resize((w, h), Image.BILINEAR)).transpose(2, 0, 1))
        if mask is not None:
            ys.append(np.asarray(Image.fromarray(mask).resize((w, h), Image.NEAREST)))
    return np.stack(xs), (np.stack(ys) if ys else None)


@dataclass
class SegFilesConfig(DataConfig):
    """Real segmentation data: `path` holds train/ val/ test/, each an image folder with
    PNG masks (images/ + masks/) or, with `coco`, images/ + annotations.json. `classes`
    maps the files' category ids (or COCO names) to ours (0 bg, 1 main, 2 tie, 255 ignore).
    `target_path` (optional): a second domain with train/images (used WITHOUT masks) and,
    optionally, test/ (reported; without it only source metrics are reported). Images are resized to `size` (W, H) so batches stack."""

    TASK: ClassVar[str] = "segmentation2d"
    name: str = "seg_files"
    path: str = ""
    target_path: str = ""
    coco: bool = False
    # empty = ids already ours (0, 1, 2); a dict default would MERGE with a user's table
    classes: dict = field(default_factory=dict)
    size: list[int] = field(default_factory=lambda: [512, 512])
    crop: int = 192
    normalisation: str = "auto"  # auto = the model's (da.normalisation) | imagenet | tf_lite

    def validate(self) -> None:
        normalisation.check(self.normalisation)
        if not self.path:
            raise ValueError("data.path must name a folder with train/ val/ test/")
        if any(int(v) not in (0, 1, 2, IGNORE) for v in self.classes.values()):
            raise ValueError(f"data.classes must map to 0, 1, 2 or 255, got {self.classes}")


def _read_split(cfg: SegFilesConfig, folder: Path, labeled: bool):
    from data_tools.segmentation_files import read_coco, read_image_folder, read_mask_folder

    classes = cfg.classes or {0: 0, 1: 1, 2: 2}
    if not labeled:
        return resized(read_image_folder(folder), cfg.size)
    if cfg.coco:
        table = {(int(k) if str(k).isdigit() else k): int(v) for k, v in classes.items()}
        samples = read_coco(folder / "annotations.json", folder / "images", table)
    else:
        samples = read_mask_folder(folder, {int(k): int(v) for k, v in classes.items()})
    return resized(samples, cfg.size)


@register(DATASETS, "seg_files", SegFilesConfig)
def build_seg_files(cfg: SegFilesConfig) -> DomainData:
    cfg.validate()
    root = Path(cfg.path)
    x_tr, y_tr = _read_split(cfg, root / "train", True)
    x_va, y_va = _read_split(cfg, root / "val", True)
    troot = Path(cfg.target_path) if cfg.target_path else None
    x_tt, _ = _read_split(cfg, troot / "train", False) if troot else (x_tr, None)
    test_dir = (troot or root) / "test"
    # a target without a labeled test (a user's site photos): only source metrics are reported
    x_te, y_te = _read_split(cfg, test_dir, True) if troot is None or test_dir.exists() else (None, None)
    if cfg.target_labeled:
        if troot is None:
            raise ValueError("data.target_labeled needs data.target_path")
        x_tr, y_tr = _read_split(cfg, troot / "train", True)

    def wrap(x, y, train):
        return SegmentationImages(x, y, cfg.crop, augment=train and cfg.augment,
                                  input_scaling=normalisation.resolved(cfg.normalisation))

    return DomainData(source_train=wrap(x_tr, y_tr, True), source_val=wrap(x_va, y_va, False),
                      target_train=wrap(x_tt, None, True),
                      target_test=None if x_te is None else wrap(x_te, y_te, False), num_classes=3, input_key="image", input_shape=(3, cfg.crop, cfg.crop),
                      class_weights=class_weights(y_tr, 3), task=cfg.TASK)
