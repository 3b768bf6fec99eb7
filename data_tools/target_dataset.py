"""The split 3D dataset the rebar experiment reads: ``python -m data_tools rebar3d``.

Labelled synthetic source clouds sampled from parametric cages, and unlabelled target
clouds reconstructed from the same kind of cages photographed virtually - by the real
dense matcher (``mode="mvs"``, ``data_tools.photogrammetry``) or by the parametric
artefact model (``mode="fast"``, ``data_tools.artefact_model``).

Folder layout::

    source_train/scene_0000.ply        labelled cloud (xyz, normals, rgb, int label)
    source_val/scene_0000.ply          same, other cages
    target_train/scene_0000.ply        reconstructed cloud: xyz + rgb, NO label property
    target_test/scene_0000.ply         reconstructed cloud: xyz + rgb, NO label property
    target_test/scene_0000_labels.npy  (N,) uint8 ground truth in {0, 1, 2, 255}
    oracle_labels/scene_0000_labels.npy  ground truth of target_train/scene_0000.ply, read
                                       only by the train-on-target oracle (kept out of
                                       target_train so that split carries no labels)
    manifest.json                      command, parameters, split sizes, per scene:
                                       element, scene seed, points, label counts
                                       (labelled splits only), similarity, seconds

Split rule (``split_sizes``; ``scenes >= 4``, every split gets at least one scene)::

    source_val   = max(1, round(0.1 * scenes))
    target_test  = max(1, round(0.2 * scenes))
    source_train = ceil(rest / 2), target_train = floor(rest / 2)

so the train-on-target oracle learns from as many cages as the source rows, e.g.
60 scenes -> 21 / 6 / 21 / 12, 12 -> 5 / 1 / 4 / 2, 4 -> 1 / 1 / 1 / 1.

Element types are stratified: each split walks through its own random permutation of
the element list (``numpy.random.default_rng([seed, s])``, s = the split's position in
``SPLITS``), so a split of n scenes holds every type floor(n / types) or ceil(n / types)
times - 6 source_val scenes cover all six types, where independent draws missed ties.
Scene i of split s takes its scene seed from ``numpy.random.default_rng([seed, s, i])``.
A scene seed already used by an earlier scene of any split is drawn again, so no cage
appears in two splits (the seed is the cage: same seed, same cage). The source cloud is
sampled with ``default_rng([scene_seed, 1])`` (as ``data_tools.cages``), the target
capture and reconstruction with ``default_rng([scene_seed, 2])``. Same arguments,
byte-identical .ply and .npy files; only the manifest's timings differ.

Modes ``sfm`` and ``sfm_true_poses`` (``data_tools.sfm_target``) photograph the same site
walking round it with one camera (``walk``, a key of ``walk_around.WALK_AROUND_PRESETS``;
``n_views`` = photos per loop); ``sfm`` lets COLMAP find the intrinsics and poses from the
photos alone, ``sfm_true_poses`` (the control) uses the renderer's; both then match
neighbouring photos densely, fuse, and prepare the cloud as a user's (reference length,
levelling), so their clouds are in metres and upright but in COLMAP's azimuth and origin.
Their manifest entries add views registered, camera-centre errors after the similarity
fit, the preparation report, ``true_frame`` (written cloud -> true frame) and stage times;
``similarity`` does not apply. COLMAP missing is an error naming its package.

Capture (``capture``, a key of ``render.PRESETS``) is independent of the reconstruction
preset: its appearance (light, sky, exposure) always applies, and where the capture
preset moves the camera (close_low, far_high) its ring - distance, height, number of
views, focal length - replaces the reconstruction preset's; the matcher, pose noise and
fusion stay the reconstruction preset's.

Target clouds: the scene's mesh plus a 50 m site ground (``render.extend_ground``, so
photos show ground to the horizon) is captured round the element's bounds with the
reconstruction preset's camera ring; the cloud is cropped to the element's bounds +
``CROP_MARGIN`` m. target_test labels are ``label_by_nearest_surface`` (the nearest
source triangle's label, 255 beyond ``label_distance``), computed before any similarity
transform; target_train's are computed the same way but written to ``oracle_labels/``,
which only the train-on-target oracle reads. With ``similarity=True`` each target cloud gets a random similarity transform
(SfM has no absolute scale or frame) recorded in the manifest (x' = scale R x + t), which
the preparation step must undo. Labels for target_train are never computed.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, replace
from functools import partial
from pathlib import Path

import numpy as np
from tqdm import tqdm

from data_tools import render
from data_tools.artefact_model import (
    ARTEFACT_PRESETS,
    CALIBRATED_PRESETS,
    ArtefactParams,
    fast_reconstruct,
)
from data_tools.artefact_ranges import RANDOMISED, SIMULATED_SOURCES, draw_params, ranges_record
from data_tools.atomic import atomic_folder
from data_tools.colmap_sfm import ColmapNotFound, ColmapSettings, colmap_executable
from data_tools.io import PointCloud, write_cloud
from data_tools.photogrammetry import (
    IGNORE,
    RECONSTRUCTION_PRESETS,
    ReconstructionPreset,
    Timings,
    capture,
    label_by_nearest_surface,
    reconstruct_mvs,
    similarity_transform,
)
from data_tools.rebar.cages import ELEMENTS, make_scene
from data_tools.rebar.generate import _json_default
from data_tools.rebar.mesh import scene_to_mesh
from data_tools.rebar.model import ROLE_LABEL
from data_tools.rebar.sampling import sample_surface
from data_tools.sfm_target import SFM_MODES, write_sfm_target_scene
from data_tools.splits import DatasetFileError, read_manifest
from data_tools.walk_around import WALK_AROUND_PRESETS, WalkAround

__all__ = ["CROP_MARGIN", "MODES", "ORACLE_LABELS", "PARAMS_STREAM", "SPLITS", "build_rebar3d",
           "draw_split_scenes", "randomised_is_current", "reconstruction_setup", "scene_artefact_params",
           "simulate_source",
           "simulated_source_dir", "simulation_record", "split_sizes", "target_cloud"]

SPLITS = ("source_train", "source_val", "target_train", "target_test")
MODES = ("mvs", "fast", "sfm", "sfm_true_poses")
CROP_MARGIN = 0.3  # m round the element's bounds kept in target clouds
ORACLE_LABELS = "oracle_labels"  # folder of target_train ground truth, for the oracle only
MIN_SCENES = 4
# rng stream of the randomised simulation's per-scene parameters, default_rng([seed, 1000, i]):
# apart from the split streams [seed, s] and [seed, s, i] (s = 0..3) of draw_split_scenes
PARAMS_STREAM = 1000


def split_sizes(scenes: int) -> dict[str, int]:
    """Scenes per split (see the module docstring); needs scenes >= 4."""
    if scenes < MIN_SCENES:
        raise ValueError(f"need scenes >= {MIN_SCENES} (one per split), got {scenes}")

    def share(f: float) -> int:
        return max(1, int(math.floor(f * scenes + 0.5)))

    val, test = share(0.1), share(0.2)
    rest = scenes - val - test
    return {"source_train": (rest + 1) // 2, "source_val": val, "target_train": rest // 2,
            "target_test": test}


def draw_split_scenes(seed: int, sizes: dict[str, int],
                      elements: list[str]) -> dict[str, list[tuple[str, int]]]:
    """(element, scene seed) of every scene of every split; element types stratified per
    split, scene seeds all distinct."""
    used: set[int] = set()
    out: dict[str, list[tuple[str, int]]] = {}
    for s, split in enumerate(SPLITS):
        order = np.random.default_rng([seed, s]).permutation(len(elements))
        out[split] = []
        for i in range(sizes.get(split, 0)):
            element = elements[int(order[i % len(elements)])]
            rng = np.random.default_rng([seed, s, i])
            scene_seed = int(rng.integers(2**31))
            while scene_seed in used:  # astronomically rare; keeps splits disjoint for sure
                scene_seed = int(rng.integers(2**31))
            used.add(scene_seed)
            out[split].append((element, scene_seed))
    return out


def capture_ring(recon: ReconstructionPreset, capture: str) -> ReconstructionPreset:
    """`recon` with the camera ring of capture preset `capture` where that preset moves the
    camera (its path differs from the default); otherwise `recon` unchanged."""
    path = render.PRESETS[capture].path
    if path == render.CameraPath():
        return recon
    focal = path.focal_px * recon.image_size[0] / path.image_size[0]  # same field of view
    return replace(recon, distance=path.distance, camera_height=path.camera_height,
                   n_views=path.n_images, focal_px=focal)


def reconstruction_setup(preset: str, capture: str, image_size: tuple[int, int] | None = None,
                         n_views: int | None = None) -> ReconstructionPreset:
    """The camera ring and matcher a dataset's target scenes are captured with."""
    recon = RECONSTRUCTION_PRESETS[preset]
    if n_views is None:  # an explicit view count wins over the capture preset's ring
        recon = capture_ring(recon, capture)
    else:
        recon = replace(capture_ring(recon, capture), n_views=int(n_views))
    if image_size is not None and tuple(image_size) != tuple(recon.image_size):
        recon = recon.at_size(int(image_size[0]), int(image_size[1]))
    return recon


