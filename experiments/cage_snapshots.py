"""Snapshots of one parametric cage per element type, for the README.

    python experiments/cage_snapshots.py [--seed 0] [--out experiments/results/rebar3d/cages]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from data_tools.rebar.cages import ELEMENTS, make_scene
from data_tools.rebar.mesh import scene_to_mesh
from data_tools.rebar.sampling import sample_surface
from data_tools.viz import snapshot


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--density", type=float, default=20000.0, help="points per m^2")
    parser.add_argument("--out", default="experiments/results/rebar3d/cages")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for element in ELEMENTS:
        cloud = sample_surface(scene_to_mesh(make_scene(element, args.seed)), args.density,
                               np.random.default_rng(args.seed))
        for color in ("label", "rgb"):
            path = snapshot(cloud, out / f"{element}_{color}.png", color=color, width=640, height=480)
            print(f"{path}: {len(cloud)} points, labels {np.bincount(cloud.labels).tolist()}")


if __name__ == "__main__":
    main()
