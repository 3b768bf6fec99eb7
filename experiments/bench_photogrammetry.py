"""Benchmark of the photogrammetric target pipeline on one column cage (issue 4).

Measures, in one run on the same machine:

- rendering: camera rays per second of ``render.render`` (shading, textures, shadow
  rays, sensor model included) beside Open3D's raw ``RaycastingScene.cast_rays`` on the
  very same rays (the Embree floor the renderer builds on);
- StereoSGBM: seconds per stereo pair (median over the preset's pairs);
- seconds per target scene, as ``build_rebar3d`` spends them (capture or raycast,
  reconstruction, crop, nearest-surface labels, PLY + labels written) in ``mvs`` and
  ``fast`` mode, and their ratio.

Prints a table; writes nothing.

    python experiments/bench_photogrammetry.py [--seed 0] [--preset typical] [--image-size 960 720]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from data_tools import render
from data_tools.photogrammetry import RECONSTRUCTION_PRESETS
from data_tools.rebar.cages import make_scene
from data_tools.rebar.mesh import scene_to_mesh
from data_tools.target_dataset import write_target_scene


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="scene seed of the column cage")
    parser.add_argument("--preset", default="typical", choices=list(RECONSTRUCTION_PRESETS))
    parser.add_argument("--image-size", type=int, nargs=2, default=(960, 720), metavar=("W", "H"))
    parser.add_argument("--repeats", type=int, default=3, help="render timings: best of this many")
    args = parser.parse_args()
    import open3d as o3d

    recon = RECONSTRUCTION_PRESETS[args.preset].at_size(*args.image_size)
    scene = make_scene("column", args.seed)
    site = render.extend_ground(scene_to_mesh(scene))
    lo, hi = (np.asarray(b, float) for b in scene.params["bounds"])
    appearance = render.PRESETS["noon"].appearance
    camera = render.camera_path(recon.camera_path(), lo, hi, np.random.default_rng(0))[0]
    rs = render.RaycastScene.from_mesh(site)
    ray_array = render.rays(camera).reshape(-1, 6)
    ray_tensor = o3d.core.Tensor(ray_array)
    n_rays = len(ray_array)
    rs.scene.cast_rays(ray_tensor)  # warm-up (BVH build is lazy)
    render.render(site, camera, appearance, np.random.default_rng(0), rs)
    t_raw = best_of(lambda: rs.scene.cast_rays(ray_tensor), args.repeats)
    t_render = best_of(lambda: render.render(site, camera, appearance, np.random.default_rng(0), rs),
                       args.repeats)

    with tempfile.TemporaryDirectory() as tmp:
        entries = {}
        for mode in ("mvs", "fast"):
            folder = Path(tmp) / mode
            folder.mkdir()
            entries[mode] = write_target_scene(folder, 0, "column", args.seed, mode, recon, args.preset,
                                          "noon", similarity=False, label_distance=0.02,
                                          labels_dir=folder)
    mvs, fast = entries["mvs"], entries["fast"]
    pairs = recon.n_views
    rows = [
        ("rendering, render.render (rays/s)", f"{n_rays / t_render:,.0f}",
         f"{t_render:.3f} s per {args.image_size[0]}x{args.image_size[1]} image"),
        ("Open3D RaycastingScene.cast_rays (rays/s)", f"{n_rays / t_raw:,.0f}",
         f"same rays; render is {t_raw / t_render:.2f}x raw speed"),
        ("StereoSGBM (s per pair)", f"{mvs['matching_seconds'] / pairs:.3f}",
         f"{pairs} pairs, {mvs['matching_seconds']:.1f} s matching + {mvs['fusion_seconds']:.1f} s fusion"),
        ("target scene, mvs (s)", f"{mvs['seconds']:.1f}", f"{mvs['points']:,} points after crop"),
        ("target scene, fast (s)", f"{fast['seconds']:.2f}", f"{fast['points']:,} points after crop"),
        ("mvs / fast", f"{mvs['seconds'] / fast['seconds']:.0f}x", ""),
    ]
    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    print(f"# Photogrammetry benchmark: column cage seed {args.seed}, preset {args.preset}, "
          f"{args.image_size[0]}x{args.image_size[1]}, {pairs} stereo pairs")
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"OMP_NUM_THREADS={threads}, Open3D {o3d.__version__}\n")
    width = max(len(r[0]) for r in rows)
    print(f"| {'what'.ljust(width)} | value | note |")
    print(f"|{'-' * (width + 2)}|---|---|")
    for what, value, note in rows:
        print(f"| {what.ljust(width)} | {value} | {note} |")


if __name__ == "__main__":
    main()
