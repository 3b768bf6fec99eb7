"""Real-SfM target scenes and their true-pose control, with per-scene statistics (issue 38).

For each scene (element types stratified and scene seeds drawn as a rebar3d dataset's
target_test with the same --seed: ``draw_split_scenes``), each mode of --modes runs:

- ``sfm``: walk-around photos -> COLMAP (intrinsics + poses from the photos alone) ->
  rectified neighbouring pairs + StereoSGBM + fusion -> the user's preparation
  (reference length, levelling); ``data_tools.sfm_target``;
- ``sfm_true_poses``: the SAME photos and dense step on the renderer's cameras (control:
  what changes between the two is SfM alone);
- ``mvs``: the existing stereo-rig capture of the same cage, for reference.

Per scene it records views registered, the camera-centre error after the similarity fit,
wall time per stage, and ``reconstruction_stats`` (completeness per class, accuracy,
thickening, outliers) in the true frame. A scene where COLMAP fails is recorded as failed
and counts against the registration figures (0 registered). Clouds (prepared, as written
by ``rebar3d --mode sfm``) and labels go to --out/MODE/scene_XXXX.ply / _labels.npy; the
records to --out/records.json (rewritten after every scene, so a long run can be watched
and resumed: scenes already recorded are skipped); --report writes a markdown summary
with the command, CPU model and commit.

    python experiments/sfm_test_set.py --out data/sfm_test --scenes 12 --seed 0 \
        --modes sfm sfm_true_poses mvs --report experiments/results/rebar3d/sfm_test_set.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from data_tools.colmap_sfm import ColmapError, ColmapSettings
from data_tools.io import PointCloud, write_cloud
from data_tools.photogrammetry import Timings, label_by_nearest_surface, reconstruction_stats
from data_tools.rebar.cages import ELEMENTS, make_scene
from data_tools.rebar.mesh import scene_to_mesh
from data_tools.sfm_target import SFM_MODES, sfm_target_cloud
from data_tools.target_dataset import (
    CROP_MARGIN,
    draw_split_scenes,
    reconstruction_setup,
    target_cloud,
)
from data_tools.walk_around import WALK_AROUND_PRESETS

MODES = (*SFM_MODES, "mvs")
LABEL_DISTANCE = 0.02


def _stats(xyz_true: np.ndarray, element: str, scene_seed: int, site) -> tuple[dict, np.ndarray]:
    """reconstruction_stats of a cloud given in the true frame (as the mvs mode's are made)."""
    scene = make_scene(element, scene_seed)
    lo, hi = (np.asarray(b, float) for b in scene.params["bounds"])
    cloud = PointCloud(np.asarray(xyz_true, np.float32))
    labels = label_by_nearest_surface(cloud, site, LABEL_DISTANCE)
    st = reconstruction_stats(cloud, labels, scene_to_mesh(scene), region=(lo - [0.1, 0.1, 0.02], hi + 0.1))
    return {"stats": asdict(st)}, labels


def run_scene(args, mode: str, index: int, element: str, scene_seed: int, out: Path) -> dict:
    recon = reconstruction_setup(args.preset, args.capture, args.image_size)
    folder = out / mode
    folder.mkdir(parents=True, exist_ok=True)
    name = f"scene_{index:04d}"
    record = {"mode": mode, "index": index, "element": element, "scene_seed": scene_seed}
    t0 = time.perf_counter()
    try:
        if mode == "mvs":
            timings = Timings()
            cloud, site, (lo, hi) = target_cloud(element, scene_seed, "mvs", recon, args.preset, args.capture,
                                                 timings)
            keep = np.all((cloud.xyz >= lo - CROP_MARGIN) & (cloud.xyz <= hi + CROP_MARGIN), axis=1)
            cloud, true_xyz = PointCloud(cloud.xyz[keep], cloud.rgb[keep]), cloud.xyz[keep]
            record.update(views=recon.n_views, registered=recon.n_views, seconds={
                "dense_matching": round(sum(timings.matching_s), 3), "fusion": round(timings.fusion_s, 3),
                "total": round(time.perf_counter() - t0, 3)})
        else:
            walk = WALK_AROUND_PRESETS[args.walk]
            if args.views:
                walk = replace(walk, views_per_loop=args.views)
            record["views"] = walk.n_views
            work = out / "colmap" / name if args.keep_colmap else None
            scene = sfm_target_cloud(element, scene_seed, mode, recon, args.capture, walk,
                                     ColmapSettings(threads=args.threads), CROP_MARGIN, work)
            cloud, true_xyz, site = scene.cloud, scene.true_xyz, scene.site
            record.update(scene.record)
    except (ValueError, ColmapError) as exc:  # a failed scene is a result, not a crash
        record.update(failed=str(exc).splitlines()[0], registered=0,
                      seconds={"total": round(time.perf_counter() - t0, 3)})
        return record
    stats, labels = _stats(true_xyz, element, scene_seed, site)
    record.update(stats, points=len(cloud))
    write_cloud(folder / f"{name}.ply", PointCloud(cloud.xyz, cloud.rgb))
    np.save(folder / f"{name}_labels.npy", labels.astype(np.uint8))
    record.setdefault("seconds", {})["total_with_stats"] = round(time.perf_counter() - t0, 3)
    return record


def _fmt(v, scale=1.0, digits=2) -> str:
    return "-" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{v * scale:.{digits}f}"


def provenance() -> str:
    """Commit (taken when the run starts: the code that ran), CPU model, load."""
    cpu = next((line.split(":", 1)[1].strip() for line in subprocess.run(
        ["lscpu"], capture_output=True, text=True).stdout.splitlines() if line.startswith("Model name")), "?")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "data_tools", "experiments/*.py"],
                           capture_output=True, text=True).stdout.strip()
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    return (f"Commit {commit}{' (data_tools/experiments modified)' if dirty else ''}; CPU {cpu}, "
            f"{platform.machine()}, {os.cpu_count()} cores, load average at start {load}.")


