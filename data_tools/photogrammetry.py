"""Photogrammetric target clouds: photograph a labelled mesh, reconstruct it by dense stereo.

The target domain is SfM + MVS clouds from phone photos. We cannot photograph rebar here,
so the cage is photographed virtually (``data_tools.render``) and reconstructed with a
real dense matcher (OpenCV's semi-global matcher), so that the artefacts - thin bars
thickened or lost, holes behind bars, false matches on repetitive grids, outliers at
silhouettes - come from the algorithm, not from a hand-written noise model.

Pipeline (``mvs`` mode):

1. ``capture``: for each camera position of a ring (``render.camera_path``), render a
   rectified stereo pair (left + ``render.stereo_partner``). A ``StereoView`` holds only
   what a photographer has: two RGB images and camera parameters, the poses perturbed
   as SfM poses are. Rendered depth, object ids and labels never enter it; they are
   returned separately (``CaptureTruth``) for evaluation only.
2. ``reconstruct_mvs``: per pair, StereoSGBM disparity -> depth = fx * b / d ->
   back-projection with the given (noisy) pose; then multi-view fusion: a point survives
   only where the depth map of at least one OTHER view agrees (>= 2 views), as MVS
   fusion does; survivors are merged on a voxel grid.
3. ``label_by_nearest_surface`` / ``reconstruction_stats``: ground truth and the
   statistics (completeness per class, accuracy, thickening, outliers) a later ``fast``
   artefact model is calibrated against.

Conventions as in ``data_tools.render``: metres, OpenCV cameras, ``world_from_camera``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace

import numpy as np

from data_tools.io import PointCloud
from data_tools.voxel_keys import group_cells
from data_tools.rebar.mesh import LabeledMesh
from data_tools.render import (
    Appearance,
    Camera,
    CameraPath,
    RaycastScene,
    camera_path,
    render,
    stereo_partner,
)

__all__ = ["IGNORE", "RECONSTRUCTION_PRESETS", "CaptureTruth", "ReconstructionPreset",
           "ReconstructionStats", "SGBMParams", "Similarity", "StereoView", "Timings", "capture",
           "disparity_to_depth", "fuse_depth_maps", "label_by_nearest_surface", "reconstruct_mvs",
           "reconstruction_stats", "similarity_transform", "stereo_depth"]

IGNORE = 255  # label of points farther than max_distance from every surface

# ---------------------------------------------------------------------------- presets


@dataclass(frozen=True)
class SGBMParams:
    """StereoSGBM settings. The disparity range is not stored in pixels: it follows from
    the depth range framed (``ReconstructionPreset.depth_range``), focal and baseline, so
    the same preset works at any image size."""

    block_size: int = 5  # odd; larger = smoother, fatter silhouettes, fewer holes
    uniqueness: int = 10  # % margin the best cost must beat the second best by
    speckle_window: int = 100  # px: connected disparity blobs smaller than this are removed
    speckle_range: int = 2  # disparity variation (x16 internally) allowed inside a blob
    disp12_max_diff: int = 1  # left-right consistency check, px
    p1_factor: int = 8  # P1 = p1_factor * block_size^2 (small disparity changes)
    p2_factor: int = 32  # P2 = p2_factor * block_size^2 (jumps: smoothness vs. edges)


@dataclass(frozen=True)
class ReconstructionPreset:
    """One capture-and-reconstruction condition, from careful (mild) to sloppy (harsh)."""

    distance: float  # m, horizontal distance of the camera ring from the target
    camera_height: float  # m above the scene's lowest point
    n_views: int  # stereo pairs round the ring
    baseline: float  # m between the two images of a pair
    texture_strength: float  # multiplier on every material texture (weak light, clean steel)
    rotation_noise_deg: float  # std of the pose rotation error given to the reconstruction
    translation_noise_m: float  # std per axis of the pose position error
    sgbm: SGBMParams = field(default_factory=SGBMParams)
    depth_range: tuple[float, float] = (0.4, 2.5)  # x distance: depths SGBM searches
    fusion_tolerance: float = 0.01  # relative depth agreement needed between two views
    min_views: int = 2  # views that must agree for a point to survive
    voxel_size: float = 0.003  # m, de-duplication grid of the fused cloud
    orbit_arc_deg: float = 360.0
    focal_px: float = 800.0  # at image_size; scaled with it by ``at_size``
    image_size: tuple[int, int] = (960, 720)

    def camera_path(self) -> CameraPath:
        return CameraPath(n_images=self.n_views, distance=self.distance,
                          camera_height=self.camera_height, orbit_arc_deg=self.orbit_arc_deg,
                          focal_px=self.focal_px, image_size=self.image_size,
                          baseline=self.baseline)

    def at_size(self, width: int, height: int) -> ReconstructionPreset:
        """The same field of view at another resolution (tests use small images)."""
        return replace(self, image_size=(width, height),
                       focal_px=self.focal_px * width / self.image_size[0])


# Severity order: farther, fewer views, shorter baseline relative to distance, weaker
# texture, worse poses, a coarser and less strict matcher.
RECONSTRUCTION_PRESETS: dict[str, ReconstructionPreset] = {
    "mild": ReconstructionPreset(
        distance=1.8, camera_height=1.3, n_views=16, baseline=0.12, texture_strength=1.0,
        rotation_noise_deg=0.03, translation_noise_m=0.001,
        sgbm=SGBMParams(block_size=5, uniqueness=10, speckle_window=100, speckle_range=2),
        fusion_tolerance=0.008, voxel_size=0.003),
    "typical": ReconstructionPreset(
        distance=2.5, camera_height=1.5, n_views=12, baseline=0.10, texture_strength=0.7,
        rotation_noise_deg=0.1, translation_noise_m=0.003,
        sgbm=SGBMParams(block_size=5, uniqueness=10, speckle_window=100, speckle_range=2),
        fusion_tolerance=0.01, voxel_size=0.004),
    "harsh": ReconstructionPreset(
        distance=3.5, camera_height=1.7, n_views=8, baseline=0.08, texture_strength=0.4,
        rotation_noise_deg=0.25, translation_noise_m=0.008,
        sgbm=SGBMParams(block_size=7, uniqueness=5, speckle_window=50, speckle_range=4),
        fusion_tolerance=0.015, voxel_size=0.005),
}

# ---------------------------------------------------------------------------- capture


@dataclass(eq=False)
class StereoView:
    """One rectified pair as a photographer has it: images and (imperfect) cameras only.

    Deliberately no depth, object id or label field: the reconstruction cannot cheat.
    ``right`` is the left camera shifted by ``baseline`` along its x axis (a calibrated
    rig), so disparity = fx * baseline / depth.
    """

    left_rgb: np.ndarray  # (H, W, 3) float32 in [0, 1]
    right_rgb: np.ndarray
    camera: Camera  # left camera with the pose the reconstruction is given (noisy)
    baseline: float  # m

    @property
    def right_camera(self) -> Camera:
        return stereo_partner(self.camera, self.baseline)


@dataclass(eq=False)
class CaptureTruth:
    """What the renderer knew, for evaluation and tests only - never for reconstruction."""

    cameras: list[Camera]  # true left cameras
    depth: list[np.ndarray]  # (H, W) true left depth maps, +inf where no hit
    label: list[np.ndarray]  # (H, W) left label images


def _perturb_pose(pose: np.ndarray, rot_deg: float, trans_m: float,
                  rng: np.random.Generator) -> np.ndarray:
    """Rotate about a random axis by N(0, rot_deg) degrees and shift by N(0, trans_m)."""
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    angle = math.radians(rot_deg) * rng.standard_normal()
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rot = np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * k @ k  # Rodrigues
    out = pose.copy()
    out[:3, :3] = rot @ pose[:3, :3]
    out[:3, 3] = pose[:3, 3] + trans_m * rng.standard_normal(3)
    return out


def capture(mesh: LabeledMesh, preset: ReconstructionPreset, appearance: Appearance,
            rng: np.random.Generator, cameras: list[Camera] | None = None,
            bounds: tuple | None = None) -> tuple[list[StereoView], CaptureTruth]:
    """Photograph `mesh` with the preset's ring of stereo pairs (or the given left cameras).

    The ring looks at `bounds` (lo, hi), default the mesh's bounding box - pass the
    element's ``scene.params["bounds"]`` when the mesh carries a large ground. Texture
    is weakened by ``preset.texture_strength`` on top of the appearance's own. Pose noise
    is drawn per pair (the rig moves as one) and only the noisy pose reaches the view.
    """
    if cameras is None:
        lo, hi = bounds if bounds is not None else (mesh.vertices.min(0), mesh.vertices.max(0))
        cameras = camera_path(preset.camera_path(), lo, hi, rng)
    app = replace(appearance,
                  texture_strength=appearance.texture_strength * preset.texture_strength)
    rs = RaycastScene.from_mesh(mesh)
    views, truth = [], CaptureTruth([], [], [])
    for cam in cameras:
        left = render(mesh, cam, app, rng, rs)
        right = render(mesh, stereo_partner(cam, preset.baseline), app, rng, rs)
        noisy = replace(cam, world_from_camera=_perturb_pose(
            cam.world_from_camera, preset.rotation_noise_deg, preset.translation_noise_m, rng))
        views.append(StereoView(left.rgb, right.rgb, noisy, preset.baseline))
        truth.cameras.append(cam)
        truth.depth.append(left.depth)
        truth.label.append(left.label)
    return views, truth

# ---------------------------------------------------------------------------- stereo


def _grey_u8(rgb: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor((np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8), cv2.COLOR_RGB2GRAY)


def _disparity_window(view: StereoView, preset: ReconstructionPreset) -> tuple[int, int]:
    """(min_disparity, num_disparities) covering the preset's depth range for this view."""
    fb = view.camera.fx * view.baseline
    near, far = (f * preset.distance for f in preset.depth_range)
    d_min = int(math.floor(fb / far))
    num = max(16, int(math.ceil((fb / near - d_min) / 16.0)) * 16)  # OpenCV: multiple of 16
    return d_min, num


