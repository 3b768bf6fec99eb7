"""Does a refactor change behaviour? Small runs of every task, their metrics to full precision.

Trains, on tiny data built here: two moons with DANN (vector classification) scored by
reverse validation and DEV; Digits -> Digits-M with DANN (image classification); rebar2d
with the U-Net and image-level DANN (2D segmentation); rebar3d with PointNet++ and DANN
(3D segmentation), then `da predict`'s label counts on one target cloud. One torch thread,
fixed seeds: on one machine the numbers must come out identical before and after a change
that is meant to change no behaviour.

    python experiments/behaviour_check.py --out experiments/results/reliability/behaviour_baseline.json
    python experiments/behaviour_check.py --compare experiments/results/reliability/behaviour_baseline.json

--compare prints every metric that differs and exits 1 if any does (a different CPU
model may differ in the last bits: compare on the machine that wrote the baseline).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "experiments/configs"
COMMON = ["train.progress_bar=false", "train.embedding_samples=0"]


def final(run_dir: Path) -> dict:
    from da.run_log import read_results

    return {k: v for k, v in read_results(run_dir)[-1].items() if isinstance(v, (int, float))}


def moons(tmp: Path) -> dict:
    from da.config import load_config
    from da.train import train
    from da.validation import validate_run

    cfg = load_config([CONFIGS / "moons.yaml", CONFIGS / "moons_dann.yaml"],
                      [*COMMON, f"data.root={tmp / 'data'}", "train.steps=300", f"run_dir={tmp / 'moons'}"])
    run = train(cfg)
    out = final(run)
    for name in ("reverse", "dev"):
        scores = validate_run(run, name)
        out.update({f"{name}_{k}": v for k, v in (scores or {}).items() if isinstance(v, (int, float))})
    return out


def digits(tmp: Path) -> dict:
    from da.config import load_config
    from da.train import train

    cfg = load_config([CONFIGS / "digits.yaml", CONFIGS / "digits_dann.yaml"],
                      [*COMMON, f"data.root={tmp / 'data'}", "train.steps=40", "train.eval_every=40",
                       "train.checkpoint_every=40", f"run_dir={tmp / 'digits'}"])
    return final(train(cfg))


def rebar2d(tmp: Path) -> dict:
    from da.config import load_config
    from da.train import train

    cfg = load_config([CONFIGS / "rebar2d.yaml", CONFIGS / "rebar2d_dann_stages.yaml"],
                      [*COMMON, f"data.root={tmp / 'data'}", "data.images=[2,1,2,1]", "data.size=[96,96]",
                       "data.crop=64", "train.steps=4", "train.batch_size=2", "train.eval_every=4",
                       "train.checkpoint_every=4", f"run_dir={tmp / 'rebar2d'}"])
    return final(train(cfg))


def rebar3d(tmp: Path) -> dict:
    from da.config import load_config
    from da.predict import predict_file
    from da.train import train
    from data_tools.target_dataset import build_rebar3d

    folder = build_rebar3d(tmp / "r3d", scenes=5, mode="fast", preset="typical", seed=1, density=4000,
                           progress=False, image_size=(256, 192), n_views=5, elements=["column", "beam"])
    cfg = load_config([CONFIGS / "rebar3d.yaml", CONFIGS / "rebar3d_pointnet.yaml", CONFIGS / "rebar3d_dann.yaml"],
                      [*COMMON, f"data.path={folder}", f"data.root={tmp / 'data'}", "data.num_points=256",
                       "data.voxel=0.02", "model.local=[16,32]", "model.global_width=32", "model.fuse=[32,16]",
                       "model.head_hidden=[16]", "train.steps=6", "train.batch_size=2", "train.eval_every=6",
                       "train.checkpoint_every=6", f"run_dir={tmp / 'rebar3d'}"])
    run = train(cfg)
    out = final(run)
    counts = predict_file(run, folder / "target_test" / "scene_0000.ply", tmp / "pred.ply", up="z")
    out.update({f"predict_count_{k}": int(v) for k, v in counts.items()})
    return out


def same(a, b) -> bool:
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


TASKS = {"moons": moons, "digits": digits, "rebar2d": rebar2d, "rebar3d": rebar3d}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=None, help="write the metrics here (a baseline)")
    parser.add_argument("--compare", default=None, help="a baseline JSON to compare with")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    from da.provenance import git_state, machine_summary

    with tempfile.TemporaryDirectory() as tmp:
        metrics = {name: TASKS[name](Path(tmp)) for name in args.tasks}
    result = {"command": "python " + " ".join(sys.argv), "git_commit": git_state()["commit"],
              "machine": machine_summary(), "metrics": metrics}
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    if not args.compare:
        print(json.dumps(metrics, indent=2))
        return 0
    base = json.loads(Path(args.compare).read_text())
    print(f"baseline: commit {base['git_commit'][:12]}, {base['machine']}\nnow:      commit "
          f"{result['git_commit'][:12]}, {result['machine']}")
    differ = 0
    for task in args.tasks:
        old, new = base["metrics"].get(task, {}), metrics[task]
        for key in sorted(set(old) | set(new)):
            if not same(old.get(key), new.get(key)):
                differ += 1
                print(f"DIFFERS {task}.{key}: {old.get(key)} -> {new.get(key)}")
    print(f"{differ} metric(s) differ" if differ else "identical: every metric of every task")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