def build_rebar3d(out_dir: str | Path, scenes: int, mode: str, preset: str, seed: int,
                  density: float = 20000.0, elements: list[str] | None = None,
                  similarity: bool = False, progress: bool = True,
                  image_size: tuple[int, int] | None = None, n_views: int | None = None,
                  capture: str = "noon", label_distance: float = 0.02,
                  command: str | None = None, walk: str = "walk_around",
                  colmap_threads: int = 1, workers: int = 1) -> Path:
    """Write the split dataset into `out_dir` (replaced if it exists); returns the folder.

    mode: "mvs" (rendered stereo pairs + StereoSGBM + fusion) or "fast" (artefact model).
    preset: a key of RECONSTRUCTION_PRESETS / ARTEFACT_PRESETS (mild, typical, harsh).
    density: source sampling density, points per m^2.
    image_size (W, H): render at another resolution, same field of view (quick runs).
    n_views: override the preset's number of camera positions (quick runs).
    capture: a key of ``render.PRESETS`` (light and, for close_low / far_high, the camera
    ring); each scene's texture seed is its scene seed.
    mode "sfm" / "sfm_true_poses" (``data_tools.sfm_target``): a walk-around capture (`walk`,
    a key of ``WALK_AROUND_PRESETS``; n_views = photos per loop) reconstructed by COLMAP
    (`colmap_threads`) + rectified pairs + fusion, or the same dense step on the true poses.
    workers: scenes built side by side in that many processes; every scene draws from its
    own seed, so the files are the same for any number of workers (tested).
    """
    elements = list(elements or ELEMENTS)
    unknown = [e for e in elements if e not in ELEMENTS]
    if unknown:
        raise ValueError(f"unknown elements {unknown}; choose from {', '.join(ELEMENTS)}")
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose from {', '.join(MODES)}")
    if preset not in RECONSTRUCTION_PRESETS or preset not in ARTEFACT_PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {', '.join(RECONSTRUCTION_PRESETS)}")
    if capture not in render.PRESETS:
        raise ValueError(f"unknown capture preset {capture!r}; choose from {', '.join(render.PRESETS)}")
    if density <= 0 or label_distance <= 0:
        raise ValueError(f"density and label_distance must be > 0, got {density}, {label_distance}")
    if image_size is not None and (len(image_size) != 2 or min(image_size) < 16):
        raise ValueError(f"image size must be two numbers >= 16 (W H), got {image_size}")
    if n_views is not None and n_views < 2:
        raise ValueError(f"need at least 2 views (the fusion needs two that agree), got {n_views}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    sfm = _sfm_setup(mode, walk, n_views, colmap_threads, similarity)
    sizes = split_sizes(scenes)
    recon = reconstruction_setup(preset, capture, image_size, n_views)
    drawn = draw_split_scenes(seed, sizes, elements)

    t_start = time.perf_counter()
    with atomic_folder(out_dir) as tmp:
        jobs = [(split, i, el, ss) for split in SPLITS for i, (el, ss) in enumerate(drawn[split])]
        entries: dict[str, list[dict]] = {split: [] for split in SPLITS}
        for split in SPLITS:
            (tmp / split).mkdir()
        (tmp / ORACLE_LABELS).mkdir()
        builds = [(tmp, split, i, element, scene_seed, mode, recon, preset, capture, similarity,
                   label_distance, density, sfm) for split, i, element, scene_seed in jobs]
        for (split, *_), entry in zip(jobs, _map_scenes(builds, workers, mode, progress)):
            entries[split].append({"split": split, **entry})
        manifest = {
            "command": command, "seed": seed, "scenes": scenes, "mode": mode, "preset": preset,
            "density": density, "elements": elements, "similarity": similarity,
            "capture": capture, "label_distance": label_distance,
            "crop_margin": CROP_MARGIN, "image_size": list(recon.image_size),
            "n_views": recon.n_views if sfm is None else sfm[0].n_views, "split_sizes": sizes,
            "labels": {**{v: k for k, v in ROLE_LABEL.items()}, IGNORE: "ignore"},
            "reconstruction_preset": asdict(recon),
            "artefact_params": asdict(ARTEFACT_PRESETS[preset]) if mode == "fast" else None,
            "seconds": round(time.perf_counter() - t_start, 3),
            "splits": entries,
        }
        if sfm is not None:  # mvs / fast manifests keep exactly their keys
            manifest.update(walk=walk, walk_around=asdict(sfm[0]), colmap=asdict(sfm[1]))
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1, default=_json_default))
    return Path(out_dir)