def stereo_depth(view: StereoView, preset: ReconstructionPreset) -> np.ndarray:
    """(H, W) float32 depth of the left image from StereoSGBM; NaN where no valid match."""
    import cv2

    d_min, num = _disparity_window(view, preset)
    p = preset.sgbm
    matcher = cv2.StereoSGBM_create(
        minDisparity=d_min, numDisparities=num, blockSize=p.block_size,
        P1=p.p1_factor * p.block_size ** 2, P2=p.p2_factor * p.block_size ** 2,
        disp12MaxDiff=p.disp12_max_diff, uniquenessRatio=p.uniqueness,
        speckleWindowSize=p.speckle_window, speckleRange=p.speckle_range, preFilterCap=31)
    disp = matcher.compute(_grey_u8(view.left_rgb), _grey_u8(view.right_rgb))
    # OpenCV returns fixed-point disparities (4 fractional bits); invalid = min_disp - 1.
    disparity = disp.astype(np.float32) / 16.0
    valid = disparity > max(d_min, 0) + 0.0  # d = 0 would be infinitely far
    return disparity_to_depth(disparity, view.camera.fx, view.baseline, valid)


def disparity_to_depth(disparity: np.ndarray, fx: float, baseline: float,
                       valid: np.ndarray) -> np.ndarray:
    depth = np.full(disparity.shape, np.nan, np.float32)
    depth[valid] = fx * baseline / disparity[valid]
    return depth