def _mean_stat(records: list[dict], key: str, cls: str | None = None) -> float | None:
    """Mean of stats[key] (or stats[key][cls]) over the records that have a finite value."""
    values = [r["stats"].get(key) for r in records]
    if cls is not None:
        values = [(v or {}).get(cls) for v in values]
    values = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(values)) if values else None


def summary_by_mode(records: list[dict]) -> list[str]:
    """Per mode, over its reconstructed scenes: mean completeness per class, outliers,
    thickening, accuracy and the median wall time (the like-for-like view of SfM's effect)."""
    lines = ["", "Per mode, over the scenes it reconstructed (mean; wall time: median and max):", "",
             "| mode | scenes | completeness bg / main / tie | outliers | thickening main / tie (mm) | "
             "accuracy median (mm) | seconds per scene |", "|---|---|---|---|---|---|---|"]
    for mode in MODES:
        done = [r for r in records if r["mode"] == mode and "stats" in r]
        if not done:
            continue

        comp = " / ".join(_fmt(_mean_stat(done, "completeness", k)) for k in ("0", "1", "2"))
        thick = " / ".join(_fmt(_mean_stat(done, "thickening", k), 1e3, 1) for k in ("1", "2"))
        total = [r["seconds"]["total"] for r in records if r["mode"] == mode and "total" in r.get("seconds", {})]
        attempted = sum(r["mode"] == mode for r in records)
        lines.append(f"| {mode} | {len(done)} of {attempted} | {comp} | "
                     f"{_fmt(_mean_stat(done, 'outlier_fraction'))} | {thick} | "
                     f"{_fmt(_mean_stat(done, 'accuracy_median'), 1e3, 1)} | "
                     f"{np.median(total):.0f} / {np.max(total):.0f} |")
    return lines


