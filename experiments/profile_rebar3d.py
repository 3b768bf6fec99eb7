"""Where the seconds of the adopted 3D model go: a training step and a whole-scene prediction.

The adopted model (experiments/configs/rebar3d.yaml: PointNet++ on xyz + 28 local-shape
features, 8 blocks x 1,024 points per domain and step, DANN point-wise as the adapted rows
train) on the benchmark's own clouds. Stages are timed with wall clocks around the same
calls the trainer and `da predict` make, with one warm-up each, at 1 and 2 torch threads:

- training step: block sampling + inputs + augmentation (BlockDataset.__getitems__, source
  and target), forward (features, head, domain classifier: Algorithm.losses), backward,
  optimiser step;
- prediction of one target cloud: reading, voxel grid (prepare_scene), local-shape
  features (shape_features.local_shape: neighbour search and covariances), tiling blocks,
  block inputs, the network's forward, voting (add_votes), labels to every point.

Variants run side by side in the same process and thread count (--variants): `before` is
the adopted model as it was profiled first (grouped set abstraction, grid cells grouped
by np.unique over rows), `exact` the same network with the exact speed-ups (grid cells
by one packed key, feature propagation by per-neighbour gathers), `pointwise` the network
with its set-abstraction MLPs run once per point (model.sa_mode=pointwise). The summary
gives each variant's points per second over `before`'s, measured in this run.

    python experiments/profile_rebar3d.py DATASET --out experiments/results/benchmarks/profile_rebar3d.md
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from da.config import load_config  # noqa: E402
from da.contracts import DomainData  # noqa: E402
from da.data.blocks import BlockDataset, SceneDataset, prepare_scene  # noqa: E402
from da.data.rebar3d import NUM_CLASSES, load_split  # noqa: E402
from da.data.shape_features import CHANNELS_PER_RADIUS, local_shape  # noqa: E402
from da.inference import to_device  # noqa: E402
from da.provenance import git_state, machine_summary  # noqa: E402
from da.runs import build_run  # noqa: E402
from data_tools.io import PointCloud, read_cloud  # noqa: E402
from data_tools.prepare import add_votes  # noqa: E402
from data_tools.splits import read_manifest  # noqa: E402

CONFIGS = [REPO / "experiments/configs/rebar3d.yaml", REPO / "experiments/configs/rebar3d_dann.yaml"]
# name -> (model overrides, whether grid cells are grouped the old way)
VARIANTS = {"before": (["model.sa_mode=grouped"], True), "exact": (["model.sa_mode=grouped"], False),
            "pointwise": (["model.sa_mode=pointwise"], False)}


def _rows_unique(cells: np.ndarray):
    """The grid grouping local_shape used before data_tools.voxel_keys (same result)."""
    _, first, inverse, counts = np.unique(cells, axis=0, return_index=True, return_inverse=True,
                                          return_counts=True)
    return first, inverse.reshape(-1), counts


def _grouped_interpolation(self, xyz, known, known_feats, skip):
    """FeaturePropagation.forward as it was: one (B, C, N, k) gather reduced over k."""
    from da.models.pointnet2 import gather_points, three_nn_weights

    idx, w = three_nn_weights(xyz, known)
    near = gather_points(known_feats, idx)
    interp = (near * w.unsqueeze(1).to(near.dtype)).sum(dim=3)
    return self.mlp(torch.cat([interp, skip.to(interp.dtype)], dim=1))


@contextlib.contextmanager
def old_code_paths(active: bool):
    """Swap in the code paths the exact speed-ups replaced (for `before` only)."""
    import da.data.shape_features as sf
    from da.models.pointnet2 import FeaturePropagation

    saved = sf.group_cells, FeaturePropagation.forward
    if active:
        sf.group_cells, FeaturePropagation.forward = _rows_unique, _grouped_interpolation
    try:
        yield
    finally:
        sf.group_cells, FeaturePropagation.forward = saved


class Clock:
    """Seconds per named stage, summed over calls."""

    def __init__(self) -> None:
        self.total: dict[str, float] = {}

    def time(self, name: str, fn, *args, **kwargs):
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        self.total[name] = self.total.get(name, 0.0) + time.perf_counter() - start
        return out


def training_step(run, source: BlockDataset, target: BlockDataset, step: int, clock: Clock) -> None:
    keys = [(i, step) for i in np.random.default_rng(step).choice(len(source), 8, replace=False)]
    tkeys = [(i, step) for i in np.random.default_rng(step + 1).choice(len(target), 8, replace=False)]
    src = clock.time("data: sample blocks, inputs, augment", lambda: to_device(source.__getitems__(keys), run.device))
    tgt = clock.time("data: sample blocks, inputs, augment", lambda: to_device(target.__getitems__(tkeys), run.device))
    losses = clock.time("forward (features, head, domain classifier, losses)", run.algorithm.losses, src, tgt, 0.5)
    run.optimizer.zero_grad(set_to_none=True)
    clock.time("backward", losses["total"].backward)
    clock.time("optimiser step", run.optimizer.step)


@torch.no_grad()
def predict_scene(run, path: Path, clock: Clock) -> int:
    cfg = run.cfg.data
    cloud = clock.time("read cloud", read_cloud, path)
    scene = clock.time("voxel grid (prepare_scene)", prepare_scene, "input", PointCloud(cloud.xyz, cloud.rgb), cfg.voxel)
    scene.shape = clock.time("local-shape features (neighbours, covariances)", local_shape, scene.xyz,
                             cfg.shape_radii, min_cell=cfg.voxel)
    data = clock.time("tile blocks", SceneDataset, [scene], cfg.block_size, cfg.num_points, cfg.colour,
                      NUM_CLASSES, voxel=cfg.voxel)
    scores = np.zeros((len(scene.xyz), NUM_CLASSES))
    blocks = data.blocks[0]
    run.algorithm.eval()
    for start in range(0, len(blocks), 16):
        chunk = blocks[start:start + 16]
        batch = clock.time("block inputs", lambda c=chunk: to_device(data.block_batch(0, c), run.device))
        logits = clock.time("network forward", lambda b=batch: run.algorithm.head(run.algorithm.features(b)))
        clock.time("voting", add_votes, scores, chunk, list(logits.float().transpose(1, 2).cpu().numpy()))
    clock.time("labels to every point", lambda: scores.argmax(axis=1)[scene.index])
    run.algorithm.train()
    return len(cloud)


def table(clock: Clock, unit: str) -> list[str]:
    total = sum(clock.total.values())
    rows = [f"| {name} | {sec:.3f} | {100 * sec / total:.0f}% |" for name, sec in clock.total.items()]
    return [f"| stage | seconds{unit} | share |", "|---|---|---|", *rows, f"| **total** | **{total:.3f}** | |"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset", type=Path, help="a rebar3d dataset folder (the mvs benchmark's)")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--scene", default="target_test/scene_0000.ply")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    cfg = load_config(CONFIGS, [f"data.path={args.dataset}", "device=cpu"])
    d = cfg.data
    manifest = read_manifest(args.dataset)
    scenes = {s: load_split(args.dataset, manifest, s, s == "source_train", d.voxel, d.shape_radii)[:3]
              for s in ("source_train", "target_train")}
    source = BlockDataset(scenes["source_train"], d.block_size, d.train_stride, d.num_points, d.colour, True, True,
                          voxel=d.voxel)
    target = BlockDataset(scenes["target_train"], d.block_size, d.train_stride, d.num_points, d.colour, False, True,
                          voxel=d.voxel)
    width = 3 + CHANNELS_PER_RADIUS * len(d.shape_radii)
    shape = DomainData(None, None, None, None, NUM_CLASSES, "coord", (width,), task="segmentation3d")
    git = git_state()
    lines = ["# Where the seconds go: the adopted 3D model, training and prediction, before and after", "",
             f"Command: `python {' '.join(sys.argv)}`  ",
             f"Commit: `{git['commit'][:12]}`{' (dirty)' if git['dirty'] else ''}; machine: {machine_summary()}  ",
             f"Model: experiments/configs/rebar3d.yaml + rebar3d_dann.yaml (PointNet++, xyz + {width - 3} shape "
             f"features, {d.num_points} points per block, 8 + 8 blocks per step). Training: {args.steps} steps after "
             f"one warm-up, blocks from 3 source_train and 3 target_train scenes. Prediction: `{args.scene}`, one "
             "warm-up on the same scene first. Wall clock; the machine is shared, so read shares, not the last digit.", ""]
    summary = ["## Summary: points per second over `before`, same run and thread count", "",
               "| threads | variant | training points/s | x before | prediction s per M points | x before |",
               "|---|---|---|---|---|---|"]
    for threads in args.threads:
        torch.set_num_threads(threads)
        rates = {}
        for name in args.variants:
            overrides, old = VARIANTS[name]
            vcfg = load_config(CONFIGS, [f"data.path={args.dataset}", "device=cpu", *overrides])
            torch.manual_seed(0)
            run = build_run(vcfg, torch.device("cpu"), shape)
            with old_code_paths(old):
                training_step(run, source, target, 0, Clock())  # warm-up
                train_clock = Clock()
                for step in range(1, args.steps + 1):
                    training_step(run, source, target, step, train_clock)
                predict_scene(run, args.dataset / args.scene, Clock())  # warm-up
                clock = Clock()
                n = predict_scene(run, args.dataset / args.scene, clock)
            train_clock.total = {k: v / args.steps for k, v in train_clock.total.items()}
            pts = 8 * d.num_points / sum(train_clock.total.values())
            total = sum(clock.total.values())
            rates[name] = (pts, total / n * 1e6)
            lines += [f"## {name}, {threads} thread{'s' if threads > 1 else ''}", "",
                      f"**Training step** (per step; {pts:,.0f} source points per second):", "",
                      *table(train_clock, " per step"), "",
                      f"**Prediction of one cloud** ({n:,} points; {total / n * 1e6:.1f} s per million points):", "",
                      *table(clock, ""), ""]
            print("\n".join(lines[-32:]), flush=True)
        ref = rates[args.variants[0]]
        summary += [f"| {threads} | {name} | {r[0]:,.0f} | {r[0] / ref[0]:.2f} | {r[1]:.2f} | {ref[1] / r[1]:.2f} |"
                    for name, r in rates.items()]
    lines += [*summary, ""]
    text = "\n".join(lines) + "\n"
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
