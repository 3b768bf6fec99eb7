"""A walk-around capture: one moving camera, overlapping photos round the cage, as a user takes.

The ``mvs`` mode photographs with a calibrated stereo rig (``photogrammetry.capture``): two
images per position, 30 degrees between positions. Structure-from-motion cannot chain such
a capture - neighbouring positions share too few features (issue 38: no initial pair, no
model). A photogrammetry user walks round the cage with one camera and takes a photo every
few degrees; this module renders that capture. COLMAP registered 72 of 72 views 5 degrees
apart, but only 18 of 36 views 10 degrees apart: overlap decides, so the presets stay dense.

The ring geometry (distance, camera height, focal length, image size) comes from the
reconstruction preset, so mild / typical / harsh keep their meaning; a ``WalkAround`` adds
how many photos are taken per loop and at which heights (one loop per height, each loop
starting at its own random azimuth, as a person walking round twice would).

Images carry no pose: ``capture_walk_around`` returns the photos and, separately, the
renderer's truth (``CaptureTruth``) for evaluation only.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from data_tools.photogrammetry import CaptureTruth, ReconstructionPreset
from data_tools.rebar.mesh import LabeledMesh
from data_tools.render import Appearance, Camera, RaycastScene, camera_path, render

__all__ = ["WALK_AROUND_PRESETS", "WalkAround", "WalkCapture", "capture_walk_around",
           "walk_around_cameras"]


@dataclass(frozen=True)
class WalkAround:
    """How a single camera is walked round the cage."""

    views_per_loop: int = 72  # 5 degrees apart: what registered every view in issue 38
    height_offsets: tuple[float, ...] = (0.0,)  # m added to the preset's camera height, one loop each
    position_jitter: float = 0.05  # m: nobody walks a perfect circle
    look_jitter: float = 0.05  # m of random offset of each view's look-at point
    # Render s x s rays per pixel and average them, as a sensor integrates light over its
    # pixel area. One ray per pixel aliases fine texture into view-dependent noise, which
    # SIFT cannot match across views at small image sizes (tests use 2 at 320 x 240).
    supersample: int = 1

    @property
    def n_views(self) -> int:
        return self.views_per_loop * len(self.height_offsets)


WALK_AROUND_PRESETS: dict[str, WalkAround] = {
    "walk_around": WalkAround(),
    # two loops, 7.5 degrees apart each: the lower loop sees under ties the upper one misses.
    # Measured on a wall (experiments/results/rebar3d/sfm_pilot.md): 45 of 96 registered -
    # too sparse per loop; one 72-photo loop registered 69 of 72 on the same wall.
    "walk_around_two_heights": WalkAround(views_per_loop=48, height_offsets=(-0.4, 0.4)),
}


@dataclass(eq=False)
class WalkCapture:
    """The photos in walking order; loops[k] lists the indices of loop k, in walking order."""

    images: list[np.ndarray]  # (H, W, 3) float32 in [0, 1]
    loops: list[list[int]]


def walk_around_cameras(walk: WalkAround, recon: ReconstructionPreset, lo: np.ndarray,
                        hi: np.ndarray, rng: np.random.Generator) -> list[Camera]:
    """The true cameras of every photo, loop after loop, each loop in walking order."""
    cams: list[Camera] = []
    for offset in walk.height_offsets:
        path = replace(recon.camera_path(), n_images=walk.views_per_loop,
                       camera_height=recon.camera_height + offset,
                       position_jitter=walk.position_jitter, look_jitter=walk.look_jitter)
        cams.extend(camera_path(path, lo, hi, rng))
    return cams


def _finer(cam: Camera, s: int) -> Camera:
    """The same camera with s x s pixels per pixel (pixel centres at integers, as render's)."""
    if s == 1:
        return cam
    return replace(cam, width=cam.width * s, height=cam.height * s, fx=cam.fx * s, fy=cam.fy * s,
                   cx=(cam.cx + 0.5) * s - 0.5, cy=(cam.cy + 0.5) * s - 0.5)


def _area_mean(rgb: np.ndarray, s: int) -> np.ndarray:
    if s == 1:
        return rgb
    h, w = rgb.shape[0] // s, rgb.shape[1] // s
    return rgb.reshape(h, s, w, s, 3).mean(axis=(1, 3), dtype=np.float32)


def capture_walk_around(mesh: LabeledMesh, walk: WalkAround, recon: ReconstructionPreset,
                        appearance: Appearance, rng: np.random.Generator,
                        bounds: tuple[np.ndarray, np.ndarray]) -> tuple[WalkCapture, CaptureTruth]:
    """Photograph `mesh` walking round `bounds` (lo, hi); texture weakened by the preset's
    ``texture_strength`` on top of the appearance's own, as ``photogrammetry.capture`` does."""
    lo, hi = (np.asarray(b, float) for b in bounds)
    cameras = walk_around_cameras(walk, recon, lo, hi, rng)
    app = replace(appearance,
                  texture_strength=appearance.texture_strength * recon.texture_strength)
    rs = RaycastScene.from_mesh(mesh)
    s = int(walk.supersample)
    images, truth = [], CaptureTruth([], [], [])
    for cam in cameras:
        shot = render(mesh, _finer(cam, s), app, rng, rs)
        images.append(_area_mean(shot.rgb, s))
        truth.cameras.append(cam)
        truth.depth.append(shot.depth[s // 2::s, s // 2::s])  # one ray near each pixel centre
        truth.label.append(shot.label[s // 2::s, s // 2::s])
    n = walk.views_per_loop
    loops = [list(range(k * n, (k + 1) * n)) for k in range(len(walk.height_offsets))]
    return WalkCapture(images, loops), truth
