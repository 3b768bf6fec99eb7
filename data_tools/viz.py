"""Label colours and headless PNG snapshots of point clouds.

``LABELS`` is the project's one label colour table (like Open3D-ML's ``LabelLUT``):
every picture, legend or viewer colours labels through it, so "orange = main rebar"
means the same everywhere. ``label_colors(labels)`` maps a label array to colours.

``snapshot(cloud, out_png)`` renders a cloud to a PNG without a display: Open3D's
``OffscreenRenderer`` (Filament; on a machine without a GPU it runs on Mesa's llvmpipe
Vulkan driver), unlit points, white background, camera fitted to the cloud's bounding
sphere. If the renderer cannot start here (no Vulkan/EGL), it warns and draws the same
view as an orthographic matplotlib scatter instead, so a PNG is always written.

Command line: ``python -m data_tools snapshot CLOUD --out picture.png``.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import threading
import uuid
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import MappingProxyType
from typing import NamedTuple

import numpy as np

from data_tools.io import PointCloud

__all__ = ["LABELS", "VIEWS", "Label", "label_colors", "legend", "snapshot"]


class Label(NamedTuple):
    name: str
    color: tuple[float, float, float]  # RGB in [0, 1]


# Read-only so no caller can recolour a class for everyone else in the process.
LABELS: Mapping[int, Label] = MappingProxyType({
    0: Label("background", (0.70, 0.70, 0.70)),  # light grey: present but unobtrusive
    1: Label("main rebar", (0.93, 0.35, 0.05)),  # strong orange-red: the class to look at
    2: Label("tie", (0.10, 0.35, 0.90)),  # blue: far from both grey and orange
    255: Label("ignore", (0.10, 0.10, 0.10)),  # near black: visibly "not a class"
})

# Direction from the cloud's centre towards the camera, and the camera's up vector.
VIEWS: Mapping[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = (
    MappingProxyType({
        "iso": ((1.0, 1.0, 1.0), (0.0, 0.0, 1.0)),
        "top": ((0.0, 0.0, 1.0), (0.0, 1.0, 0.0)),
        "front": ((0.0, -1.0, 0.0), (0.0, 0.0, 1.0)),
    }))

_FOV_DEG = 30.0  # narrow lens: little perspective distortion, close to a technical drawing
_MARGIN = 1.05  # the bounding sphere fills 95% of the shorter image side


def label_colors(labels: np.ndarray) -> np.ndarray:
    """(N,) integer labels -> (N, 3) float32 RGB in [0, 1], from ``LABELS``."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be a 1-D integer array, got shape {labels.shape} {labels.dtype}")
    known = np.array(sorted(LABELS), dtype=np.int64)
    unknown = np.setdiff1d(labels, known)
    if unknown.size:
        shown = ", ".join(str(v) for v in unknown[:10]) + (", ..." if unknown.size > 10 else "")
        raise ValueError(f"labels {shown} are not in the label table (known: "
                         f"{', '.join(f'{k} {LABELS[k].name}' for k in known)})")
    table = np.array([LABELS[k].color for k in known], dtype=np.float32)
    return table[np.searchsorted(known, labels)]


def legend() -> str:
    """One line per label: value, name and 0-255 colour, for captions and CLI output."""
    return "\n".join(f"{k:>3} {lab.name:<10} rgb{tuple(round(c * 255) for c in lab.color)}"
                     for k, lab in LABELS.items())


def snapshot(cloud: PointCloud, out_png: str | Path, color: str = "label", width: int = 1024,
             height: int = 768, point_size: float = 2.0, view: str = "iso",
             colors: np.ndarray | None = None) -> Path:
    """Render `cloud` to the PNG `out_png`; color "label" or "rgb", view "iso", "top" or "front".
    `colors` (N, 3) in [0, 1], when given, replaces the colouring chosen by `color`."""
    out_png = Path(out_png)
    cloud.validate("cloud to snapshot")
    if colors is None:
        colors = _point_colors(cloud, color)
    elif colors.shape != cloud.xyz.shape:
        raise ValueError(f"colors must have shape {cloud.xyz.shape}, got {colors.shape}")
    if view not in VIEWS:
        raise ValueError(f"view must be one of {', '.join(VIEWS)}, got {view!r}")
    if width < 16 or height < 16 or point_size <= 0:
        raise ValueError(f"need width, height >= 16 and point_size > 0, got {width}x{height}, "
                         f"point size {point_size}")
    if out_png.suffix.lower() != ".png":
        raise ValueError(f"{out_png}: snapshots are PNG files, name it *.png")
    # Centre in float64 first: float32 GPU coordinates of a cloud far from the origin
    # (survey coordinates in metres) would jitter by centimetres.
    lo, hi = cloud.xyz.min(axis=0).astype(np.float64), cloud.xyz.max(axis=0).astype(np.float64)
    xyz = cloud.xyz.astype(np.float64) - (lo + hi) / 2
    radius = max(float(np.linalg.norm(hi - lo)) / 2, 1e-3)  # a single point still gets a view
    image = _render(xyz, colors, radius, width, height, point_size, view, out_png)
    _write_png(image, out_png)
    return out_png


def _point_colors(cloud: PointCloud, color: str) -> np.ndarray:
    if color == "label":
        if cloud.labels is None:
            raise ValueError("color='label' but the cloud has no labels (use color='rgb')")
        return label_colors(cloud.labels)
    if color == "rgb":
        if cloud.rgb is None:
            raise ValueError("color='rgb' but the cloud has no colours (use color='label')")
        return np.asarray(cloud.rgb, dtype=np.float32)
    raise ValueError(f"color must be 'label' or 'rgb', got {color!r}")


