"""Why a 3D row helps or not: domain alignment and unsupervised scores of finished runs.

For every finished run of the listed rows (runs/tables/rebar3d/standard/ROW/seedS):

- `pad_point`: proxy A-distance on PER-POINT features - 4096 points (64 unaugmented
  blocks x 64 points) of source_val vs target_test, a linear classifier trained on half
  and tested on the other half (da.metrics.proxy_a_distance). 2 = separable, 0 = aligned.
  (The table's `pad` column is on pooled block features.)
- `domain_acc_train`: the DANN domain classifier's own accuracy over the last logged
  training steps (TensorBoard train/domain_acc), where the row has one.
- `dev`: deep embedded validation's score (minus the importance-weighted source-val risk,
  da.validation; no target label read) - which row a user without labels would pick.

    OMP_NUM_THREADS=1 python experiments/rebar3d_diagnostics.py --rows source_only adabn ...

Writes experiments/results/rebar3d/rebar3d_diagnostics.md / .json; results are cached per run
(keyed by the run's done marker) in the .json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from da.inference import forward_batches
from da.metrics import proxy_a_distance
from da.provenance import git_state, machine_summary
from da.runs import load_trained
from da.tasks.segmentation3d import plain_blocks
from da.validation import validate_run


@torch.no_grad()
def point_features(run, scenes, n_blocks: int = 64, per_block: int = 64, seed: int = 0) -> np.ndarray:
    ds = plain_blocks(run.data.source_train, scenes, labeled=False)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(ds))[:n_blocks]
    batches = (ds.__getitems__([(int(i), seed) for i in order[start:start + 8]]) for start in range(0, len(order), 8))
    rows = []
    for _, features, _ in forward_batches(run.algorithm, batches, run.device):
        for b in features.float().cpu().numpy():  # (C, N) per block
            rows.append(b[:, rng.choice(b.shape[1], per_block, replace=False)].T)
    return np.concatenate(rows)


def last_domain_acc(run_dir: Path, last: int = 8) -> float | None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    if "train/domain_acc" not in acc.Tags().get("scalars", []):
        return None
    values = [e.value for e in acc.Scalars("train/domain_acc")]
    return float(np.mean(values[-last:]))


def diagnose(run_dir: Path, with_dev: bool) -> dict:
    run = load_trained(run_dir, "last.pt", "cpu")
    src = point_features(run, run.data.source_val.scenes)
    tgt = point_features(run, run.data.target_test.scenes)
    out = {"pad_point": proxy_a_distance(src, tgt, seed=0), "domain_acc_train": last_domain_acc(run_dir)}
    if with_dev and not run.cfg.data.target_labeled:
        out["dev"] = validate_run(run_dir, "dev")["score"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", nargs="+", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--runs", default="runs/tables/rebar3d/standard")
    parser.add_argument("--no-dev", action="store_true")
    parser.add_argument("--out", default="experiments/results/rebar3d/rebar3d_diagnostics")
    args = parser.parse_args()
    path = Path(f"{args.out}.json")
    old = json.loads(path.read_text()) if path.is_file() else {}
    results = {"command": "python experiments/rebar3d_diagnostics.py --rows " + " ".join(args.rows)
               + " --seeds " + " ".join(map(str, args.seeds)) + (" --no-dev" if args.no_dev else ""),
               "git_commit": git_state()["commit"], "machine": machine_summary(), "rows": {}}
    for row in args.rows:
        for s in args.seeds:
            run_dir = Path(args.runs) / row / f"seed{s}"
            if not (run_dir / "done").exists():
                continue
            stamp = (run_dir / "done").read_text()
            cached = old.get("rows", {}).get(row, {}).get(str(s))
            if cached and cached.get("done") == stamp and ("dev" in cached or args.no_dev):
                got = cached
            else:
                got = {**diagnose(run_dir, not args.no_dev), "done": stamp,
                       "target_miou": json.loads(stamp)["target_miou"]}
            results["rows"].setdefault(row, {})[str(s)] = got
            print(row, s, {k: v for k, v in got.items() if k != "done"}, flush=True)
            path.write_text(json.dumps(results, indent=2) + "\n")
    Path(f"{args.out}.md").write_text(to_markdown(results))
    print(to_markdown(results))


def _ms(values) -> str:
    a = np.asarray([v for v in values if v is not None], float)
    if len(a) == 0:
        return "-"
    return f"{a.mean():.3f} ± {a.std(ddof=1):.3f}" if len(a) > 1 else f"{a.mean():.3f}"


def to_markdown(results: dict) -> str:
    lines = ["# rebar3d adaptation diagnostics", "", f"Command: `{results['command']}`  ",
             f"Commit: `{results['git_commit']}`  ", f"Machine: {results['machine']}  ",
             "pad_point: proxy A-distance on per-point features (source_val vs target_test, 4096 "
             "points each, linear classifier, half held out; 2 = separable). domain_acc_train: the "
             "DANN classifier's accuracy over its last 8 logged training windows. dev: deep embedded "
             "validation score (higher = lower estimated target risk; reads no target label). "
             "target mIoU is shown beside them, for reading only. Mean ± std over seeds.", "",
             "| row | seeds | target mIoU | pad_point | domain_acc_train | dev |", "|---|---|---|---|---|---|"]
    for row, per_seed in results["rows"].items():
        v = list(per_seed.values())
        lines.append(f"| {row} | {len(v)} | {_ms([x['target_miou'] for x in v])} | "
                     f"{_ms([x['pad_point'] for x in v])} | {_ms([x.get('domain_acc_train') for x in v])} | "
                     f"{_ms([x.get('dev') for x in v])} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