def _backproject(depth: np.ndarray, camera: Camera) -> tuple[np.ndarray, np.ndarray]:
    """World points (N, 3) of the valid pixels, and their flat pixel indices."""
    v, u = np.nonzero(np.isfinite(depth))
    z = depth[v, u].astype(np.float64)
    pc = np.stack([(u - camera.cx) / camera.fx * z, (v - camera.cy) / camera.fy * z, z], 1)
    pose = camera.world_from_camera
    return pc @ pose[:3, :3].T + pose[:3, 3], v * depth.shape[1] + u


def _agreeing_views(xyz: np.ndarray, own: int, depths: list[np.ndarray],
                    cameras: list[Camera], tolerance: float,
                    candidates: list[int] | None = None) -> np.ndarray:
    """How many views other than `own` (among `candidates`, default all) see each point at
    their own measured depth."""
    count = np.zeros(len(xyz), np.int32)
    for j, (dj, cam) in enumerate(zip(depths, cameras)):
        if j == own or (candidates is not None and j not in candidates):
            continue
        uv, z = cam.project(xyz)
        u, v = np.rint(uv[:, 0]), np.rint(uv[:, 1])
        inside = (z > 0) & (u >= 0) & (u < cam.width) & (v >= 0) & (v < cam.height)
        idx = np.flatnonzero(inside)
        measured = dj[v[idx].astype(np.int64), u[idx].astype(np.int64)]
        # NaN (no match in view j) compares False: it neither confirms nor vetoes.
        agree = np.abs(measured - z[idx]) <= tolerance * z[idx]
        count[idx[agree]] += 1
    return count


