"""What limits 3D rebar segmentation: an ablation over block scheme, inputs, backbone, recipe.

Every variant is a source-only run on the standard benchmark data (mvs target, 60
scenes, `experiments/configs/rebar3d.yaml` + the variant's overrides), one seed, the
same steps and batch unless the variant is about them. The winner is chosen on
source_val mIoU only; target-test numbers are printed beside it and decide nothing.
Runs live under runs/ablation_rebar3d/<variant>/ and resume when re-run (a finished
one is skipped), so the sweep survives being cut off.

    OMP_NUM_THREADS=1 python experiments/ablation_rebar3d.py [--only NAME ...] [--steps 400]
    python experiments/ablation_rebar3d.py --report   # table from finished runs only
      -> experiments/results/rebar3d/rebar3d_ablation.{md,json}
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from da.config import load_config  # noqa: E402
from da.provenance import git_state, machine_summary  # noqa: E402
from da.run_log import read_results  # noqa: E402
from da.train import train  # noqa: E402

# The recipe of the old default, pinned so that the variants stay what they were when
# rebar3d.yaml adopts the winner: Adam with the DANN lr decay, plain weighted CE, xyz.
BASE = ["optim.name=adam", "optim.schedule=dann", "optim.weight_decay=0",
        "algorithm.label_smoothing=0", "algorithm.dice_weight=0", "data.shape_radii=[]"]
SHAPE = "data.shape_radii=[0.02,0.04,0.08,0.16]"
SPARSE = ["model.name=sparse_unet", "data.num_points=8192", "train.batch_size=4"]  # 4 blocks: ~CPU cost of PointNet++ x2
# name -> (what it tests, overrides on top of rebar3d.yaml)
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "pointnet2_xyz": ("the old default: PointNet++, 1 m columns, 1024 points, xyz", []),
    "pointnet2_shape": ("+ local-shape features", [SHAPE]),
    "pointnet_shape": ("per-point MLP (+ global max-pool) on local-shape features: the floor",
                       ["model.name=pointnet", SHAPE]),
    "dgcnn_shape": ("DGCNN backbone, local-shape features", ["model.name=dgcnn", SHAPE]),
    "pointnet2_shape_2cm": ("PointNet++ + shape, 2 cm voxels", [SHAPE, "data.voxel=0.02"]),
    "pointnet2_shape_half_m": ("PointNet++ + shape, 0.5 m columns (stride 0.25 m)",
                               [SHAPE, "data.block_size=0.5", "data.train_stride=0.25"]),
    "pointnet2_shape_recipe": ("PointNet++ + shape, AdamW + cosine, label smoothing 0.05, Dice 0.5",
                               [SHAPE, "optim.name=adamw", "optim.schedule=cosine",
                                "optim.weight_decay=0.01", "algorithm.label_smoothing=0.05",
                                "algorithm.dice_weight=0.5"]),
    "dgcnn_shape_recipe": ("DGCNN + shape + the recipe",
                           ["model.name=dgcnn", SHAPE, "optim.name=adamw", "optim.schedule=cosine",
                            "optim.weight_decay=0.01", "algorithm.label_smoothing=0.05",
                            "algorithm.dice_weight=0.5"]),
    "pointnet2_shape_4096": ("PointNet++ with 4x the points per block", [SHAPE, "data.num_points=4096"]),
    "sparse_xyz": ("sparse-voxel U-Net over every voxel (<= 8192) of a column, xyz",
                   SPARSE),
    "sparse_shape": ("sparse U-Net + local-shape features", [*SPARSE, SHAPE]),
    "sparse_shape_2cm": ("sparse U-Net + shape, 2 cm voxels", [*SPARSE, SHAPE, "data.voxel=0.02",
                                                               "data.num_points=4096"]),
    "sparse_shape_half_m": ("sparse U-Net + shape, 0.5 m columns", [*SPARSE, SHAPE,
                                                                   "data.block_size=0.5",
                                                                   "data.train_stride=0.25",
                                                                   "data.num_points=4096"]),
    "sparse_shape_recipe": ("sparse U-Net + shape, AdamW + cosine, label smoothing 0.05, Dice 0.5",
                            [*SPARSE, SHAPE, "optim.name=adamw", "optim.schedule=cosine",
                             "optim.weight_decay=0.01", "algorithm.label_smoothing=0.05",
                             "algorithm.dice_weight=0.5"]),
}
# What rebar3d.yaml uses, and why it is not the highest source_val row (decided before
# any standard-profile run; target-test columns played no part).
ADOPTED = ("pointnet2_shape_recipe", "DGCNN is the top source_val backbone (0.897 with the old "
           "recipe, 0.900 with the adopted one: +0.021, one seed) but costs ~3x PointNet++'s wall "
           "time here (19.6-21.4 vs 6.4 min for 400 steps + evaluation). The adoption was decided "
           "before any standard run and before dgcnn_shape_recipe was measured, because the 6 "
           "standard runs with DGCNN would not fit this session's CPU. Both pass the source-val "
           "bar; re-running the benchmark rows with `experiments/configs/rebar3d_dgcnn.yaml` is "
           "the next step.")
METRICS = ["source_val_miou", "source_val_iou_0", "source_val_iou_1", "source_val_iou_2",
           "target_miou", "target_iou_1", "target_iou_2"]


def config(name: str, steps: int, runs: Path, extra: list[str]):
    return load_config([REPO / "experiments/configs/rebar3d.yaml"], [
        "data.mode=mvs", "data.scenes=60", f"train.steps={steps}", f"train.eval_every={steps}",
        "train.checkpoint_every=50", "train.embedding_samples=0", "train.progress_bar=false",
        f"run_dir={runs / name}", *BASE, *VARIANTS[name][1], *extra])


def run_variant(name: str, steps: int, runs: Path, extra: list[str]) -> None:
    cfg = config(name, steps, runs, extra)
    if (runs / name / "done").exists():
        return
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        train(cfg)
    wall = runs / name / "wall_seconds.json"  # this process's share (a resumed run adds up)
    before = json.loads(wall.read_text())["seconds"] if wall.exists() else 0.0
    wall.write_text(json.dumps({"seconds": before + time.perf_counter() - t0}))
    (runs / name / "done").write_text("")
    print(f"{name}: done", flush=True)


def report(runs: Path, steps: int, out: Path) -> None:
    rows = []
    for name, (what, overrides) in VARIANTS.items():
        if not (runs / name / "done").exists():
            continue
        last = read_results(runs / name)[-1]
        wall = json.loads((runs / name / "wall_seconds.json").read_text())["seconds"]
        rows.append({"variant": name, "what": what, "overrides": overrides,
                     **{m: last.get(m) for m in METRICS}, "wall_min": wall / 60})
    best = max(rows, key=lambda r: r["source_val_miou"]) if rows else None
    git = git_state()
    lines = ["# 3D segmentation ablation (source-only, one seed)", "",
             f"Data: the standard benchmark (mvs target, 60 scenes: 21 source_train, 6 source_val, "
             f"21 target_train, 12 target_test). {steps} steps of 8 blocks (sparse U-Net: 4 blocks of up to 8192 voxels), seed 0, last checkpoint.",
             "The winner is the highest **source_val mIoU**; target-test columns are shown beside "
             "it and decided nothing.", "",
             f"Command: `OMP_NUM_THREADS=1 python experiments/ablation_rebar3d.py --steps {steps}` "
             "(two variants at a time on the 2 cores)  ",
             f"Commit: `{git['commit']}`{' (dirty tree)' if git['dirty'] else ''}  ",
             f"Machine: {machine_summary()}", "",
             "| variant | what | source_val mIoU | bg | main | tie | target mIoU | target main | "
             "target tie | wall (min) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        mark = " **(winner)**" if r is best else ""
        vals = " | ".join("" if r[m] is None else f"{r[m]:.3f}" for m in METRICS)
        lines.append(f"| {r['variant']}{mark} | {r['what']} | {vals} | {r['wall_min']:.1f} |")
    lines += ["", f"**Adopted as the default: `{ADOPTED[0]}`.** {ADOPTED[1]}",
              "", "Wall times are of the process that finished a run (a resumed run's earlier "
              "part is not counted: pointnet_shape and sparse_xyz were resumed once), with "
              "other jobs sharing the 2 cores."]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    out.with_suffix(".json").write_text(json.dumps({"steps": steps, "git": git, "rows": rows},
                                                   indent=1))
    print("\n".join(lines))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="+", choices=list(VARIANTS), default=None)
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--runs", type=Path, default=REPO / "runs/ablation_rebar3d")
    p.add_argument("--report", action="store_true", help="only write the table of finished runs")
    p.add_argument("--override", nargs="*", default=[], help="extra config overrides (all variants)")
    p.add_argument("--out", type=Path, default=REPO / "experiments/results/rebar3d/rebar3d_ablation")
    args = p.parse_args()
    if not args.report:
        for name in args.only or VARIANTS:
            run_variant(name, args.steps, args.runs, args.override)
    report(args.runs, args.steps, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