def _render(xyz: np.ndarray, colors: np.ndarray, radius: float, width: int, height: int,
            point_size: float, view: str, out_png: Path) -> np.ndarray:
    problem = _offscreen_problem()
    if problem is None:
        try:
            return _render_open3d(xyz, colors, radius, width, height, point_size, view)
        except RuntimeError as exc:  # started in the probe, failed here: still draw something
            problem = str(exc)
    warnings.warn(f"Open3D's OffscreenRenderer cannot start here ({problem}); drawing {out_png} "
                  "as a matplotlib scatter instead", RuntimeWarning, stacklevel=3)
    return _render_matplotlib(xyz, colors, radius, width, height, point_size, view)


@functools.cache
def _offscreen_problem() -> str | None:
    """Why OffscreenRenderer cannot start in this environment, or None if it can.

    Asked once per process, in a child process: without Vulkan/EGL Filament aborts the
    whole process (SIGABRT, "Unable to create Vulkan instance"), which no except catches.
    """
    code = ("from open3d.visualization import rendering as r\n"
            "r.OffscreenRenderer(16, 16).render_to_image()\n")
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"probe failed: {exc}"
    if proc.returncode == 0:
        return None
    tail = " | ".join((proc.stderr + proc.stdout).strip().splitlines()[-3:])
    return f"probe exit code {proc.returncode}: {tail}"


# Filament's engine belongs to the thread that started it ("This thread has not been
# adopted" / "Engine::shutdown() called from the wrong thread" abort the process), and
# Open3D keeps one engine per process. So each snapshot starts a renderer, renders and
# destroys it on the calling thread, one at a time: any thread may call, the process exits
# cleanly, and the start costs ~0.1 s on llvmpipe, less than the render.
_RENDER_LOCK = threading.Lock()


def _render_open3d(xyz: np.ndarray, colors: np.ndarray, radius: float, width: int, height: int,
                   point_size: float, view: str) -> np.ndarray:
    import open3d as o3d
    from open3d.visualization import rendering

    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(xyz))
    pcd.colors = o3d.utility.Vector3dVector(colors.astype(np.float64))
    material = rendering.MaterialRecord()
    material.shader = "defaultUnlit"  # flat colours: a label colour must stay that colour
    material.point_size = float(point_size)
    direction, up = _camera(view)
    eye = direction * radius * _MARGIN / np.sin(_half_fov(width, height))
    with _RENDER_LOCK:
        with _c_stdout_silenced():  # Filament prints its start-up banner to the C stdout
            renderer = rendering.OffscreenRenderer(width, height)
        try:
            # Tone mapping and dithering are on by default: they turn white into
            # (230, 226, 220) and shift label colours. Off, the PNG shows the table's colours.
            renderer.scene.view.set_post_processing(False)
            renderer.scene.set_background([1.0, 1.0, 1.0, 1.0])
            renderer.scene.add_geometry("cloud", pcd, material)
            renderer.setup_camera(_FOV_DEG, np.zeros(3, np.float32), eye.astype(np.float32),
                                  up.astype(np.float32))
            image = np.asarray(renderer.render_to_image())[..., :3].copy()
        finally:
            del renderer  # engine shut down here, on this thread
    return image


@contextmanager
def _c_stdout_silenced() -> Iterator[None]:
    try:
        sys.stdout.flush()
        saved = os.dup(1)
    except (OSError, ValueError):  # no usable fd 1 (embedded interpreter): leave it alone
        yield
        return
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def _camera(view: str) -> tuple[np.ndarray, np.ndarray]:
    direction, up = (np.asarray(v, dtype=np.float64) for v in VIEWS[view])
    return direction / np.linalg.norm(direction), up


def _half_fov(width: int, height: int) -> float:
    """Half the narrower field of view, so the bounding sphere fits both ways."""
    half_v = np.radians(_FOV_DEG) / 2
    half_h = np.arctan(np.tan(half_v) * width / height)
    return float(min(half_v, half_h))


def _render_matplotlib(xyz: np.ndarray, colors: np.ndarray, radius: float, width: int,
                       height: int, point_size: float, view: str) -> np.ndarray:
    # Figure + Agg canvas directly, not pyplot: no global backend switch, no GUI.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    direction, up = _camera(view)
    right = np.cross(up, direction)
    right /= np.linalg.norm(right)
    true_up = np.cross(direction, right)
    order = np.argsort(xyz @ direction)  # far points first, so near ones are drawn on top
    u, v = (xyz @ right)[order], (xyz @ true_up)[order]
    dpi = 100
    fig = Figure(figsize=(width / dpi, height / dpi), dpi=dpi, facecolor="white")
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    # Square markers of point_size pixels, like GL points; marker size is in points^2.
    ax.scatter(u, v, c=colors[order], s=(point_size * 72 / dpi) ** 2, marker="s", linewidths=0)
    half = radius * _MARGIN
    ax.set_xlim(-half * max(1.0, width / height), half * max(1.0, width / height))
    ax.set_ylim(-half * max(1.0, height / width), half * max(1.0, height / width))
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def _write_png(image: np.ndarray, out_png: Path) -> None:
    from PIL import Image  # Pillow comes with matplotlib

    out_png.parent.mkdir(parents=True, exist_ok=True)
    # Temporary name then os.replace: no half-written picture under the final name.
    tmp = out_png.with_name(f".{out_png.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        Image.fromarray(image).save(tmp, format="PNG")
        os.replace(tmp, out_png)
    finally:
        tmp.unlink(missing_ok=True)
