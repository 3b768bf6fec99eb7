"""Generation speed of labeled source clouds, at ~1 M points per scene.

For each element type: the whole path (parametric scene -> labeled mesh -> labeled,
coloured surface sample) and the sampling step alone, side by side with Open3D's own
uniform surface sampler on the same mesh (which carries no labels), in one run, so the
ratio is meaningful on a shared, noisy machine. Median of --repeats runs. "speed vs
open3d" = our labeled sampler's points per second / Open3D's unlabeled sampler's.

    python experiments/bench_generation.py [--points 1000000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from data_tools.rebar.cages import ELEMENTS, make_scene
from data_tools.rebar.mesh import scene_to_mesh, to_open3d
from data_tools.rebar.sampling import sample_surface


def median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench(element: str, points: int, repeats: int) -> dict:
    mesh = scene_to_mesh(make_scene(element, seed=0))
    density = points / mesh.areas().sum()  # points per m^2 that gives ~`points` points
    rng = np.random.default_rng(0)

    def whole() -> None:
        sample_surface(scene_to_mesh(make_scene(element, seed=0)), density, rng)

    o3d_mesh = to_open3d(mesh)
    return {
        "whole": median_seconds(whole, repeats),
        "sample": median_seconds(lambda: sample_surface(mesh, density, rng), repeats),
        "open3d": median_seconds(lambda: o3d_mesh.sample_points_uniformly(points), repeats),
        "points": len(sample_surface(mesh, density, rng)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"{'element':<18}{'points':>10}{'whole Mpts/s':>14}{'sample Mpts/s':>15}"
          f"{'open3d Mpts/s':>15}{'speed vs open3d':>17}")
    for element in ELEMENTS:
        r = bench(element, args.points, args.repeats)
        n = r["points"] / 1e6
        print(f"{element:<18}{r['points']:>10}{n / r['whole']:>14.2f}{n / r['sample']:>15.2f}"
              f"{n / r['open3d']:>15.2f}{r['open3d'] / r['sample']:>16.2f}x")


if __name__ == "__main__":
    main()
