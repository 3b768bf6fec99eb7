"""Rendering speed beside Open3D's raw raycasting, measured in the same run.

    python experiments/bench_render.py [--element column] [--size 640x480] [--repeats 5]

For one cage scene (with the site ground added, as captures render it) and one view of
the "noon" preset: rays/s of the full ``render`` (primary rays, texture, shading, shadow
rays, sensor) and of ``RaycastingScene.cast_rays`` alone on the same rays, median of
`--repeats` runs each, and their ratio (the renderer's overhead over Embree).
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace

import numpy as np

from data_tools.rebar.cages import make_scene
from data_tools.rebar.mesh import scene_to_mesh
from data_tools.render import PRESETS, RaycastScene, camera_path, extend_ground, rays, render


def _median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up: first calls pay for imports, texture loading and Embree's BVH build
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--element", default="column")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size", default="640x480")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    width, height = (int(s) for s in args.size.split("x"))

    scene = make_scene(args.element, args.seed)
    mesh = extend_ground(scene_to_mesh(scene))
    settings = PRESETS["noon"]
    path = replace(settings.path, image_size=(width, height),
                   focal_px=settings.path.focal_px * width / settings.path.image_size[0])
    lo, hi = np.array(scene.params["bounds"])
    cam = camera_path(path, lo, hi, np.random.default_rng(args.seed))[0]

    t0 = time.perf_counter()
    rs = RaycastScene.from_mesh(mesh)
    build = time.perf_counter() - t0
    ray_array = rays(cam)
    n = width * height

    raw = _median_seconds(lambda: rs.scene.cast_rays(ray_array), args.repeats)
    full = _median_seconds(
        lambda: render(mesh, cam, settings.appearance, np.random.default_rng(0), rs), args.repeats)
    out = render(mesh, cam, settings.appearance, np.random.default_rng(0), rs)
    hit = np.isfinite(out.depth).mean()

    print(f"scene {args.element} seed {args.seed}: {len(mesh.triangles):,} triangles, "
          f"image {width}x{height} ({n:,} rays, {hit:.0%} hit), "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, {os.cpu_count()} CPUs")
    print(f"RaycastScene build (Embree BVH + normals): {build:.3f} s")
    print(f"{'':34s}{'s/image':>10s}{'rays/s':>14s}")
    print(f"{'open3d cast_rays (raw)':34s}{raw:10.4f}{n / raw:14,.0f}")
    print(f"{'render (texture+shadows+sensor)':34s}{full:10.4f}{n / full:14,.0f}")
    print(f"ratio raw / render: {full / raw:.1f}x (render is that many times slower than Embree)")


if __name__ == "__main__":
    main()
