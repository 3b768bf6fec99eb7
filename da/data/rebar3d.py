"""The 3D rebar dataset: BIM-sampled source clouds -> photogrammetric target clouds.

Reads what ``python -m data_tools rebar3d`` writes (see data_tools/target_dataset.py):
`data.path` names such a folder, or (empty) the folder is built once under `data.root`
from the generation keys (scenes, mode, preset, data_seed, ...). Every cloud is voxel-
downsampled (`voxel`) and cached as .npz beside the dataset (`<folder>/prepared-<voxel>/`),
so later runs skip the slow part of loading multi-million-point target clouds.

Splits: source_train -> training blocks (labeled); target_train -> training blocks
WITHOUT labels (the files have none); source_val and target_test -> whole scenes, voted.
With `target_labeled=true` (the train-on-target oracle) the labeled stream is
target_train with the ground truth of `oracle_labels/`, which no other run reads.

Class imbalance: main bars and ties are ~25% and ~5% of source points. The task loss is
weighted per class by 1 / sqrt(frequency) over source_train (normalised to mean 1 over
points) - a weighted loss rather than weighted sampling, because every block mixes all
classes, so sampling blocks cannot rebalance points; the square root (not full inverse
frequency) keeps ties from dominating, which on noisy target clouds turns background
blobs into "tie". `class_weighting: none` switches it off.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

import da.data.shape_features as shape_features
from da.config_schema import DataConfig
from da.data.base import DATASETS, DomainData, dataset_folder
from da.data.blocks import BlockDataset, Scene, SceneDataset, prepare_scene
from da.registry import register
from data_tools.artefact_ranges import RANDOMISED, SIMULATED_SOURCES
from data_tools.io import PointCloud, read_cloud
from data_tools.rebar.cages import ELEMENTS
from data_tools.splits import DatasetFileError, read_manifest

NUM_CLASSES = 3  # 0 background, 1 main rebar, 2 tie; 255 ignore


@dataclass
class Rebar3dConfig(DataConfig):
    TASK: ClassVar[str] = "segmentation3d"
    name: str = "rebar3d"
    path: str = ""  # an existing dataset folder; empty = build from the keys below
    scenes: int = 12
    mode: str = "fast"  # mvs | fast | sfm | sfm_true_poses (data_tools.target_dataset.MODES)
    walk: str = "walk_around"  # sfm modes only: the walk-around capture (WALK_AROUND_PRESETS)
    preset: str = "typical"  # reconstruction preset (mild, typical, harsh)
    capture: str = "noon"  # capture preset (render.PRESETS): light, or the camera ring
    data_seed: int = 0
    density: float = 20000.0  # source points per m^2
    image_size: list[int] = field(default_factory=list)  # [W, H]; empty = the preset's
    n_views: int = 0  # camera positions; 0 = the preset's
    voxel: float = 0.01  # m; both domains are downsampled to this grid
    block_size: float = 1.0  # m, side of the square XY columns
    train_stride: float = 0.5  # m, spacing of training columns (overlapping)
    num_points: int = 1024  # points per block
    colour: bool = False  # rgb as an input feature
    # local-shape feature radii in metres (da.data.shape_features); empty = xyz only
    shape_radii: list[float] = field(default_factory=list)
    class_weighting: str = "inverse_sqrt"  # inverse_sqrt | none
    # Simulated photogrammetry of the source cages (data_tools.target_dataset.simulate_source),
    # added to the labeled training scenes; empty = none. typical | harsh are CALIBRATED (the
    # fast model's presets fitted to mvs: target-domain calibration); mild is hand-set;
    # randomised draws each scene's parameters from committed prior ranges (no calibration,
    # data_tools.artefact_ranges).
    simulated_source: str = ""
    # processes that build the dataset folder on first use; not in its name: the files are
    # the same for any number
    build_workers: int = 1

    def validate(self) -> None:
        from data_tools.target_dataset import MODES
        from data_tools.walk_around import WALK_AROUND_PRESETS

        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got '{self.mode}'")
        if self.walk not in WALK_AROUND_PRESETS:
            raise ValueError(f"walk must be one of {', '.join(WALK_AROUND_PRESETS)}, got '{self.walk}'")
        if self.class_weighting not in ("inverse_sqrt", "none"):
            raise ValueError(f"class_weighting must be inverse_sqrt or none, got '{self.class_weighting}'")
        if not (0 < self.train_stride <= self.block_size) or self.voxel <= 0 or self.num_points < 1:
            raise ValueError("need voxel > 0, num_points >= 1 and 0 < train_stride <= block_size")
        if self.shape_radii and min(self.shape_radii) <= 0:
            raise ValueError(f"shape_radii must be positive, got {self.shape_radii}")
        if self.simulated_source and self.simulated_source not in SIMULATED_SOURCES:
            raise ValueError(f"simulated_source must be {', '.join(SIMULATED_SOURCES)} or empty, "
                             f"got '{self.simulated_source}'")
        if self.simulated_source and self.target_labeled:
            raise ValueError("simulated_source adds to the SOURCE training scenes; the train-on-target "
                             "oracle (target_labeled=true) does not use it")
        if self.image_size and len(self.image_size) != 2:
            raise ValueError(f"image_size must be [W, H], got {self.image_size}")
        if self.build_workers < 1:
            raise ValueError(f"build_workers must be >= 1, got {self.build_workers}")


def dataset_dir(cfg: Rebar3dConfig) -> Path:
    if cfg.path:
        folder = Path(cfg.path)
        if not (folder / "manifest.json").is_file():
            raise DatasetFileError(f"{folder}: no manifest.json - not a rebar3d dataset "
                                   "(write one with `python -m data_tools rebar3d`)")
        return folder
    from data_tools.target_dataset import build_rebar3d

    params = dict(scenes=cfg.scenes, mode=cfg.mode, preset=cfg.preset, capture=cfg.capture,
                  seed=cfg.data_seed,
                  density=cfg.density, image_size=list(cfg.image_size) or None,
                  n_views=cfg.n_views or None)
    if cfg.mode.startswith("sfm"):  # only there, so the mvs / fast folders keep their names
        params["walk"] = cfg.walk
    return dataset_folder(cfg.root, f"rebar3d-{cfg.mode}", params,
                          partial(build_rebar3d, workers=cfg.build_workers))


def _labels_file(folder: Path, split: str, entry: dict) -> Path | None:
    if split == "target_test":
        return folder / "target_test" / entry["labels_file"]
    if split == "target_train":
        return folder / "oracle_labels" / f"scene_{entry['index']:04d}_labels.npy"
    return None  # source splits and simulated source: labels are in the PLY


def _cache_path(folder: Path, split: str, entry: dict, labeled: bool, voxel: float) -> Path:
    return folder / f"prepared-{voxel:g}" / split / f"{Path(entry['file']).stem}{'-l' if labeled else ''}.npz"


def load_scene(folder: Path, split: str, entry: dict, labeled: bool, voxel: float) -> Scene:
    """One cloud of the dataset, voxel-downsampled, from the cache when present."""
    ply = folder / split / entry["file"]
    cache = _cache_path(folder, split, entry, labeled, voxel)
    if cache.is_file():
        with np.load(cache) as z:
            arrays = {k: z[k] for k in z.files}
        as64 = lambda k: None if k not in arrays else arrays[k].astype(np.int64)  # noqa: E731
        return Scene(str(ply), arrays["xyz"], arrays.get("rgb"), as64("labels"), as64("index"),
                     as64("original_labels"))
    cloud = read_cloud(ply)
    if labeled:
        labels = cloud.labels
        path = _labels_file(folder, split, entry)
        if path is not None:
            if not path.is_file():
                raise DatasetFileError(f"{path}: label file missing for {ply}")
            labels = np.load(path)
            if labels.shape != (len(cloud),):
                raise DatasetFileError(f"{path}: {labels.shape[0] if labels.ndim else 0} labels for "
                                       f"{len(cloud)} points of {ply}")
        if labels is None:
            raise DatasetFileError(f"{ply}: no label property")
        bad = ~np.isin(labels, (0, 1, 2, 255))
        if bad.any():
            raise DatasetFileError(f"{ply}: label {int(labels[bad][0])} is not one of 0, 1, 2, 255")
        cloud = PointCloud(cloud.xyz, cloud.rgb, labels=labels.astype(np.int64))
    else:
        cloud = PointCloud(cloud.xyz, cloud.rgb)  # unlabeled means unlabeled
    scene = prepare_scene(str(ply), cloud, voxel)
    _save_cache(cache, scene)
    return scene


def _save_cache(path: Path, scene: Scene) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    small = lambda a, t: None if a is None else a.astype(t)  # noqa: E731  (labels <= 255)
    arrays = {k: v for k, v in (("xyz", scene.xyz), ("rgb", scene.rgb),
                                ("labels", small(scene.labels, np.uint8)),
                                ("index", small(scene.index, np.int32)),
                                ("original_labels", small(scene.original_labels, np.uint8)))
              if v is not None}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)  # atomic: a killed run never leaves a torn cache file


def load_split(folder: Path, manifest: dict, split: str, labeled: bool, voxel: float,
               shape_radii: list[float] | None = None) -> list[Scene]:
    entries = manifest.get("splits", {}).get(split)
    if not entries:
        raise DatasetFileError(f"{folder / 'manifest.json'}: no scenes in split '{split}'")
    scenes = []
    for i, e in enumerate(entries):
        start = time.perf_counter()
        cached = _cache_path(folder, split, e, labeled, voxel).is_file()
        scene = load_scene(folder, split, e, labeled, voxel)
        scene.element = str(e.get("element", ""))
        if shape_radii:
            scene.shape = load_shape(folder, split, e, scene, voxel, shape_radii)
        if not cached:  # a big site cloud takes a while: say what is going on
            print(f"prepared {split} {i + 1}/{len(entries)}: {e['file']} ({len(scene.index):,} points -> "
                  f"{len(scene.xyz):,} voxels of {voxel:g} m, {time.perf_counter() - start:.1f} s)", flush=True)
        scenes.append(scene)
    return scenes


def load_shape(folder: Path, split: str, entry: dict, scene: Scene, voxel: float,
               radii: list[float]) -> np.ndarray:
    """Local-shape features of a prepared scene, cached beside its voxel cache."""
    tag = "-".join(f"{r:g}" for r in radii)
    cache = folder / f"prepared-{voxel:g}" / split / f"{Path(entry['file']).stem}-shape-{tag}.npy"
    if cache.is_file():
        try:
            shape = np.load(cache)
        except (ValueError, OSError, EOFError):  # unreadable: a cache, so computed again
            shape = None
        if shape is not None and shape.shape == (len(scene.xyz),
                                                 shape_features.CHANNELS_PER_RADIUS * len(radii)):
            return shape
    shape = shape_features.local_shape(scene.xyz, radii, min_cell=voxel)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(f".{cache.name}.{os.getpid()}.tmp.npy")
    np.save(tmp, shape)
    os.replace(tmp, cache)  # atomic, as the voxel cache
    return shape


def simulated_scenes(folder: Path, cfg: Rebar3dConfig) -> list[Scene]:
    """The dataset's simulated-photogrammetry source scenes (built once, on first use).
    typical / harsh ones are target-calibrated (their folder's manifest says so), randomised
    ones not."""
    from data_tools.target_dataset import (
        randomised_is_current,
        simulate_source,
        simulated_source_dir,
    )

    sim = simulated_source_dir(folder, cfg.simulated_source)
    if cfg.simulated_source == RANDOMISED and sim.exists() and not randomised_is_current(folder):
        # rebuilding would leave the voxel caches of the old scenes in prepared-*/ in use
        raise DatasetFileError(f"{sim}: drawn from other ranges than data_tools.artefact_ranges "
                               f"commits now; delete it and {folder}/prepared-*/{sim.name}")
    if not (sim / "manifest.json").is_file():
        simulate_source(folder, cfg.simulated_source)
    manifest = read_manifest(sim)
    # the simulated folder is a split of the dataset folder (manifest keyed by its name)
    return load_split(folder, manifest, sim.name, True, cfg.voxel, cfg.shape_radii)


def inverse_sqrt_weights(scenes: list[Scene], num_classes: int) -> torch.Tensor:
    labels = np.concatenate([s.labels for s in scenes])
    counts = np.bincount(labels[labels != 255], minlength=num_classes).astype(np.float64)
    freq = np.maximum(counts, 1) / max(counts.sum(), 1)
    w = 1.0 / np.sqrt(freq)
    return torch.tensor(w / (freq * w).sum(), dtype=torch.float32)  # mean 1 over points


def target_test_scenes(folder: Path, manifest: dict, whole, load) -> SceneDataset | None:
    """The labeled target test, or None where the manifest has none (a user's site without
    labels: training reports source metrics only). Labels that are all 255 are refused:
    they would report NaN for every class."""
    if not manifest.get("splits", {}).get("target_test"):
        return None
    test = whole(load("target_test", True))
    if not any((s.original_labels != 255).any() for s in test.scenes):
        raise DatasetFileError(f"{folder / 'manifest.json'}: every target_test label is 255 (ignore), nothing "
                               "to report; leave target_test out of the manifest to train without target labels")
    return test


@register(DATASETS, "rebar3d", Rebar3dConfig)
def build_rebar3d_data(cfg: Rebar3dConfig) -> DomainData:
    cfg.validate()
    folder = dataset_dir(cfg)
    manifest = read_manifest(folder)
    load = lambda split, labeled: load_split(folder, manifest, split, labeled, cfg.voxel,  # noqa: E731
                                             cfg.shape_radii)
    train_split = "target_train" if cfg.target_labeled else "source_train"
    train_scenes = load(train_split, True)
    if cfg.simulated_source:
        train_scenes += simulated_scenes(folder, cfg)

    def blocks(scenes: list[Scene], labeled: bool) -> BlockDataset:
        return BlockDataset(scenes, cfg.block_size, cfg.train_stride, cfg.num_points, cfg.colour,
                            labeled, cfg.augment, voxel=cfg.voxel)

    def whole(scenes: list[Scene]) -> SceneDataset:
        return SceneDataset(scenes, cfg.block_size, cfg.num_points, cfg.colour, NUM_CLASSES,
                            voxel=cfg.voxel, elements=list(ELEMENTS))

    weights = inverse_sqrt_weights(train_scenes, NUM_CLASSES) if cfg.class_weighting != "none" else None
    return DomainData(
        source_train=blocks(train_scenes, True),
        source_val=whole(load("source_val", True)),
        target_train=blocks(load("target_train", False), False),
        target_test=target_test_scenes(folder, manifest, whole, load),
        num_classes=NUM_CLASSES, input_key="coord",
        input_shape=(3 + 3 * cfg.colour + shape_features.CHANNELS_PER_RADIUS * len(cfg.shape_radii),),
        class_weights=weights, task=cfg.TASK)