def _build_scene(job: tuple) -> dict:
    """One scene of the split dataset (a process-pool task: top level, picklable)."""
    (tmp, split, i, element, scene_seed, mode, recon, preset, capture, similarity,
     label_distance, density, sfm) = job
    folder = tmp / split
    if split.startswith("source"):
        return _source_scene(folder, i, element, scene_seed, density)
    labels_dir = {"target_test": folder, "target_train": tmp / ORACLE_LABELS}[split]
    if sfm is None:
        return write_target_scene(folder, i, element, scene_seed, mode, recon, preset, capture,
                                  similarity, label_distance, labels_dir)
    return write_sfm_target_scene(folder, i, element, scene_seed, mode, recon, capture,
                                  label_distance, labels_dir, *sfm, CROP_MARGIN)


def _one_thread_per_worker() -> None:
    # each worker is one core's worth of work: OpenCV's own threads would oversubscribe
    import cv2

    cv2.setNumThreads(1)


def _map_scenes(builds: list[tuple], workers: int, mode: str, progress: bool) -> Iterator[dict]:
    """Manifest entries of `builds`, in their order, built in `workers` processes."""
    bar = partial(tqdm, total=len(builds), desc=f"rebar3d {mode}", unit="scene", disable=not progress)
    if workers == 1 or len(builds) < 2:
        yield from bar(map(_build_scene, builds))
        return
    # spawned, not forked: a fork of a process whose torch / OpenMP threads hold a lock
    # deadlocks the child (seen in the test suite after a training test)
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=spawn,
                             initializer=_one_thread_per_worker) as pool:
        yield from bar(pool.map(_build_scene, builds))


