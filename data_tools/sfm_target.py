"""One ``sfm`` target scene: walk round the cage, COLMAP, dense stereo, a user's preparation.

The ``sfm`` mode of ``python -m data_tools rebar3d`` (``target_dataset.write_target_scene``
dispatches here), and its control ``sfm_true_poses``:

1. the scene's site is photographed walking round it (``walk_around``: one camera, photos
   a few degrees apart; light from the capture preset, ring from the reconstruction preset);
2. ``sfm``: COLMAP estimates one shared camera and every pose from the photos alone, and
   the dense step runs on its cameras (``sfm_reconstruction.reconstruct_sfm``);
   ``sfm_true_poses``: the same photos and the same dense step on the renderer's cameras;
3. the cloud, in COLMAP's frame and unit, is prepared as a user's cloud is
   (``site_dataset.prepare_site_cloud``): scaled to metres by a reference length, then
   levelled (ground plane -> z = 0, +Z up, ``levelling.level(up="auto")``). The reference
   length is a tape measurement between two opposite corners of the element's bounding
   box, whose ends the user picks in the cloud with ``REFERENCE_PICK_STD`` of error each
   (simulated: the truth's corners carried into the SfM frame by the similarity fit,
   plus that error) - a stand-in for the bar length or spacing a user would measure;
4. evaluation only: the similarity fit of the registered camera centres onto the true
   ones carries the cloud into the true frame, where it is cropped to the element's bounds
   + ``CROP_MARGIN`` (the crop box a user would draw) and labelled by nearest surface.

The written cloud is the prepared one (metres, levelled; its azimuth and horizontal origin
are COLMAP's); the manifest entry records the views registered, each camera-centre error
after the similarity fit, the preparation report, the map from the written cloud to the
true frame (``true_frame``: x_true = scale R x + t), and the wall time of every stage.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from data_tools import render
from data_tools.colmap_sfm import ColmapSettings
from data_tools.io import PointCloud, write_cloud
from data_tools.photogrammetry import ReconstructionPreset, Similarity, label_by_nearest_surface
from data_tools.prepare import scale_from_reference
from data_tools.rebar.cages import make_scene
from data_tools.rebar.mesh import LabeledMesh, scene_to_mesh
from data_tools.sfm_reconstruction import (
    DenseTimings,
    camera_centre_errors,
    dense_cloud,
    reconstruct_sfm,
)
from data_tools.site_dataset import prepare_site_cloud
from data_tools.walk_around import WALK_AROUND_PRESETS, WalkAround, capture_walk_around

__all__ = ["REFERENCE_PICK_STD", "SFM_MODES", "SfmTargetScene", "sfm_target_cloud",
           "write_sfm_target_scene"]

SFM_MODES = ("sfm", "sfm_true_poses")
REFERENCE_PICK_STD = 0.003  # m per picked end of the reference length (clicking on a cloud)
IDENTITY = Similarity(1.0, np.eye(3), np.zeros(3))


@dataclass(eq=False)
class SfmTargetScene:
    """What one sfm scene made: the prepared cloud and everything the manifest records."""

    cloud: PointCloud  # prepared: metres, levelled, cropped
    true_xyz: np.ndarray  # the same points in the renderer's frame (evaluation only)
    site: LabeledMesh  # the scene's mesh with its site ground
    bounds: tuple[np.ndarray, np.ndarray]  # the element's (lo, hi), true frame
    record: dict  # registration, camera errors, preparation, timings (JSON-ready)


def _reference_scale(sim: Similarity, lo: np.ndarray, hi: np.ndarray,
                     rng: np.random.Generator) -> float:
    """Metres per cloud unit from a tape measurement lo -> hi picked in the cloud (module doc)."""
    ends = [sim.invert((p + rng.normal(0, REFERENCE_PICK_STD, 3))[None])[0] for p in (lo, hi)]
    return scale_from_reference(ends[0], ends[1], float(np.linalg.norm(hi - lo)))


def _true_frame(sim: Similarity, scale: float, levelling: np.ndarray) -> Similarity:
    """x_true of a written point x: written = L (scale x_sfm), x_true = sim(x_sfm)."""
    rot_l, t_l = levelling[:3, :3], levelling[:3, 3]
    return Similarity(sim.scale / scale, sim.rotation @ rot_l.T,
                      sim.translation - (sim.scale / scale) * sim.rotation @ rot_l.T @ t_l)


def sfm_target_cloud(element: str, scene_seed: int, mode: str, recon: ReconstructionPreset,
                     capture_preset: str = "noon", walk: WalkAround = WALK_AROUND_PRESETS["walk_around"],
                     colmap: ColmapSettings | None = None, crop_margin: float = 0.3,
                     work_dir: str | Path | None = None) -> SfmTargetScene:
    """One scene through steps 1-4 of the module docstring; rng ``default_rng([scene_seed, 2])``
    for the capture (as the other modes), ``[scene_seed, 4]`` for the reference picks.
    `work_dir` keeps COLMAP's photos, database, models and log (default: a temporary folder)."""
    if mode not in SFM_MODES:
        raise ValueError(f"unknown sfm mode {mode!r}; choose from {', '.join(SFM_MODES)}")
    t0 = time.perf_counter()
    scene = make_scene(element, scene_seed)
    site = render.extend_ground(scene_to_mesh(scene))
    lo, hi = (np.asarray(b, float) for b in scene.params["bounds"])
    app = replace(render.PRESETS[capture_preset].appearance, texture_seed=scene_seed)
    capture, truth = capture_walk_around(site, walk, recon, app, np.random.default_rng([scene_seed, 2]),
                                         (lo, hi))
    seconds = {"render": time.perf_counter() - t0}
    record: dict = {"views": len(capture.images)}
    if mode == "sfm":
        with tempfile.TemporaryDirectory(prefix="colmap-") as tmp:
            sfm = reconstruct_sfm(capture, recon, work_dir if work_dir is not None else tmp, colmap)
        sim, errors = camera_centre_errors(sfm.cameras, truth.cameras)
        cloud, dense = sfm.cloud, sfm.dense
        seconds.update({k: v for k, v in sfm.run.seconds.items()})
        record.update(registered=len(sfm.registered), colmap_attempts=sfm.run.attempts,
                      camera_error_median=float(np.median(errors)), camera_error_max=float(errors.max()),
                      camera_errors=[round(float(e), 5) for e in errors], similarity_scale=sim.scale,
                      focal_px=round(float(next(c.fx for c in sfm.cameras if c is not None)), 2),
                      focal_px_true=recon.focal_px)
    else:
        dense = DenseTimings()
        cloud = dense_cloud(capture.images, truth.cameras, recon, dense)
        sim = IDENTITY
        record.update(registered=len(capture.images))
    seconds.update(dense_matching=sum(dense.matching_s), fusion=dense.fusion_s)

    if len(cloud) < 100:  # nothing a user could level or crop
        raise ValueError(f"{element} scene {scene_seed} ({mode}): the dense step kept only {len(cloud)} points")
    t1 = time.perf_counter()
    scale = _reference_scale(sim, lo, hi, np.random.default_rng([scene_seed, 4]))
    prepared, report = prepare_site_cloud(cloud, Path(f"{element}-{scene_seed}"), scale, "auto", None)
    true_frame = _true_frame(sim, scale, _levelling_transform(report))
    true_xyz = true_frame.apply(prepared.xyz.astype(np.float64))
    keep = np.all((true_xyz >= lo - crop_margin) & (true_xyz <= hi + crop_margin), axis=1)
    prepared = PointCloud(prepared.xyz[keep], None if prepared.rgb is None else prepared.rgb[keep])
    seconds["preparation"] = time.perf_counter() - t1
    seconds["total"] = time.perf_counter() - t0
    record.update(
        reference_scale=scale, preparation=report["report"], preparation_warnings=report["warnings"],
        true_frame={"scale": true_frame.scale, "rotation": true_frame.rotation.tolist(),
                    "translation": true_frame.translation.tolist()},
        walk=asdict(walk), seconds={k: round(float(v), 3) for k, v in seconds.items()})
    return SfmTargetScene(prepared, true_xyz[keep], site, (lo, hi), record)


