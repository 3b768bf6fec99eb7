"""The 3D rows, trained on the mvs benchmark, evaluated on the real-SfM test set (issue 38).

`experiments/sfm_test_set.py` reconstructs target-test cages three ways: by COLMAP from a
walk-around capture (``sfm``), by the same photos and dense step on the renderer's true
poses (``sfm_true_poses``, the control: only SfM differs) and by the stereo rig (``mvs``).
With the same --seed as the benchmark its scenes ARE the benchmark's target_test cages.
This script:

1. assembles, per mode, an evaluation dataset: the benchmark's folder with its target_test
   swapped for that mode's clouds (the other splits and their prepared caches linked, not
   copied; scenes that failed to reconstruct are left out and listed);
2. evaluates each trained run (``da evaluate RUN data.path=...``) on every mode's dataset
   and on the benchmark itself;
3. writes a table: target mIoU and per-class IoU per row and set, and the rows' order on
   each set.

Results already in --out's JSON are kept (a long evaluation can be resumed): after
re-making the clouds, delete that JSON.

    python experiments/sfm_rows.py --benchmark data/rebar3d-mvs-78cd8201b5 \
        --sets data/sfm_test --runs runs/tables/rebar3d/mixing --seeds 0 \
        --rows source_only dann_point sim_randomised_cosmix_dann_point sim_source \
               sim_source_dann_point train_on_target \
        --out experiments/results/rebar3d/sfm_rows.md
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from da.config import load_run_config
from da.contracts import DomainData
from da.data import build_data
from da.evaluation import evaluate
from da.provenance import git_state, machine_summary
from da.runs import load_trained
from data_tools.splits import DatasetFileError, read_manifest

SETS = ("mvs", "sfm_true_poses", "sfm")
LINKED = ("source_train", "source_val", "target_train", "oracle_labels")
# rows that train on extra data or labels: evaluation needs none of it, so it is switched
# off (the weights are what is evaluated; class weights and simulated scenes are unused)
EVAL_ONLY = ["data.simulated_source=''", "data.target_labeled=false"]


def evaluation_dataset(benchmark: Path, clouds: Path, out: Path, voxel: float = 0.01) -> Path:
    """`benchmark` with its target_test replaced by the clouds in `clouds` (scene_XXXX.ply +
    scene_XXXX_labels.npy, as sfm_test_set.py writes them). Rewritten every time."""
    manifest = read_manifest(benchmark)
    test = []
    missing = []
    for entry in manifest["splits"]["target_test"]:
        stem = Path(entry["file"]).stem
        ply, labels = clouds / f"{stem}.ply", clouds / f"{stem}_labels.npy"
        if ply.is_file() and labels.is_file():
            test.append({k: v for k, v in entry.items() if k in ("split", "index", "element", "scene_seed")}
                        | {"file": ply.name, "labels_file": labels.name})
        else:
            missing.append(stem)
    if not test:
        raise DatasetFileError(f"{clouds}: none of the benchmark's target_test scenes is there")
    out.mkdir(parents=True, exist_ok=True)
    for name in (*LINKED, "target_test"):
        _link(out / name, (clouds if name == "target_test" else benchmark / name).resolve())
    prepared = f"prepared-{voxel:g}"
    (out / prepared).mkdir(exist_ok=True)
    for split in ("source_train", "source_val", "target_train"):  # their caches: computed once
        (benchmark / prepared / split).mkdir(parents=True, exist_ok=True)
        _link(out / prepared / split, (benchmark / prepared / split).resolve())
    new = dict(manifest, splits=dict(manifest["splits"], target_test=test),
               target_test_from=str(clouds), target_test_missing=missing, derived_from=str(benchmark),
               target_test_files=_fingerprint(clouds, test))
    old = out / "manifest.json"
    if old.is_file() and json.loads(old.read_text()).get("target_test_files") != new["target_test_files"]:
        shutil.rmtree(out / prepared / "target_test", ignore_errors=True)  # caches of other clouds
    tmp = out / f".manifest.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(new, indent=1))
    os.replace(tmp, old)  # atomic: two evaluations may start side by side
    return out


def _fingerprint(clouds: Path, entries: list[dict]) -> dict[str, list[int]]:
    """Size and modification time of every swapped-in file: a re-made cloud voids its cache."""
    files = [clouds / e[k] for e in entries for k in ("file", "labels_file")]
    return {f.name: [f.stat().st_size, f.stat().st_mtime_ns] for f in files}


def _link(path: Path, target: Path) -> None:
    if path.is_symlink() or path.exists():
        if path.is_symlink() and path.resolve() == target:
            return
        if path.is_dir() and not path.is_symlink():
            raise FileExistsError(f"{path}: a folder where a link was to go; delete it")
        path.unlink()
    path.symlink_to(target, target_is_directory=True)


_DATA: dict[str, DomainData] = {}  # (data config, manifest) -> loaded data: once, not once per run


def evaluate_on(run_dir: Path, dataset: Path) -> dict[str, float]:
    overrides = [f"data.path={dataset}", *EVAL_ONLY]
    data_cfg = load_run_config(run_dir / "config.yaml", overrides).data
    key = repr(data_cfg) + (dataset / "manifest.json").read_text()  # re-made clouds: loaded again
    if key not in _DATA:
        _DATA[key] = build_data(data_cfg)
    run = load_trained(run_dir, data=_DATA[key], overrides=overrides)
    return evaluate(run, step=-1)


def final_evaluation(run_dir: Path) -> dict[str, float] | None:
    """A finished run's final evaluation on its own dataset, as its `done` file records it
    (the last checkpoint on every target_test scene: what `da evaluate` prints)."""
    done = run_dir / "done"
    if not done.is_file():
        return None
    final = json.loads(done.read_text())
    return final if "target_miou" in final else None


def _mean_std(values: list[float]) -> str:
    if not values:
        return "-"
    a = np.asarray(values, float)
    return f"{a.mean():.3f}" + (f" ± {a.std(ddof=1):.3f}" if len(a) > 1 else "")


def write_report(results: dict, rows: list[str], sets: list[str], datasets: dict[str, Path],
                 command: str, seconds: float, path: Path) -> None:
    lines = ["# The 3D rows on the real-SfM test set", "",
             f"Command: `{command}`  ", f"Commit: `{git_state()['commit']}`  ",
             f"Machine: {machine_summary()}  ",
             f"Evaluation time: {seconds:.0f} s", "",
             "Every row was trained on the mvs benchmark (no retraining); only the target test "
             "changes. mvs: the benchmark's target_test (stereo rig); sfm_true_poses: walk-around "
             "photos, dense step on the renderer's poses; sfm: the same photos, poses and "
             "intrinsics by COLMAP, cloud levelled and scaled by the user's preparation path. "
             "train_on_target is the mvs-trained oracle: trained on mvs target_train labels, it is "
             "no oracle on the sfm sets. Numbers: mean ± std over seeds, whole-scene target mIoU "
             "(tie IoU in brackets).", ""]
    for s in sets:
        missing = read_manifest(datasets[s]).get("target_test_missing", []) if s != "mvs" else []
        lines.append(f"- {s}: `{datasets[s]}`" + (f" (not reconstructed, left out: {', '.join(missing)})"
                                                  if missing else ""))
    lines += ["", "| row | " + " | ".join(sets) + " |", "|---|" + "---|" * len(sets)]
    means = {s: {} for s in sets}
    for row in rows:
        cells = []
        for s in sets:
            got = [r for r in results.get(row, {}).values() if s in r]
            miou = [r[s]["target_miou"] for r in got]
            tie = [r[s]["target_iou_2"] for r in got]
            if miou:
                means[s][row] = float(np.mean(miou))
            cells.append(f"{_mean_std(miou)} ({_mean_std(tie)})" if miou else "-")
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    lines += ["", "Order of the rows by mean target mIoU, best first:", ""]
    for s in sets:
        order = sorted(means[s], key=lambda r: -means[s][r])
        lines.append(f"- {s}: " + " > ".join(f"{r} ({means[s][r]:.3f})" for r in order))
    lines += ["", "Per run:", "", "| row | seed | " + " | ".join(f"{s} mIoU / bg / main / tie" for s in sets)
              + " |", "|---|---|" + "---|" * len(sets)]
    for row in rows:
        for seed, r in sorted(results.get(row, {}).items()):
            cells = [" / ".join(f"{r[s][k]:.3f}" for k in ("target_miou", "target_iou_0", "target_iou_1",
                                                            "target_iou_2")) if s in r else "-" for s in sets]
            lines.append(f"| {row} | {seed} | " + " | ".join(cells) + " |")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    path.with_suffix(".json").write_text(json.dumps({"command": command, "results": results}, indent=1))


def run_folder_name(row: str) -> str:
    """The folder name da.tables gives a row (brackets and commas flattened)."""
    return row.replace("/", "_").replace("[", "_").replace("]", "").replace(",", "_").replace("=", "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benchmark", type=Path, required=True, help="the mvs dataset the rows trained on")
    parser.add_argument("--sets", type=Path, required=True, help="sfm_test_set.py's --out folder")
    parser.add_argument("--runs", type=Path, required=True, help="ROWS/seedK run folders under here")
    parser.add_argument("--rows", nargs="+", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--modes", nargs="+", choices=SETS, default=list(SETS))
    parser.add_argument("--out", type=Path, required=True, help="markdown table (+ .json beside it)")
    args = parser.parse_args(argv)
    command = "python experiments/sfm_rows.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    datasets = {"mvs": args.benchmark.resolve()}
    for mode in args.modes:
        if mode != "mvs":
            datasets[mode] = evaluation_dataset(args.benchmark, (args.sets / mode).resolve(),
                                                (args.sets / "datasets" / mode).resolve())
    results_path = args.out.with_suffix(".json")
    previous = json.loads(results_path.read_text())["results"] if results_path.is_file() else {}
    results: dict[str, dict[str, dict]] = {}
    t0 = time.perf_counter()
    for row in args.rows:
        for seed in args.seeds:
            run_dir = args.runs / run_folder_name(row) / f"seed{seed}"
            if not (run_dir / "checkpoints" / "last.pt").is_file():
                print(f"skipped {row} seed {seed}: no {run_dir}/checkpoints/last.pt", flush=True)
                continue
            got = results.setdefault(row, {}).setdefault(str(seed), {})
            for mode in args.modes:
                kept = previous.get(row, {}).get(str(seed), {}).get(mode)
                if kept is None and mode == "mvs":  # the run's own final evaluation
                    kept = final_evaluation(run_dir)
                got[mode] = kept if kept is not None else evaluate_on(run_dir, datasets[mode])
                print(f"{row} seed {seed} {mode}: mIoU {got[mode]['target_miou']:.3f}", flush=True)
            write_report(results, args.rows, args.modes, datasets, command, time.perf_counter() - t0, args.out)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