def report(records: list[dict], command: str, origin: str, path: Path) -> None:
    lines = [f"# Real-SfM scenes: {len(records)} scene runs", "",
             f"Command: `{command}`", "", origin, "",
             "| mode | scene | element | registered | camera error median / max (mm) | seconds: render, "
             "SIFT, matching, mapping, dense, fusion, total | completeness bg / main / tie | accuracy "
             "median (mm) | thickening main / tie (mm) | outliers |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        s, st = r.get("seconds", {}), r.get("stats", {})
        comp = st.get("completeness", {})
        thick = st.get("thickening", {})
        times = ", ".join(_fmt(s.get(k), digits=0) for k in ("render", "features", "matching", "mapping",
                                                              "dense_matching", "fusion", "total"))
        reg = f"{r.get('registered', 0)} / {r.get('views', '?')}" + (" FAILED" if "failed" in r else "")
        lines.append(
            f"| {r['mode']} | {r['index']} | {r['element']} | {reg} | "
            f"{_fmt(r.get('camera_error_median'), 1e3, 1)} / {_fmt(r.get('camera_error_max'), 1e3, 1)} | "
            f"{times} | {' / '.join(_fmt(comp.get(k, comp.get(int(k)))) for k in ('0', '1', '2'))} | "
            f"{_fmt(st.get('accuracy_median'), 1e3, 1)} | "
            f"{_fmt(thick.get('1', thick.get(1)), 1e3, 1)} / {_fmt(thick.get('2', thick.get(2)), 1e3, 1)} | "
            f"{_fmt(st.get('outlier_fraction'))} |")
    sfm = [r for r in records if r["mode"] == "sfm"]
    if sfm:
        views = sum(r.get("views", 0) for r in sfm)
        reg = sum(r.get("registered", 0) for r in sfm)
        ok = sum(r.get("registered", 0) >= 0.95 * r.get("views", 1) for r in sfm)
        errs = [r["camera_error_median"] for r in sfm if "camera_error_median" in r]
        lines += ["", f"sfm over every attempted scene: {reg} of {views} views registered "
                      f"({100 * reg / max(views, 1):.1f}%); {ok} of {len(sfm)} scenes with >= 95% registered; "
                      f"median of the per-scene median camera-centre errors "
                      f"{_fmt(float(np.median(errs)) if errs else None, 1e3, 1)} mm; "
                      f"{sum(e <= 0.01 for e in errs)} of {len(sfm)} scenes with a median error <= 1 cm."]
    lines += summary_by_mode(records)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for clouds, labels and records.json")
    parser.add_argument("--scenes", type=int, default=12)
    parser.add_argument("--first", type=int, default=0, help="start at this scene index (pilots)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--preset", default="typical")
    parser.add_argument("--capture", default="noon")
    parser.add_argument("--walk", choices=list(WALK_AROUND_PRESETS), default="walk_around")
    parser.add_argument("--views", type=int, default=None, help="photos per loop (default: the walk's)")
    parser.add_argument("--image-size", type=int, nargs=2, default=None, metavar=("W", "H"))
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--elements", nargs="+", choices=list(ELEMENTS), default=None)
    parser.add_argument("--threads", type=int, default=1, help="COLMAP threads")
    parser.add_argument("--keep-colmap", action="store_true", help="keep COLMAP's work folders under --out/colmap")
    parser.add_argument("--report", type=Path, default=None, help="markdown summary to write")
    args = parser.parse_args(argv)
    command = "python experiments/sfm_test_set.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    origin = provenance()
    scenes = draw_split_scenes(args.seed, {"target_test": args.scenes},
                               list(args.elements or ELEMENTS))["target_test"]
    args.out.mkdir(parents=True, exist_ok=True)
    records_path = args.out / "records.json"
    records = json.loads(records_path.read_text()) if records_path.is_file() else []
    done = {(r["mode"], r["index"]) for r in records}
    for index in range(args.first, args.scenes):
        element, scene_seed = scenes[index]
        for mode in args.modes:
            if (mode, index) in done:
                continue
            record = run_scene(args, mode, index, element, scene_seed, args.out)
            print(json.dumps({k: v for k, v in record.items() if k not in ("camera_errors", "true_frame",
                                                                         "walk")}), flush=True)
            records.append(record)
            records_path.write_text(json.dumps(records, indent=1, default=float))
            if args.report:
                report(records, command, origin, args.report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