def _sfm_setup(mode: str, walk: str, n_views: int | None, threads: int,
               similarity: bool) -> tuple[WalkAround, ColmapSettings] | None:
    """(walk-around capture, COLMAP settings) of an sfm mode; None for mvs / fast. Checked
    before anything is built: COLMAP missing is an error naming its package, not a crash
    after the source scenes."""
    if mode not in SFM_MODES:
        return None
    if walk not in WALK_AROUND_PRESETS:
        raise ValueError(f"unknown walk-around preset {walk!r}; choose from {', '.join(WALK_AROUND_PRESETS)}")
    if similarity:
        raise ValueError("--similarity does not apply to the sfm modes: their clouds come in COLMAP's "
                         "frame and are scaled and levelled by the preparation step")
    if threads < 1:
        raise ValueError(f"COLMAP threads must be >= 1, got {threads}")
    try:
        if mode == "sfm":  # the true-pose control runs no SfM
            colmap_executable()
    except ColmapNotFound as exc:
        raise ValueError(str(exc)) from None
    walk_around = WALK_AROUND_PRESETS[walk]
    if n_views is not None:
        walk_around = replace(walk_around, views_per_loop=int(n_views))
    return walk_around, ColmapSettings(threads=threads)


def _counts(labels: np.ndarray) -> dict[str, int]:
    values, counts = np.unique(labels, return_counts=True)
    return {str(int(v)): int(c) for v, c in zip(values, counts)}