def _voxel_merge(xyz: np.ndarray, rgb: np.ndarray, voxel: float) -> tuple[np.ndarray, np.ndarray]:
    """One point per occupied voxel at the mean of its members (several views, one surface)."""
    keys = np.floor(xyz / voxel).astype(np.int64)
    _, inverse, counts = group_cells(keys)
    out_xyz = np.stack([np.bincount(inverse, xyz[:, k]) for k in range(3)], 1) / counts[:, None]
    out_rgb = np.stack([np.bincount(inverse, rgb[:, k]) for k in range(3)], 1) / counts[:, None]
    return out_xyz, out_rgb


@dataclass
class Timings:
    matching_s: list[float] = field(default_factory=list)  # SGBM + depth, per pair
    fusion_s: float = 0.0


def reconstruct_mvs(views: list[StereoView], preset: ReconstructionPreset,
                    timings: Timings | None = None) -> PointCloud:
    """Dense stereo per pair, then multi-view consistent fusion; xyz + rgb, no labels."""
    timings = timings if timings is not None else Timings()
    depths = []
    for view in views:
        t0 = time.perf_counter()
        depths.append(stereo_depth(view, preset))
        timings.matching_s.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    cloud = fuse_depth_maps(depths, [v.camera for v in views], [v.left_rgb for v in views],
                            preset.fusion_tolerance, preset.min_views, preset.voxel_size)
    timings.fusion_s = time.perf_counter() - t0
    return cloud


def fuse_depth_maps(depths: list[np.ndarray], cameras: list[Camera], images: list[np.ndarray],
                    tolerance: float, min_views: int, voxel_size: float,
                    neighbours: int | None = None) -> PointCloud:
    """Multi-view consistent fusion: a pixel's point survives where at least `min_views` - 1
    other depth maps see it at their own depth (relative `tolerance`); survivors are merged
    on a voxel grid of `voxel_size` (the poses' units). xyz + rgb, no labels.

    `neighbours`: check each view against only that many other views, the nearest camera
    centres (None: all). A walk of 72 photos would otherwise cost 72 x 71 reprojections,
    and a view from across the cage, seeing its back through the bars, is no confirmation.
    """
    centres = np.array([cam.center for cam in cameras])
    kept_xyz, kept_rgb = [], []
    for i, (image, depth) in enumerate(zip(images, depths)):
        xyz, pix = _backproject(depth, cameras[i])
        near = None
        if neighbours is not None:
            order = np.argsort(np.linalg.norm(centres - centres[i], axis=1), kind="stable")
            near = [int(j) for j in order if j != i][:neighbours]
        ok = _agreeing_views(xyz, i, depths, cameras, tolerance, near) >= min_views - 1
        kept_xyz.append(xyz[ok])
        kept_rgb.append(image.reshape(-1, 3)[pix[ok]])
    xyz, rgb = np.concatenate(kept_xyz), np.concatenate(kept_rgb).astype(np.float64)
    if len(xyz):
        xyz, rgb = _voxel_merge(xyz, rgb, voxel_size)
    return PointCloud(xyz=xyz.astype(np.float32), rgb=np.clip(rgb, 0, 1).astype(np.float32))


@dataclass(frozen=True)
class Similarity:
    """x' = scale * R x + t: the unknown gauge of an SfM reconstruction."""

    scale: float
    rotation: np.ndarray
    translation: np.ndarray

    def apply(self, xyz: np.ndarray) -> np.ndarray:
        return self.scale * xyz @ self.rotation.T + self.translation

    def invert(self, xyz: np.ndarray) -> np.ndarray:
        return ((xyz - self.translation) @ self.rotation) / self.scale


