"""Speed of the 3D segmentation backbones on real training blocks, side by side.

Blocks come from the standard benchmark's source_train split (built once by the
dataset code; `--scenes`/`--mode` pick another), each backbone at its own block scheme:
the old default (PointNet++, 1024 points, xyz), the adopted one, and the others of the
ablation. Per backbone: seconds per training step (forward, cross-entropy, backward,
Adam step) and per inference forward, median of --repeats after one warm-up, and the
points per second that makes (blocks x points / seconds). The rounds are interleaved
(every backbone once, then again), so a noisy shared machine slows all of them alike
and the ratios to the old default - measured in this one run - are what to read.

    OMP_NUM_THREADS=2 python experiments/bench_point_models.py [--device auto] [--repeats 5]
        [--out experiments/results/benchmarks/bench_point_models.md]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from da.config import load_config  # noqa: E402
from da.data import build_data  # noqa: E402
from da.models import build_model  # noqa: E402
from da.provenance import git_state, machine_summary  # noqa: E402

SHAPE = "data.shape_radii=[0.02,0.04,0.08,0.16]"
# name -> (overrides on rebar3d.yaml, blocks per step)
BACKBONES: dict[str, tuple[list[str], int]] = {
    "pointnet2 xyz 1024 (old default)": (["model.name=pointnet2", "data.num_points=1024",
                                          "data.shape_radii=[]"], 8),
    "pointnet2 shape 1024": (["model.name=pointnet2", "data.num_points=1024", SHAPE], 8),
    "pointnet shape 1024": (["model.name=pointnet", "data.num_points=1024", SHAPE], 8),
    "dgcnn shape 1024": (["model.name=dgcnn", "data.num_points=1024", SHAPE], 8),
    "sparse_unet shape 8192": (["model.name=sparse_unet", "data.num_points=8192", SHAPE], 4),
}


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def sync(device: torch.device) -> None:
    if device.type == "cuda":  # kernels are asynchronous: time their completion
        torch.cuda.synchronize(device)


def setup(overrides: list[str], blocks: int, data_args: list[str], device: torch.device,
          loaded: dict):
    cfg = load_config([REPO / "experiments/configs/rebar3d.yaml"], [*data_args, *overrides])
    key = repr(cfg.data)  # backbones on the same inputs share one loaded dataset
    data = loaded[key] if key in loaded else loaded.setdefault(key, build_data(cfg.data))
    torch.manual_seed(0)
    parts = build_model(cfg.model, data)
    net = torch.nn.Sequential(parts.feature_extractor, parts.task_head).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    raw = data.source_train.__getitems__([(i % len(data.source_train), 0) for i in range(blocks)])
    batch = {k: v.to(device) for k, v in raw.items()}
    labels = batch.pop("label").long()

    def train_step() -> None:
        net.train()
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(net(batch), labels, ignore_index=255).backward()
        opt.step()

    def infer() -> None:
        net.eval()
        with torch.inference_mode():
            net(batch)

    points = blocks * batch["coord"].shape[1]
    return train_step, infer, points


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--mode", default="mvs")
    ap.add_argument("--scenes", type=int, default=60)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    device = pick_device(args.device)
    data_args = [f"data.mode={args.mode}", f"data.scenes={args.scenes}"]
    loaded: dict = {}
    jobs = {name: setup(o, b, data_args, device, loaded) for name, (o, b) in BACKBONES.items()}
    times: dict[str, dict[str, list[float]]] = {n: {"train": [], "infer": []} for n in jobs}
    for round_ in range(args.repeats + 1):  # round 0 warms up (allocator, Adam state)
        for name, (train_step, infer, _) in jobs.items():
            for kind, fn in (("train", train_step), ("infer", infer)):
                sync(device)
                t0 = time.perf_counter()
                fn()
                sync(device)
                if round_:
                    times[name][kind].append(time.perf_counter() - t0)
        print(f"round {round_} done", flush=True)
    base = next(iter(jobs))
    med = {n: {k: statistics.median(v) for k, v in t.items()} for n, t in times.items()}
    pts = {n: jobs[n][2] for n in jobs}
    git = git_state()
    lines = ["# Backbone speed on real blocks (standard benchmark source_train)", "",
             f"Command: `OMP_NUM_THREADS={torch.get_num_threads()} python experiments/bench_point_models.py "
             f"--device {args.device} --repeats {args.repeats}`  ",
             f"Commit: `{git['commit']}`{' (dirty tree)' if git['dirty'] else ''}  ",
             f"Machine: {machine_summary()}; device {device}, {torch.get_num_threads()} threads  ",
             f"Median of {args.repeats} interleaved rounds after a warm-up; ratios are to `{base}` "
             "in this same run.", "",
             "| backbone | blocks x points | train s/step | train points/s | x old | "
             "infer s/batch | infer points/s | x old |", "|---|---|---|---|---|---|---|---|"]
    for n in jobs:
        tr, inf = med[n]["train"], med[n]["infer"]
        tr0, inf0 = med[base]["train"], med[base]["infer"]
        lines.append(f"| {n} | {pts[n]:,} | {tr:.3f} | {pts[n] / tr:,.0f} | "
                     f"{(pts[n] / tr) / (pts[base] / tr0):.2f} | {inf:.3f} | {pts[n] / inf:,.0f} | "
                     f"{(pts[n] / inf) / (pts[base] / inf0):.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