def _source_scene(folder: Path, i: int, element: str, scene_seed: int, density: float) -> dict:
    t0 = time.perf_counter()
    mesh = scene_to_mesh(make_scene(element, scene_seed))
    cloud = sample_surface(mesh, density, np.random.default_rng([scene_seed, 1]))
    name = f"scene_{i:04d}"
    write_cloud(folder / f"{name}.ply", cloud)
    return {"index": i, "file": f"{name}.ply", "element": element, "scene_seed": scene_seed,
            "points": len(cloud), "label_counts": _counts(cloud.labels),
            "seconds": round(time.perf_counter() - t0, 3)}


def target_cloud(element: str, scene_seed: int, mode: str, recon, preset: str,
                 capture_preset: str = "noon", timings: Timings | None = None,
                 params: ArtefactParams | None = None):
    """One target scene, uncropped: (cloud without labels, site mesh, (lo, hi) bounds).

    Shared by ``build_rebar3d`` and the benchmark; rng ``default_rng([scene_seed, 2])``.
    `params` replaces ``ARTEFACT_PRESETS[preset]`` in fast mode (the randomised simulation).
    """
    scene = make_scene(element, scene_seed)
    site = render.extend_ground(scene_to_mesh(scene))  # phone photos see ground to the horizon
    lo, hi = (np.asarray(b, float) for b in scene.params["bounds"])
    app = replace(render.PRESETS[capture_preset].appearance, texture_seed=scene_seed)
    rng = np.random.default_rng([scene_seed, 2])
    if mode == "mvs":
        views, _truth = capture(site, recon, app, rng, bounds=(lo, hi))  # truth unused
        cloud = reconstruct_mvs(views, recon, timings)
    else:
        cameras = render.camera_path(recon.camera_path(), lo, hi, rng)
        params = ARTEFACT_PRESETS[preset] if params is None else params
        cloud, _source_labels = fast_reconstruct(site, cameras, params, rng, app)
    return PointCloud(np.asarray(cloud.xyz, np.float32), cloud.rgb), site, (lo, hi)


