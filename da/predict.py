"""Segment new inputs with a trained run: `da predict RUN_DIR INPUT --out OUT`.

The run's task decides what INPUT is:

- **3D** (segmentation3d): a point cloud in any format data_tools reads, any unit and
  orientation. It gets the preparation `python -m data_tools site3d` gives target clouds
  (`data_tools.site_dataset.prepare_site_cloud`): scale to metres (--scale S, --units U,
  or --reference-length L with --reference-points, two points picked in the cloud whose
  true distance is L metres), a unit check, levelling (`data_tools.levelling`: --up auto |
  axis | X,Y,Z, or --transform FILE) with a one-line report; then voxel grid, blocks and
  voting exactly as the run's evaluation. OUT is a cloud with the ORIGINAL coordinates, the
  predicted label of every point and its label colour (data_tools.viz colour table).
- **2D** (segmentation2d): an image or a folder of images. Each is resized to the run's
  training image size, segmented whole (sliding windows, as evaluation), and the labels
  taken back to its own size; OUT is a folder with NAME_mask.png (class ids: 0 background,
  1 main, 2 tie) and NAME_overlay.png (main red, tie green) per image.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from da import normalisation
from da.config import Config, load_run_config
from da.contracts import DomainData
from da.data.blocks import SceneDataset, prepare_scene
from da.data.rebar3d import NUM_CLASSES
from da.data.segmentation2d import SegmentationImages, overlay
from da.data.shape_features import CHANNELS_PER_RADIUS, local_shape
from da.runs import Run, load_trained
from da.tasks import TASKS
from data_tools.io import PointCloud, read_cloud, write_cloud
from data_tools.prepare import scale_from_reference
from data_tools.site_dataset import prepare_site_cloud
from data_tools.viz import label_colors

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


@dataclass
class CloudFrame:
    """How a user's cloud reaches the training frame (metres, +Z up, ground at z = 0)."""

    scale: float | None = None
    reference: tuple[np.ndarray, np.ndarray, float] | None = None  # p1, p2, true length (m)
    up: str = "auto"
    transform: np.ndarray | None = None  # 4x4; replaces `up`


def to_training_frame(cloud: PointCloud, scale: float | None = None,
                      reference: tuple[np.ndarray, np.ndarray, float] | None = None, up: str = "auto",
                      transform: np.ndarray | None = None, name: str = "input") -> PointCloud:
    """The cloud in the training frame (point order kept); see `prepared`."""
    return prepared(cloud, CloudFrame(scale, reference, up, transform), name)[0]


def prepared(cloud: PointCloud, frame: CloudFrame, name: str = "input") -> tuple[PointCloud, dict]:
    """Scaled, unit-checked and levelled as `data_tools site3d` prepares target clouds; the
    record says what was done (`report`: one line, `warnings`, `levelling`: the transform)."""
    scale = frame.scale
    if scale is not None and frame.reference is not None:
        raise ValueError("give either a scale or a reference length, not both")
    if frame.reference is not None:
        scale = scale_from_reference(*frame.reference)
    return prepare_site_cloud(cloud, Path(name), scale, frame.up, frame.transform)


def task_name(cfg: Config) -> str:
    return type(cfg.data).TASK


def predict_cloud(run: Run, cloud: PointCloud) -> np.ndarray:
    """(N,) predicted labels of a cloud already in the training frame."""
    cfg = run.cfg.data
    if cfg.colour and cloud.rgb is None:
        raise ValueError("this run uses colour as input, but the cloud has no colour")
    scene = prepare_scene("input", PointCloud(cloud.xyz, cloud.rgb), cfg.voxel)
    if cfg.shape_radii:  # the same local-shape features the model was trained on
        scene.shape = local_shape(scene.xyz, cfg.shape_radii, min_cell=cfg.voxel)
    scenes = SceneDataset([scene], cfg.block_size, cfg.num_points, cfg.colour,
                          run.data.num_classes, voxel=cfg.voxel)
    return TASKS["segmentation3d"].predict_labels(run.algorithm, scenes, 0, run.device)


