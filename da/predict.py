"""Segment any point cloud with a trained 3D run: `da predict RUN_DIR CLOUD --out pred.ply`.

A user's SfM + MVS cloud arrives in arbitrary scale and orientation. It goes through the
same preparation as the training clouds, then every ORIGINAL point gets a label:

    read (any format data_tools reads)
    -> scale to metres: --scale S, or --reference-length L with --reference-points
       (two points picked in the cloud whose true distance is L metres); neither = the
       cloud is taken to be in metres already
    -> gravity: --up auto (largest plane = ground, ground -> z = 0, as
       data_tools.prepare.gravity_align) or --up x|y|z (that axis of the cloud points up;
       the ground height is then the 1st percentile of the heights - ASSUMPTION: the
       lowest points are ground)
    -> voxel grid, blocks and voting exactly as the run's evaluation (da.data.blocks)
    -> PLY (or any writable format) with the ORIGINAL coordinates, the predicted label of
       every point and its label colour (data_tools.viz colour table).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from da.config import load_run_config
from da.contracts import DomainData
from da.data.blocks import SceneDataset, prepare_scene
from da.data.rebar3d import NUM_CLASSES
from da.data.shape_features import CHANNELS_PER_RADIUS, local_shape
from da.runs import load_trained
from da.tasks import TASKS
from data_tools.io import PointCloud, read_cloud, write_cloud
from data_tools.prepare import (
    gravity_align,
    rotation_to_z,
    scale_cloud,
    scale_from_reference,
    transform_cloud,
)
from data_tools.viz import label_colors

AXES = {"x": [1.0, 0.0, 0.0], "y": [0.0, 1.0, 0.0], "z": [0.0, 0.0, 1.0]}


def to_training_frame(cloud: PointCloud, scale: float | None = None,
                      reference: tuple[np.ndarray, np.ndarray, float] | None = None,
                      up: str = "auto") -> PointCloud:
    """Metres, +Z up, ground at z = 0 (see the module docstring); point order is kept."""
    if scale is not None and reference is not None:
        raise ValueError("give either a scale or a reference length, not both")
    if reference is not None:
        scale = scale_from_reference(*reference)
    if scale is not None:
        cloud = scale_cloud(cloud, scale)
    if up == "auto":
        return gravity_align(cloud)[0]
    if up not in AXES:
        raise ValueError(f"up must be auto, x, y or z, got '{up}'")
    transform = np.eye(4)
    transform[:3, :3] = rotation_to_z(np.array(AXES[up]))
    aligned = transform_cloud(cloud, transform)
    transform[2, 3] = -float(np.percentile(aligned.xyz[:, 2], 1))
    return transform_cloud(cloud, transform)


def predict_cloud(run, cloud: PointCloud) -> np.ndarray:
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


def predict_file(run_dir: Path, cloud_path: Path, out: Path, scale: float | None = None,
                 reference: tuple[np.ndarray, np.ndarray, float] | None = None, up: str = "auto",
                 checkpoint: str = "last.pt", device: str = "cpu") -> dict[str, int]:
    """Write `out` with every point of `cloud_path` labelled; returns points per label."""
    cfg = load_run_config(Path(run_dir) / "config.yaml").data
    if cfg.name != "rebar3d":
        raise ValueError(f"{run_dir}: not a point-cloud run (data.name={cfg.name})")
    # The network needs only the class count and input width: no training data is read.
    width = 3 + 3 * cfg.colour + CHANNELS_PER_RADIUS * len(cfg.shape_radii)
    shape = DomainData(None, None, None, None, NUM_CLASSES, "coord", (width,), task="segmentation3d")
    run = load_trained(run_dir, checkpoint, device, data=shape)
    original = read_cloud(cloud_path)
    labels = predict_cloud(run, to_training_frame(original, scale, reference, up))
    colours = label_colors(labels).astype(np.float32)
    write_cloud(out, PointCloud(original.xyz, colours, labels=labels))
    values, counts = np.unique(labels, return_counts=True)
    return {int(v): int(c) for v, c in zip(values, counts)}