def write_target_scene(folder: Path, i: int, element: str, scene_seed: int, mode: str, recon,
                  preset: str, capture_preset: str, similarity: bool, label_distance: float,
                  labels_dir: Path | None) -> dict:
    """Reconstruct, crop and write one target scene; labels go to `labels_dir` if given."""
    t0 = time.perf_counter()
    timings = Timings()
    cloud, site, (lo, hi) = target_cloud(element, scene_seed, mode, recon, preset, capture_preset,
                                         timings)
    keep = np.all((cloud.xyz >= lo - CROP_MARGIN) & (cloud.xyz <= hi + CROP_MARGIN), axis=1)
    cloud = PointCloud(cloud.xyz[keep], None if cloud.rgb is None else cloud.rgb[keep])
    name = f"scene_{i:04d}"
    entry = {"index": i, "file": f"{name}.ply", "element": element, "scene_seed": scene_seed,
             "points": len(cloud),
             "bounds": [lo.tolist(), hi.tolist()]}
    if labels_dir is not None:  # in the true frame, before any similarity transform
        labels = label_by_nearest_surface(cloud, site, label_distance).astype(np.uint8)
        np.save(labels_dir / f"{name}_labels.npy", labels)
        if labels_dir == folder:  # target_train's stay out of its manifest entry too
            entry["labels_file"] = f"{name}_labels.npy"
            entry["label_counts"] = _counts(labels)
    if similarity:
        cloud, sim = similarity_transform(cloud, np.random.default_rng([scene_seed, 3]))
        entry["similarity"] = {"scale": sim.scale, "rotation": sim.rotation.tolist(),
                               "translation": sim.translation.tolist()}
    write_cloud(folder / f"{name}.ply", PointCloud(cloud.xyz, cloud.rgb, labels=None))
    if mode == "mvs":
        entry["matching_seconds"] = round(float(sum(timings.matching_s)), 3)
        entry["fusion_seconds"] = round(timings.fusion_s, 3)
    entry["seconds"] = round(time.perf_counter() - t0, 3)
    return entry


def simulated_source_dir(dataset: str | Path, preset: str) -> Path:
    return Path(dataset) / f"simulated_source-fast-{preset}"


def scene_artefact_params(preset: str, seed: int | None, index: int) -> ArtefactParams:
    """The artefact parameters of simulated source scene `index`: the preset's, or for
    "randomised" its own draw from the committed ranges with rng
    ``default_rng([seed, PARAMS_STREAM, index])`` (seed: the dataset's)."""
    if preset == RANDOMISED:
        return draw_params(np.random.default_rng([seed, PARAMS_STREAM, index]))
    return ARTEFACT_PRESETS[preset]


def simulation_record(preset: str) -> dict:
    """What a simulated folder's manifest says about its parameters and their calibration."""
    if preset == RANDOMISED:
        return {"what": "fast artefact model applied to the source_train cages (NO target-domain "
                        "calibration: per-scene draws from committed prior ranges)",
                "target_calibrated": False, "artefact_params": None,
                "artefact_ranges": ranges_record(),
                "params_rng": f"default_rng([dataset seed, {PARAMS_STREAM}, scene index])"}
    how = ("CALIBRATED: uses target-domain calibration, preset fitted to mvs statistics"
           if preset in CALIBRATED_PRESETS else "hand-set preset, not fitted to the target")
    return {"what": f"fast artefact model applied to the source_train cages ({how})",
            "target_calibrated": preset in CALIBRATED_PRESETS,
            "artefact_params": asdict(ARTEFACT_PRESETS[preset])}


def randomised_is_current(dataset: str | Path) -> bool:
    """Whether the dataset's randomised simulated folder holds what ``simulate_source`` would
    draw now (same ranges, same parameters per scene); False where it is missing. Edited
    ranges must not leave scenes drawn from the old ones in use unnoticed."""
    sim = simulated_source_dir(dataset, RANDOMISED)
    if not (sim / "manifest.json").is_file():
        return False
    recorded, seed = read_manifest(sim), read_manifest(Path(dataset)).get("seed")
    plain = lambda x: json.loads(json.dumps(x, default=_json_default))  # noqa: E731 (as on disk)
    drawn = lambda i: plain(asdict(scene_artefact_params(RANDOMISED, seed, i)))  # noqa: E731
    return (recorded.get("artefact_ranges") == plain(ranges_record())
            and all(e.get("artefact_params") == drawn(e["index"])
                    for e in recorded.get("splits", {}).get(sim.name, [])))