def similarity_transform(cloud: PointCloud, rng: np.random.Generator,
                         scale_range: tuple[float, float] = (0.3, 3.0),
                         max_translation: float = 10.0) -> tuple[PointCloud, Similarity]:
    """Random log-uniform scale, uniform rotation, translation: SfM has no absolute frame."""
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    w, x, y, z = q
    rot = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                    [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                    [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
    scale = float(np.exp(rng.uniform(*np.log(scale_range))))
    sim = Similarity(scale, rot, rng.uniform(-max_translation, max_translation, 3))
    out = replace(cloud, xyz=sim.apply(cloud.xyz.astype(np.float64)).astype(np.float32),
                  normals=None if cloud.normals is None else (cloud.normals @ rot.T).astype(np.float32))
    return out, sim

# ---------------------------------------------------------------------------- evaluation


def _closest(mesh: LabeledMesh, xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distance, nearest triangle and nearest surface point for each point."""
    import open3d as o3d

    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(mesh.vertices.astype(np.float32)),
                        o3d.core.Tensor(mesh.triangles.astype(np.uint32)))
    ans = scene.compute_closest_points(o3d.core.Tensor(np.asarray(xyz, np.float32)))
    pts = ans["points"].numpy().astype(np.float64)
    prim = ans["primitive_ids"].numpy().astype(np.int64)
    return np.linalg.norm(np.asarray(xyz, np.float64) - pts, axis=1), prim, pts


def label_by_nearest_surface(cloud: PointCloud, mesh: LabeledMesh,
                             max_distance: float = 0.02) -> np.ndarray:
    """Ground truth: the label of the nearest source triangle, IGNORE beyond max_distance
    (a floating outlier is not rebar, whichever bar happens to be nearest)."""
    dist, prim, _ = _closest(mesh, cloud.xyz)
    labels = np.asarray(mesh.labels)[prim].astype(np.int64)
    labels[dist > max_distance] = IGNORE
    return labels


@dataclass
class ReconstructionStats:
    """What a `fast` artefact model is calibrated against. Distances in metres.

    completeness[c]: fraction of the class-c source surface (area-uniform samples) with a
        reconstructed point within ``tolerance`` - the share of the bar a user would see.
    accuracy_median / accuracy_p90: unsigned distance of non-ignored points to the nearest
        surface (depth noise + pose error + fattening, all together).
    thickening[c]: for points labelled c (1, 2), median signed offset along the outward
        normal of the nearest triangle (tubes are wound outward): > 0 means bars come out
        fatter than they are, by that many metres on the radius.
    outlier_fraction: share of points labelled IGNORE (farther than max_distance).
    """

    n_points: int
    points_per_class: dict[int, int]
    completeness: dict[int, float]
    accuracy_median: float
    accuracy_p90: float
    thickening: dict[int, float]
    outlier_fraction: float


def _face_normals(mesh: LabeledMesh) -> np.ndarray:
    v = mesh.vertices[mesh.triangles]
    n = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
    return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-30)


def _in_box(xyz: np.ndarray, region) -> np.ndarray:
    if region is None:
        return np.ones(len(xyz), bool)
    lo, hi = (np.asarray(r, float) for r in region)
    return np.all((xyz >= lo) & (xyz <= hi), axis=1)


def reconstruction_stats(cloud: PointCloud, labels_gt: np.ndarray, mesh: LabeledMesh,
                         tolerance: float = 0.01, region=None, density: float = 20000.0,
                         seed: int = 0) -> ReconstructionStats:
    """Statistics of a reconstruction against its source mesh (see ReconstructionStats).

    `region` (lo, hi) restricts both the surface samples and the points - use the
    element's bounds plus a margin, or completeness of the 50 m site ground means nothing.
    `density` is the surface sampling density (points / m^2) for completeness.
    """
    from scipy.spatial import cKDTree

    from data_tools.rebar.sampling import sample_surface

    keep = _in_box(cloud.xyz, region)
    xyz, labels = cloud.xyz[keep].astype(np.float64), np.asarray(labels_gt)[keep]
    surface = sample_surface(mesh, density, np.random.default_rng(seed))
    s_keep = _in_box(surface.xyz, region)
    s_xyz, s_lab = surface.xyz[s_keep], surface.labels[s_keep]
    near = (cKDTree(xyz).query(s_xyz, distance_upper_bound=tolerance)[0] <= tolerance
            if len(xyz) else np.zeros(len(s_xyz), bool))
    completeness = {int(c): float(near[s_lab == c].mean()) for c in np.unique(s_lab)}

    dist, prim, closest = _closest(mesh, xyz) if len(xyz) else (np.zeros(0),) * 3
    good = labels != IGNORE
    offset = ((xyz - closest) * _face_normals(mesh)[prim]).sum(1) if len(xyz) else dist
    thick = {c: float(np.median(offset[labels == c])) if (labels == c).any() else math.nan
             for c in (1, 2)}
    return ReconstructionStats(
        n_points=int(len(xyz)),
        points_per_class={int(c): int((labels == c).sum()) for c in (0, 1, 2, IGNORE)},
        completeness=completeness,
        accuracy_median=float(np.median(dist[good])) if good.any() else math.nan,
        accuracy_p90=float(np.percentile(dist[good], 90)) if good.any() else math.nan,
        thickening=thick,
        outlier_fraction=float((~good).mean()) if len(xyz) else math.nan)