def load_for_prediction(run_dir: Path, checkpoint: str = "last.pt", device: str = "cpu") -> Run:
    """The trained run, built for its inputs' shape only: no training data is read."""
    cfg = load_run_config(Path(run_dir) / "config.yaml")
    task = task_name(cfg)
    if task == "segmentation3d":
        width = 3 + 3 * cfg.data.colour + CHANNELS_PER_RADIUS * len(cfg.data.shape_radii)
        shape = DomainData(None, None, None, None, NUM_CLASSES, "coord", (width,), task=task)
    elif task == "segmentation2d":
        shape = DomainData(None, None, None, None, 3, "image", (3, cfg.data.crop, cfg.data.crop), task=task)
    else:
        raise ValueError(f"{run_dir}: a {task} run (data.name={cfg.data.name}); da predict segments clouds "
                         "(3D runs) and images (2D runs)")
    return load_trained(run_dir, checkpoint, device, data=shape)


def predict_file(run_dir: Path, cloud_path: Path, out: Path, scale: float | None = None,
                 reference: tuple[np.ndarray, np.ndarray, float] | None = None, up: str = "auto",
                 checkpoint: str = "last.pt", device: str = "cpu", transform: np.ndarray | None = None,
                 say=print) -> dict[int, int]:
    """3D: write `out` with every point of `cloud_path` labelled; returns points per label."""
    run = load_for_prediction(run_dir, checkpoint, device)
    if task_name(run.cfg) != "segmentation3d":
        raise ValueError(f"{run_dir}: not a point-cloud run (data.name={run.cfg.data.name})")
    original = read_cloud(cloud_path)
    cloud, record = prepared(original, CloudFrame(scale, reference, up, transform), str(cloud_path))
    say(f"{cloud_path}: {record['report']}")
    for w in record["warnings"]:
        say(f"warning: {w}")
    labels = predict_cloud(run, cloud)
    colours = label_colors(labels).astype(np.float32)
    write_cloud(out, PointCloud(original.xyz, colours, labels=labels))
    values, counts = np.unique(labels, return_counts=True)
    return {int(v): int(c) for v, c in zip(values, counts)}


def image_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ValueError(f"{path}: no image ({', '.join(sorted(IMAGE_SUFFIXES))}) in the folder")
        return files
    if not path.is_file():
        raise ValueError(f"{path}: no such file or folder")
    return [path]


def predict_images(run_dir: Path, inputs: Path, out_dir: Path, checkpoint: str = "last.pt",
                   device: str = "cpu") -> dict[int, int]:
    """2D: NAME_mask.png and NAME_overlay.png per image of `inputs` under `out_dir`; returns
    pixels per label over all images."""
    from PIL import Image, UnidentifiedImageError

    run = load_for_prediction(run_dir, checkpoint, device)
    if task_name(run.cfg) != "segmentation2d":
        raise ValueError(f"{run_dir}: not a 2D segmentation run (data.name={run.cfg.data.name})")
    cfg = run.cfg.data
    w, h = cfg.size
    scaling = normalisation.resolved(cfg.normalisation)
    out_dir.mkdir(parents=True, exist_ok=True)
    totals = np.zeros(3, np.int64)
    for path in image_files(Path(inputs)):
        try:
            with Image.open(path) as im:
                rgb = im.convert("RGB")
        except (UnidentifiedImageError, OSError) as exc:
            raise ValueError(f"{path}: not a readable image ({exc})") from None
        x = np.asarray(rgb.resize((w, h), Image.BILINEAR)).transpose(2, 0, 1)[None]
        ds = SegmentationImages(x, None, cfg.crop, augment=False, input_scaling=scaling)
        small = TASKS["segmentation2d"].predict_labels(run.algorithm, ds, 0, run.device).astype(np.uint8)
        labels = np.asarray(Image.fromarray(small).resize(rgb.size, Image.NEAREST))
        Image.fromarray(labels).save(out_dir / f"{path.stem}_mask.png")
        Image.fromarray(overlay(np.asarray(rgb), labels)).save(out_dir / f"{path.stem}_overlay.png")
        totals += np.bincount(labels.ravel(), minlength=3)[:3]
    return {k: int(v) for k, v in enumerate(totals)}


def predict_any(run_dir: Path, inputs: Path, out: Path, frame: CloudFrame, checkpoint: str = "last.pt",
                device: str = "cpu") -> dict[int, int]:
    """`da predict`: a cloud for a 3D run, an image or a folder of images for a 2D run."""
    cfg = load_run_config(Path(run_dir) / "config.yaml")
    if task_name(cfg) == "segmentation2d":
        return predict_images(run_dir, inputs, out, checkpoint, device)
    return predict_file(run_dir, inputs, out, frame.scale, frame.reference, frame.up, checkpoint, device,
                        frame.transform)