def simulate_source(dataset: str | Path, preset: str = "typical", progress: bool = True,
                    label_distance: float | None = None) -> Path:
    """Labelled "photogrammetric" clouds of the dataset's source_train cages: the fast
    artefact model applied to each source cage, captured with the dataset's own camera ring
    (capture preset, image size, views), cropped like the target clouds, and labelled by
    nearest surface of the cage - ground truth carried over exactly as for target_test.
    Extra labelled training data for a user who has only the BIM model.

    preset: a key of ``ARTEFACT_PRESETS`` - typical and harsh are CALIBRATED (fitted to the
    mvs statistics, i.e. target-domain calibration), mild is hand-set - or "randomised":
    every scene draws its own parameters from the committed ranges of
    ``data_tools.artefact_ranges`` (no target calibration; ``scene_artefact_params``),
    recorded in its manifest entry. The manifest says which ("target_calibrated").

    Written once to ``<dataset>/simulated_source-fast-<preset>/`` (scene_XXXX.ply with a
    label property, same index as source_train, and manifest.json whose "splits" holds
    the folder's own name, so readers treat it as one more split); returns that folder.
    The capture rng is ``default_rng([scene_seed, 2])``, as for target scenes; no cage of
    another split is read."""
    dataset = Path(dataset)
    manifest = read_manifest(dataset)
    if preset not in SIMULATED_SOURCES:
        raise ValueError(f"unknown artefact preset {preset!r}; choose from {', '.join(SIMULATED_SOURCES)}")
    entries = manifest.get("splits", {}).get("source_train")
    if not entries:
        raise DatasetFileError(f"{dataset / 'manifest.json'}: no source_train scenes to simulate")
    seed = manifest.get("seed")
    if preset == RANDOMISED and seed is None:
        raise DatasetFileError(f"{dataset / 'manifest.json'}: no dataset seed to draw the randomised "
                               "parameters from")
    capture_preset = manifest.get("capture", "noon")
    # the dataset's own camera ring (randomised names no ring: typical where none is recorded)
    ring = manifest.get("preset", "typical" if preset == RANDOMISED else preset)
    recon = reconstruction_setup(ring, capture_preset,
                                 manifest.get("image_size"), manifest.get("n_views"))
    label_distance = float(label_distance or manifest.get("label_distance", 0.02))
    out = simulated_source_dir(dataset, preset)
    t_start = time.perf_counter()
    with atomic_folder(out) as tmp:
        written = []
        for e in tqdm(entries, desc=f"simulate source ({preset})", unit="scene", disable=not progress):
            params = scene_artefact_params(preset, seed, int(e["index"]))
            entry = _simulated_scene(tmp, e, recon, capture_preset, label_distance, params)
            if preset == RANDOMISED:
                entry["artefact_params"] = asdict(params)
            written.append(entry)
        (tmp / "manifest.json").write_text(json.dumps({
            **simulation_record(preset), "preset": preset, "capture": capture_preset,
            "label_distance": label_distance, "seconds": round(time.perf_counter() - t_start, 3),
            "splits": {out.name: written}}, indent=1, default=_json_default))
    return out


def _simulated_scene(folder: Path, e: dict, recon, capture_preset: str, label_distance: float,
                     params: ArtefactParams) -> dict:
    """One source cage through the fast model: cropped, labelled by nearest surface, written."""
    t0 = time.perf_counter()
    element, scene_seed = str(e["element"]), int(e["scene_seed"])
    cloud, site, (lo, hi) = target_cloud(element, scene_seed, "fast", recon, "", capture_preset,
                                         params=params)
    keep = np.all((cloud.xyz >= lo - CROP_MARGIN) & (cloud.xyz <= hi + CROP_MARGIN), axis=1)
    cloud = PointCloud(cloud.xyz[keep], None if cloud.rgb is None else cloud.rgb[keep])
    labels = label_by_nearest_surface(cloud, site, label_distance).astype(np.int64)
    name = f"scene_{int(e['index']):04d}.ply"
    write_cloud(folder / name, PointCloud(cloud.xyz, cloud.rgb, labels=labels))
    return {"index": int(e["index"]), "file": name, "element": element, "scene_seed": scene_seed,
            "points": len(cloud), "label_counts": _counts(labels),
            "seconds": round(time.perf_counter() - t0, 3)}
