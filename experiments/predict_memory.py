"""Memory of whole-scene prediction (`da predict`'s core) from 1 M to 20 M points.

A cloud of N points is made by tiling a target-test scene of the benchmark on an XY
grid (a site of many cages, as a drone survey would give), then `da.predict.predict_cloud`
segments it with a trained run. A sampler thread reads this process's resident memory
every 20 ms; "extra" is the peak during prediction minus the resident memory just
before it (input cloud and model already loaded), reported beside the size of the input
(xyz + rgb, float32) and of the output labels (int64). Prediction streams blocks through
the model a batch at a time and votes into per-voxel scores, so the extra should grow
with the number of voxels (voxelisation and the (M, K) votes), not with blocks x points.
Each size runs in a fresh subprocess so peaks do not mix.

    OMP_NUM_THREADS=2 python experiments/predict_memory.py --run RUN_DIR [--sizes 1 5 20]
        [--out experiments/results/benchmarks/predict_memory.md]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def tiled_cloud(scene_file: Path, n: int):
    import numpy as np

    from data_tools.io import PointCloud, read_cloud

    base = read_cloud(scene_file)
    xyz, rgb = base.xyz.astype(np.float32), base.rgb
    step = np.ptp(xyz[:, :2], axis=0) + 1.0
    reps = int(np.ceil(n / len(xyz)))
    side = int(np.ceil(np.sqrt(reps)))
    tiles = [xyz + np.array([i % side * step[0], i // side * step[1], 0], np.float32)
             for i in range(reps)]
    out_xyz = np.concatenate(tiles)[:n]
    out_rgb = None if rgb is None else np.concatenate([rgb] * reps)[:n]
    return PointCloud(out_xyz, out_rgb)


def child(run_dir: Path, scene_file: Path, n: int) -> dict:
    from da.config import load_config
    from da.data import DomainData
    from da.data.rebar3d import NUM_CLASSES
    from da.data.shape_features import CHANNELS_PER_RADIUS
    from da.predict import predict_cloud
    from da.runs import load_trained

    cfg = load_config([run_dir / "config.yaml"]).data
    width = 3 + 3 * cfg.colour + CHANNELS_PER_RADIUS * len(cfg.shape_radii)
    run = load_trained(run_dir, "last.pt", "cpu",
                       data=DomainData(None, None, None, None, NUM_CLASSES, "coord", (width,),
                                       task="segmentation3d"))
    cloud = tiled_cloud(scene_file, n)
    before = rss_bytes()
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_bytes())
            time.sleep(0.02)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    t0 = time.perf_counter()
    labels = predict_cloud(run, cloud)
    seconds = time.perf_counter() - t0
    done.set()
    t.join()
    peak[0] = max(peak[0], rss_bytes())
    input_bytes = cloud.xyz.nbytes + (0 if cloud.rgb is None else cloud.rgb.nbytes)
    return {"points": n, "seconds": seconds, "extra_mb": (peak[0] - before) / 2**20,
            "input_mb": input_bytes / 2**20, "labels_mb": labels.nbytes / 2**20}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, required=True, help="a trained rebar3d run folder")
    ap.add_argument("--scene", type=Path, default=None,
                    help="cloud to tile (default: the first target_test scene of the run's data)")
    ap.add_argument("--sizes", type=float, nargs="+", default=[1, 5, 20], help="millions of points")
    ap.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    if args.scene is None:
        from da.config import load_config
        from da.data.rebar3d import dataset_dir

        args.scene = dataset_dir(load_config([args.run / "config.yaml"]).data) / "target_test/scene_0000.ply"
    if args.child:
        print(json.dumps(child(args.run, args.scene, args.child)))
        return 0
    rows = []
    for millions in args.sizes:
        n = int(millions * 1_000_000)
        res = subprocess.run([sys.executable, __file__, "--run", str(args.run), "--scene",
                              str(args.scene), "--child", str(n)], capture_output=True, text=True,
                             check=True)
        rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    from da.provenance import git_state, machine_summary

    git = git_state()
    lines = ["# Whole-scene prediction memory", "",
             f"Command: `OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '?')} python "
             f"experiments/predict_memory.py --run {args.run} --sizes {' '.join(f'{s:g}' for s in args.sizes)}`  ",
             f"Run: `{args.run}`; cloud: `{args.scene}` tiled on an XY grid  ",
             f"Commit: `{git['commit']}`{' (dirty tree)' if git['dirty'] else ''}  ",
             f"Machine: {machine_summary()}", "",
             "| points | input (MB) | labels (MB) | extra peak (MB) | extra / (input + labels) | seconds | s per M points |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = r["extra_mb"] / (r["input_mb"] + r["labels_mb"])
        lines.append(f"| {r['points']:,} | {r['input_mb']:.0f} | {r['labels_mb']:.0f} | "
                     f"{r['extra_mb']:.0f} | {ratio:.2f} | {r['seconds']:.0f} | "
                     f"{r['seconds'] / (r['points'] / 1e6):.1f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
