"""`da view`: look at a cloud or a prediction in Open3D, coloured by the one label table.

Colourings: `label` (the cloud's label field: ground truth for a source cloud, the
prediction for what `da predict` or a run's predictions/ folder writes), `pred` (the
same field, named for prediction files), `error` (against ground truth: correct green,
wrong red, ignore/unlabelled light grey), `rgb` (the cloud's own colours). Ground truth
for `error` is `--truth FILE` (a labeled cloud or an (N,) .npy), else the file beside
the cloud named STEM_labels.npy (how target_test stores it). `--screenshot out.png`
renders the same view headless (data_tools.viz.snapshot) instead of opening a window.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from data_tools.io import PointCloud, read_cloud
from data_tools.viz import LABELS, label_colors, legend, snapshot

COLORINGS = ("label", "pred", "error", "rgb")
CORRECT, WRONG, UNKNOWN = (0.15, 0.65, 0.20), (0.85, 0.10, 0.10), (0.85, 0.85, 0.85)
IGNORE = 255


def read_truth(cloud_path: Path, truth: Path | None, n: int) -> np.ndarray:
    path = truth if truth is not None else cloud_path.with_name(f"{cloud_path.stem}_labels.npy")
    if not path.exists():
        raise ValueError(f"{cloud_path}: --color error needs ground truth; no {path} "
                         "(pass --truth LABELS.npy or a labeled cloud)")
    if path.suffix == ".npy":
        try:
            labels = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path}: cannot read labels ({exc})") from None
    else:
        labels = read_cloud(path).labels
        if labels is None:
            raise ValueError(f"{path}: this cloud has no label field to use as ground truth")
    labels = np.asarray(labels)
    if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{path}: ground truth must be {n} integer labels (one per point of "
                         f"{cloud_path}), got shape {labels.shape} {labels.dtype}")
    return labels.astype(np.int64)


def error_colors(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    colors = np.where((pred == truth)[:, None], CORRECT, WRONG).astype(np.float32)
    colors[truth == IGNORE] = UNKNOWN
    return colors


def colors_for(cloud: PointCloud, path: Path, color: str, truth: Path | None = None) -> tuple[np.ndarray, str]:
    """(N, 3) colours and a legend text for one colouring."""
    if color not in COLORINGS:
        raise ValueError(f"--color must be one of {', '.join(COLORINGS)}, got {color!r}")
    if color == "rgb":
        if cloud.rgb is None:
            raise ValueError(f"{path}: the cloud has no colours (use --color label)")
        return np.asarray(cloud.rgb, np.float32), "rgb: the cloud's own colours"
    if cloud.labels is None:
        raise ValueError(f"{path}: the cloud has no label field (use --color rgb)")
    if color in ("label", "pred"):
        return label_colors(cloud.labels), legend()
    gt = read_truth(path, truth, len(cloud.xyz))
    colors = error_colors(cloud.labels, gt)
    scored = gt != IGNORE
    acc = float((cloud.labels[scored] == gt[scored]).mean()) if scored.any() else float("nan")
    per_class = ", ".join(f"{LABELS[k].name} {(cloud.labels[gt == k] == k).mean():.1%}"
                          for k in sorted(LABELS) if k != IGNORE and (gt == k).any())
    return colors, (f"error: green correct, red wrong, light grey ignore; accuracy {acc:.1%} "
                    f"on {int(scored.sum())} labelled points (recall: {per_class})")


def view(path: Path, color: str = "label", screenshot: Path | None = None, truth: Path | None = None,
         camera: str = "iso", point_size: float = 2.0) -> str:
    """Opens an Open3D window, or writes `screenshot`; returns the legend text."""
    path = Path(path)
    cloud = read_cloud(path)
    colors, text = colors_for(cloud, path, color, truth)
    if screenshot is not None:
        snapshot(cloud, screenshot, view=camera, point_size=point_size, colors=colors)
        return text
    import open3d as o3d

    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(cloud.xyz.astype(np.float64)))
    pcd.colors = o3d.utility.Vector3dVector(colors.astype(np.float64))
    print(text, flush=True)  # the window has no legend of its own
    o3d.visualization.draw_geometries([pcd], window_name=f"{path.name} ({color})")
    return text
