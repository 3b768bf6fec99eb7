"""A walk-around capture reconstructed as a user would: COLMAP's cameras, then dense stereo.

``reconstruct_sfm`` runs COLMAP (``data_tools.colmap_sfm``) on the photos alone, undistorts
the registered photos to COLMAP's pinhole cameras, and hands them to ``dense_cloud``: each
registered photo is matched against its nearest registered neighbour
(``data_tools.pair_rectification``: any relative pose) and the depth maps are fused as in
the ``mvs`` mode (``photogrammetry.fuse_depth_maps``). The cloud is in COLMAP's frame and
scale, as a user's is.

``dense_cloud`` takes any cameras, so the control - the same photos with the renderer's
TRUE cameras - goes through exactly the same dense step (``mode="sfm_true_poses"`` in
``data_tools.target_dataset``): what differs between the two is SfM alone.

Scale-free settings: COLMAP's unit is arbitrary, so every length the dense step needs
comes from the cameras, the same rule for both: the scene centre is the point closest to
all optical axes (the photographer aimed at the cage), the working distance d the median
distance of the cameras to it; depths are searched over ``preset.depth_range`` x d and
the fused cloud is merged on voxels of ``preset.voxel_size`` x d / ``preset.distance``
(the preset's voxel at the preset's distance). Fusion checks each depth map against its
``FUSION_NEIGHBOURS`` nearest cameras, not all of them.

``camera_centre_errors`` is evaluation only: the similarity fit (``fit_similarity``) of
the registered centres onto the renderer's, and each centre's distance after it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from data_tools.colmap_sfm import (
    ColmapSettings,
    SfmRun,
    intrinsics,
    pinhole_cameras,
    run_colmap_sfm,
)
from data_tools.io import PointCloud
from data_tools.pair_rectification import pair_depth
from data_tools.photogrammetry import ReconstructionPreset, Similarity, fuse_depth_maps
from data_tools.render import Camera
from data_tools.similarity_fit import fit_similarity
from data_tools.walk_around import WalkCapture

__all__ = ["FUSION_NEIGHBOURS", "DenseTimings", "SfmScene", "aim_point", "camera_centre_errors", "dense_cloud", "reconstruct_sfm",
           "stereo_partners"]


# Views each depth map is checked against in the fusion: the nearest 8 camera centres (+-20
# degrees of a 72-photo walk). Against all 71 others, fusion took 266 of a scene's 546 s at
# 960 x 720; at 320 x 240 the nearest 8 keep 0.90 / 0.81 of the main / tie surface (all:
# 0.96 / 0.91) with fewer stray points (0.56 of points off every surface, all: 0.63).
FUSION_NEIGHBOURS = 8


def aim_point(cameras: list[Camera]) -> np.ndarray:
    """The point closest (least squares) to every camera's optical axis."""
    a, b = np.zeros((3, 3)), np.zeros(3)
    for cam in cameras:
        z = cam.world_from_camera[:3, 2]
        p = np.eye(3) - np.outer(z, z)  # projects onto the plane across the axis
        a += p
        b += p @ cam.center
    return np.linalg.lstsq(a, b, rcond=None)[0]


def stereo_partners(cameras: list[Camera]) -> list[int]:
    """Each camera's partner: the nearest other camera centre (a neighbour on the walk)."""
    c = np.array([cam.center for cam in cameras])
    dist = np.linalg.norm(c[:, None] - c[None], axis=2)
    np.fill_diagonal(dist, np.inf)
    return [int(j) for j in dist.argmin(1)]


@dataclass
class DenseTimings:
    matching_s: list[float] = field(default_factory=list)  # rectify + SGBM + depth, per photo
    fusion_s: float = 0.0


def dense_cloud(images: list[np.ndarray], cameras: list[Camera], preset: ReconstructionPreset,
                timings: DenseTimings | None = None) -> PointCloud:
    """Depth per photo against its nearest neighbour, then multi-view fusion (see module)."""
    if len(cameras) < 2:
        raise ValueError(f"dense matching needs at least 2 registered photos, got {len(cameras)}")
    timings = timings if timings is not None else DenseTimings()
    centre = aim_point(cameras)
    d = float(np.median([np.linalg.norm(cam.center - centre) for cam in cameras]))
    depth_range = (preset.depth_range[0] * d, preset.depth_range[1] * d)
    depths = []
    for i, j in enumerate(stereo_partners(cameras)):
        t0 = time.perf_counter()
        depths.append(pair_depth(images[i], images[j], cameras[i], cameras[j], preset.sgbm, depth_range))
        timings.matching_s.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    cloud = fuse_depth_maps(depths, cameras, images, preset.fusion_tolerance, preset.min_views,
                            preset.voxel_size * d / preset.distance, FUSION_NEIGHBOURS)
    timings.fusion_s = time.perf_counter() - t0
    return cloud


def _undistort(image: np.ndarray, k: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """The photo as the pinhole camera `k` would have taken it (COLMAP's radial terms removed)."""
    import cv2

    if not np.any(dist):
        return image
    return cv2.undistort(np.ascontiguousarray(image, np.float32), k, dist, newCameraMatrix=k)


@dataclass(eq=False)
class SfmScene:
    """A capture reconstructed from its photos alone."""

    cloud: PointCloud  # COLMAP's frame and scale
    cameras: list[Camera | None]  # per photo; None = not registered
    run: SfmRun
    dense: DenseTimings

    @property
    def registered(self) -> list[int]:
        return [i for i, cam in enumerate(self.cameras) if cam is not None]


def reconstruct_sfm(capture: WalkCapture, preset: ReconstructionPreset, work_dir: str | Path,
                    settings: ColmapSettings | None = None) -> SfmScene:
    """COLMAP on the photos, then ``dense_cloud`` on its registered cameras. ValueError where
    fewer than 2 photos register (the caller reports the scene as failed)."""
    run = run_colmap_sfm(capture.images, capture.loops, work_dir, settings)
    if run.model is None or sum(run.registered) < 2:
        raise ValueError(f"COLMAP registered {sum(run.registered)} of {len(run.names)} photos "
                         f"after {len(run.attempts)} tries (log: {Path(work_dir) / 'colmap.log'})")
    cameras = pinhole_cameras(run.model, run.names)
    by_name = {img.name: img for img in run.model.images.values()}
    images, used = [], []
    for name, image, cam in zip(run.names, capture.images, cameras):
        if cam is not None:
            k, dist = intrinsics(run.model.cameras[by_name[name].camera_id])
            images.append(_undistort(image, k, dist))
            used.append(cam)
    dense = DenseTimings()
    cloud = dense_cloud(images, used, preset, dense)
    return SfmScene(cloud, cameras, run, dense)


def camera_centre_errors(estimated: list[Camera | None],
                         true: list[Camera]) -> tuple[Similarity, np.ndarray]:
    """Similarity fit of the registered centres onto the true ones (SfM frame -> truth) and
    each registered centre's distance to its true centre after the fit (truth's units)."""
    pairs = [(e.center, t.center) for e, t in zip(estimated, true) if e is not None]
    est, tru = (np.array(p) for p in zip(*pairs))
    sim = fit_similarity(est, tru)
    return sim, np.linalg.norm(sim.apply(est) - tru, axis=1)

