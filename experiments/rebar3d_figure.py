"""One target-test scene of the rebar3d table: ground truth beside each row's prediction.

Reads the finished runs of a `da reproduce rebar3d` profile (their predictions/ PLY files,
written at the end of training) and the dataset's ground truth, and renders label-
coloured snapshots to experiments/results/rebar3d/rebar3d_<scene>_<row>.png, plus the truth.

    python experiments/rebar3d_figure.py [--profile standard] [--seed 0] [--scene 0]
        [--rows source_only dann_point train_on_target]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from da.config import load_config
from da.data.rebar3d import dataset_dir, load_scene, read_manifest
from data_tools.io import PointCloud, read_cloud
from data_tools.viz import snapshot


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="standard")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scene", type=int, default=0, help="target_test scene (0 or 1 are saved)")
    parser.add_argument("--rows", nargs="+", default=["source_only", "dann_point", "train_on_target"])
    parser.add_argument("--runs", default="runs/tables/rebar3d")
    parser.add_argument("--out", default="experiments/results/rebar3d")
    args = parser.parse_args()
    out = Path(args.out)
    first = Path(args.runs) / args.profile / args.rows[0] / f"seed{args.seed}"
    cfg = load_config([first / "config.yaml"]).data
    folder = dataset_dir(cfg)
    entry = read_manifest(folder)["splits"]["target_test"][args.scene]
    truth = load_scene(folder, "target_test", entry, True, cfg.voxel)  # voxel labels, 255 kept
    name = f"rebar3d_scene{args.scene}"
    print(snapshot(PointCloud(truth.xyz, labels=truth.labels), out / f"{name}_truth.png"))
    for row in args.rows:
        ply = Path(args.runs) / args.profile / row / f"seed{args.seed}" / "predictions" / \
            f"target_test_{args.scene:04d}.ply"
        print(snapshot(read_cloud(ply), out / f"{name}_{row}.png"))


if __name__ == "__main__":
    main()
