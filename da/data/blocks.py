"""Point clouds as model inputs: prepared scenes, training blocks, whole-scene prediction.

A scene is voxel-downsampled once (`prepare_scene`: even density, since photogrammetry
clouds are 10x denser than the sampled source and uneven) and remembers, for every
ORIGINAL point, the voxel it fell in, so predictions reach every original point.

Blocks are square XY columns (z unbounded; Z must be up) of `block_size` metres holding
`num_points` points. Inputs per point (`block_inputs`):

    coord = ((x - cx) / s, (y - cy) / s, z / s)   s = block_size, (cx, cy) the column centre
    feat  = [rgb - 0.5 (when colour is used), local-shape features (when the scene has
            them, `da.data.shape_features`: 7 per radius)]
    grid  = floor(coord * s / voxel)               integer voxel of each point (after any
            augmentation), for voxel backbones (`da.models.sparse_unet`); others ignore it

z is kept absolute (ground at z = 0 after gravity alignment) because height is
informative for rebar (ties at regular heights, ground at 0) and is what a user's cloud
has after `data_tools.prepare.gravity_align`.

Training (`BlockDataset`): columns on a grid of stride `stride`; every batch draws fresh
points from each column (seeded by the batch seed, so resuming replays the same batches)
and, with augmentation, a random rotation about z (shape features' horizontal
directions turn with it), scale and jitter. A column with at most `num_points` points
gives every one of them (padded with repeats), so with a large `num_points` a block is
every voxel of its column in both domains - the fixed count no longer sets a density
that differs between a sparse source column and a dense target one. Evaluation
(`SceneDataset`): `data_tools.prepare.tile_blocks` covers every point; the segmentation3d
task votes the logits back (`data_tools.prepare.add_votes`) and counts every original
point whose label is not 255.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

import da.data.shape_features as shape_features
from data_tools.io import PointCloud
from data_tools.prepare import tile_blocks, voxel_downsample

IGNORE = 255


@dataclass
class Scene:
    """A voxel-downsampled cloud and the map back to its original points."""

    name: str
    xyz: np.ndarray  # (M, 3) float32, voxel centroids
    rgb: np.ndarray | None  # (M, 3) float32 in [0, 1]
    labels: np.ndarray | None  # (M,) int64 voxel majority labels (255 = ignore)
    index: np.ndarray  # (N,) voxel of each original point
    original_labels: np.ndarray | None  # (N,) labels of the original points
    shape: np.ndarray | None = None  # (M, F) local-shape features (da.data.shape_features)
    element: str = ""  # what the scene shows (column, beam, ...), for per-element metrics


def prepare_scene(name: str, cloud: PointCloud, voxel: float) -> Scene:
    down, index = voxel_downsample(cloud, voxel)
    labels = None if down.labels is None else down.labels.astype(np.int64)
    original = None if cloud.labels is None else np.asarray(cloud.labels, np.int64)
    rgb = None if down.rgb is None else down.rgb.astype(np.float32)
    return Scene(name, down.xyz.astype(np.float32), rgb, labels, index.astype(np.int64), original)


def block_inputs(scene: Scene, idx: np.ndarray, origin: np.ndarray, block_size: float,
                 colour: bool) -> tuple[np.ndarray, np.ndarray]:
    """(coord (n, 3), feat (n, C)) float32 for points `idx` of the column at `origin`;
    feat holds rgb - 0.5 (if `colour`) then the scene's shape features (if it has them)."""
    xyz = scene.xyz[idx].astype(np.float64)
    centre = np.asarray(origin, np.float64) + block_size / 2.0
    coord = np.empty_like(xyz)
    coord[:, :2] = (xyz[:, :2] - centre) / block_size
    coord[:, 2] = xyz[:, 2] / block_size
    if colour:
        if scene.rgb is None:
            raise ValueError(f"{scene.name}: colour input asked for, but the cloud has no colour")
        parts = [scene.rgb[idx] - 0.5]
    else:
        parts = [np.zeros((len(idx), 0), np.float32)]
    if scene.shape is not None:
        parts.append(scene.shape[idx])
    return coord.astype(np.float32), np.concatenate(parts, axis=1).astype(np.float32)


def voxel_grid(coord: np.ndarray, block_size: float, voxel: float) -> np.ndarray:
    """(n, 3) int32 voxel of each point from block coordinates (block_size units)."""
    return np.floor(coord.astype(np.float64) * (block_size / voxel)).astype(np.int32)


def sample_block(members: np.ndarray, num_points: int, rng: np.random.Generator) -> np.ndarray:
    """num_points of `members`: all of them (shuffled, padded with random repeats) when
    there are at most num_points, else a random subset without replacement."""
    if len(members) >= num_points:
        return rng.choice(members, num_points, replace=False)
    pad = rng.choice(members, num_points - len(members), replace=True)
    return rng.permutation(np.concatenate([members, pad]))