def _levelling_transform(report: dict) -> np.ndarray:
    """The 4x4 levelling transform a ``prepare_site_cloud`` report records."""
    return np.asarray(report["levelling"]["transform"], np.float64)


def write_sfm_target_scene(folder: Path, i: int, element: str, scene_seed: int, mode: str,
                           recon: ReconstructionPreset, capture_preset: str, label_distance: float,
                           labels_dir: Path | None, walk: WalkAround, colmap: ColmapSettings,
                           crop_margin: float) -> dict:
    """Reconstruct, prepare, crop and write one sfm scene; labels (nearest surface in the
    true frame) go to `labels_dir` if given - as ``target_dataset.write_target_scene``."""
    t0 = time.perf_counter()
    out = sfm_target_cloud(element, scene_seed, mode, recon, capture_preset, walk, colmap, crop_margin)
    name = f"scene_{i:04d}"
    lo, hi = out.bounds
    entry = {"index": i, "file": f"{name}.ply", "element": element, "scene_seed": scene_seed,
             "points": len(out.cloud), "bounds": [lo.tolist(), hi.tolist()], **out.record}
    if labels_dir is not None:
        labels = label_by_nearest_surface(PointCloud(out.true_xyz.astype(np.float32)), out.site,
                                          label_distance).astype(np.uint8)
        np.save(labels_dir / f"{name}_labels.npy", labels)
        if labels_dir == folder:  # target_train's stay out of its manifest entry too
            values, counts = np.unique(labels, return_counts=True)
            entry["labels_file"] = f"{name}_labels.npy"
            entry["label_counts"] = {str(int(v)): int(c) for v, c in zip(values, counts)}
    write_cloud(folder / f"{name}.ply", PointCloud(out.cloud.xyz, out.cloud.rgb, labels=None))
    entry["seconds"] = round(time.perf_counter() - t0, 3)
    return entry
