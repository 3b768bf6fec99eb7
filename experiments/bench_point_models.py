"""Speed of the 3D segmentation backbones on real training blocks, side by side.

Blocks come from the standard benchmark's source_train split (built once by the
dataset code; `--scenes`/`--mode` pick another), each backbone at its own block scheme:
the old default (PointNet++, 1024 points, xyz), PointNet++ on xyz + shape features with
its set-abstraction MLPs on every group member (`model.sa_mode=grouped`, the model issue
36 set out to speed up) and run once per point before grouping (`pointwise`, the default
since), and the others of the ablation. Per backbone: seconds per training step (forward, cross-entropy, backward,
Adam step) and per inference forward, median of --repeats after one warm-up, and the
points per second that makes (blocks x points / seconds). The rounds are interleaved
(every backbone once, then again), so a noisy shared machine slows all of them alike
and the ratios to the old default and to the grouped shape model - measured in this one run -
are what to read. --threads runs the whole comparison once per torch thread count.

    python experiments/bench_point_models.py [--device auto] [--repeats 5] [--threads 1 2]
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
    "pointnet2 xyz 1024 (old default)": (["model.name=pointnet2", "model.sa_mode=grouped",
                                          "data.num_points=1024", "data.shape_radii=[]"], 8),
    "pointnet2 shape 1024, grouped SA": (["model.name=pointnet2", "model.sa_mode=grouped",
                                          "data.num_points=1024", SHAPE], 8),
    "pointnet2 shape 1024, pointwise SA (default)": (["model.name=pointnet2", "data.num_points=1024",
                                                      SHAPE, "model.sa_mode=pointwise"], 8),
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


def measure(jobs: dict, repeats: int, device: torch.device) -> dict[str, dict[str, float]]:
    """Median seconds per train step and per inference forward of every backbone."""
    times: dict[str, dict[str, list[float]]] = {n: {"train": [], "infer": []} for n in jobs}
    for round_ in range(repeats + 1):  # round 0 warms up (allocator, Adam state)
        for name, (train_step, infer, _) in jobs.items():
            for kind, fn in (("train", train_step), ("infer", infer)):
                sync(device)
                t0 = time.perf_counter()
                fn()
                sync(device)
                if round_:
                    times[name][kind].append(time.perf_counter() - t0)
        print(f"round {round_} done", flush=True)
    return {n: {k: statistics.median(v) for k, v in t.items()} for n, t in times.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, nargs="+", default=[torch.get_num_threads()])
    ap.add_argument("--mode", default="mvs")
    ap.add_argument("--scenes", type=int, default=60)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    device = pick_device(args.device)
    data_args = [f"data.mode={args.mode}", f"data.scenes={args.scenes}"]
    loaded: dict = {}
    jobs = {name: setup(o, b, data_args, device, loaded) for name, (o, b) in BACKBONES.items()}
    base, grouped = "pointnet2 xyz 1024 (old default)", "pointnet2 shape 1024, grouped SA"
    pts = {n: jobs[n][2] for n in jobs}
    git = git_state()
    lines = ["# Backbone speed on real blocks (standard benchmark source_train)", "",
             f"Command: `python experiments/bench_point_models.py --device {args.device} "
             f"--repeats {args.repeats} --threads {' '.join(map(str, args.threads))}`  ",
             f"Commit: `{git['commit']}`{' (dirty tree)' if git['dirty'] else ''}  ",
             f"Machine: {machine_summary()}; device {device}  ",
             f"Median of {args.repeats} interleaved rounds after a warm-up; ratios are to `{base}` (x old) and "
             f"to `{grouped}` (x grouped), in this same run and thread count.", ""]
    for threads in args.threads:
        torch.set_num_threads(threads)
        med = measure(jobs, args.repeats, device)
        lines += [f"## {threads} thread{'s' if threads > 1 else ''}", "",
                  "| backbone | blocks x points | train s/step | train points/s | x old | x grouped | "
                  "infer s/batch | infer points/s | x old | x grouped |", "|---|---|---|---|---|---|---|---|---|---|"]
        for n in jobs:
            tr, inf = med[n]["train"], med[n]["infer"]
            rate = {k: pts[n] / med[n][k] for k in ("train", "infer")}
            ratio = {(k, ref): rate[k] / (pts[ref] / med[ref][k]) for k in rate for ref in (base, grouped)}
            lines.append(f"| {n} | {pts[n]:,} | {tr:.3f} | {rate['train']:,.0f} | {ratio['train', base]:.2f} | "
                         f"{ratio['train', grouped]:.2f} | {inf:.3f} | {rate['infer']:,.0f} | "
                         f"{ratio['infer', base]:.2f} | {ratio['infer', grouped]:.2f} |")
        lines.append("")
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