def column_members(xy: np.ndarray, block_size: float, stride: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """(origin (2,), point indices) of every occupied column [origin, origin + block_size)."""
    low = xy.min(axis=0)
    n = 1 + np.maximum(0, np.ceil((xy.max(axis=0) - low - block_size) / stride)).astype(int)
    out = []
    for i in range(n[0]):
        for j in range(n[1]):
            origin = low + stride * np.array([i, j])
            inside = np.all((xy >= origin) & (xy < origin + block_size), axis=1)
            if inside.any():
                out.append((origin, np.flatnonzero(inside)))
    return out


class BlockDataset(Dataset):
    """Training blocks over scenes; items are fetched by (index, batch_seed) keys."""

    def __init__(self, scenes: list[Scene], block_size: float, stride: float, num_points: int,
                 colour: bool, labeled: bool, augment: bool, min_points: int = 64,
                 voxel: float = 0.01):
        self.scenes, self.block_size, self.num_points = scenes, block_size, num_points
        self.voxel, self.stride, self.min_points = voxel, stride, min_points
        self.colour, self.labeled, self.augment = colour, labeled, augment
        self.columns: list[tuple[int, np.ndarray, np.ndarray]] = []
        for s, scene in enumerate(scenes):
            if labeled and scene.labels is None:
                raise ValueError(f"{scene.name}: labeled blocks asked for, but the scene has no labels")
            for origin, members in column_members(scene.xyz[:, :2], block_size, stride):
                if len(members) >= min_points:  # a few stray points are no block
                    self.columns.append((s, origin, members))
        if not self.columns:
            raise ValueError(f"no column of {block_size} m holds >= {min_points} points")

    def __len__(self) -> int:
        return len(self.columns)

    def __getitems__(self, keys: list[tuple[int, int]]) -> dict[str, torch.Tensor]:
        coords, feats, labels = [], [], []
        for i, batch_seed in keys:
            s, origin, members = self.columns[i]
            rng = np.random.default_rng([batch_seed, i])
            idx = sample_block(members, self.num_points, rng)
            coord, feat = block_inputs(self.scenes[s], idx, origin, self.block_size, self.colour)
            if self.augment:
                coord, angle = augment_block(coord, rng)
                if self.scenes[s].shape is not None:
                    shape_at = feat.shape[1] - self.scenes[s].shape.shape[1]
                    feat[:, shape_at:] = shape_features.rotate(feat[:, shape_at:], angle)
            coords.append(coord)
            feats.append(feat)
            if self.labeled:
                labels.append(self.scenes[s].labels[idx])
        coord = np.stack(coords)
        batch = {"coord": torch.from_numpy(coord), "feat": torch.from_numpy(np.stack(feats)),
                 "grid": torch.from_numpy(voxel_grid(coord, self.block_size, self.voxel))}
        if self.labeled:
            batch["label"] = torch.from_numpy(np.stack(labels))
        return batch

    def __getitem__(self, key):
        batch = self.__getitems__([key if isinstance(key, tuple) else (key, 0)])
        return {k: v[0] for k, v in batch.items()}


def augment_block(coord: np.ndarray, rng: np.random.Generator, scale: float = 0.1,
                  jitter: float = 0.002) -> tuple[np.ndarray, float]:
    """Random rotation about z (the column centre), isotropic scale in 1 +- `scale`, and
    Gaussian jitter (std `jitter` in block units, clipped at 3 std); returns the new
    coordinates and the rotation angle (for direction features)."""
    a = rng.uniform(0, 2 * np.pi)
    c, s = np.cos(a), np.sin(a)
    out = coord.copy()
    out[:, 0], out[:, 1] = c * coord[:, 0] - s * coord[:, 1], s * coord[:, 0] + c * coord[:, 1]
    out *= rng.uniform(1 - scale, 1 + scale)
    out += np.clip(rng.normal(0, jitter, out.shape), -3 * jitter, 3 * jitter)
    return out.astype(np.float32), float(a)


class SceneDataset(Dataset):
    """Whole scenes for evaluation: fixed blocks covering every point, voted back.

    `__len__` is the number of scenes; the segmentation3d task (`da.tasks`) runs the model
    over `block_batch`es and votes the logits back onto the points.
    """

    def __init__(self, scenes: list[Scene], block_size: float, num_points: int, colour: bool,
                 num_classes: int, voxel: float = 0.01, elements: list[str] | None = None):
        """elements: every element name to report an mIoU for (NaN where no scene has it),
        so runs on different splits log the same metric names; None = the scenes' own."""
        self.scenes, self.block_size, self.num_points, self.colour = scenes, block_size, num_points, colour
        self.num_classes, self.voxel, self.elements = num_classes, voxel, elements
        self.blocks = [tile_blocks(PointCloud(sc.xyz), block_size, num_points, seed=0) for sc in scenes]

    def __len__(self) -> int:
        return len(self.scenes)

    def block_batch(self, s: int, blocks: list) -> dict[str, torch.Tensor]:
        """Model inputs (on the CPU) of `blocks` of scene `s` - its fixed evaluation blocks."""
        scene = self.scenes[s]
        inputs = [block_inputs(scene, b.indices, b.origin, self.block_size, self.colour) for b in blocks]
        coord = np.stack([c for c, _ in inputs])
        return {"coord": torch.from_numpy(coord), "feat": torch.from_numpy(np.stack([f for _, f in inputs])),
                "grid": torch.from_numpy(voxel_grid(coord, self.block_size, self.voxel))}
