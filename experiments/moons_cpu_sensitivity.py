"""How much do the moons angle numbers move with the CPU? float64 against float32 as a proxy.

Two CPUs of this machine kind gave DANN at 50° 0.840 ± 0.071 and 0.687 ± 0.094 with the
same code and seeds: a short chaotic training amplifies last-bit differences. Another CPU
is not at hand, so the same runs are made twice here, in float32 and in float64
(train.dtype; the last bits differ from the first step on, as they do between CPUs), 10
seeds each, with the moons table's batch protocol (experiments/moons_angles.py). A number
is reported with the spread of both together; where the two means differ by more than
that spread, the protocol is too chaotic there to quote one number.

    python experiments/moons_cpu_sensitivity.py   # -> experiments/results/moons/moons_cpu_sensitivity.{md,json}
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

sys.path.insert(0, str(REPO / "experiments"))

import moons_angles  # noqa: E402
from moons_angles import ROWS  # noqa: E402

from da.provenance import git_state, machine_summary  # noqa: E402

DTYPES = ("float32", "float64")


def run(row: str, angle: float, seed: int, dtype: str, runs: Path) -> float:
    """moons_angles' run in `dtype`; runs under RUNS/DTYPE/ROW/angleA/seedS."""
    return moons_angles.run(row, angle, seed, runs / dtype, [f"train.dtype={dtype}"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--angles", type=float, nargs="+", default=[10, 20, 30, 40, 50, 60, 70, 80, 90])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--runs", type=Path, default=Path("runs/moons_cpu"))
    ap.add_argument("--out", type=Path, default=REPO / "experiments/results/moons")
    args = ap.parse_args()
    start = time.time()
    acc = {d: {r: {} for r in ROWS} for d in DTYPES}
    for angle in args.angles:
        for dtype in DTYPES:
            for row in ROWS:
                acc[dtype][row][str(angle)] = [run(row, angle, s, dtype, args.runs) for s in range(args.seeds)]
        print(f"{angle:g}°: " + ", ".join(f"{d} DANN {np.mean(acc[d]['dann'][str(angle)]):.3f}" for d in DTYPES),
              flush=True)
    command = "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])
    git = git_state()
    meta = {"command": command, "commit": git["commit"][:12] + ("-dirty" if git["dirty"] else ""),
            "machine": machine_summary(), "seeds": list(range(args.seeds)), "angles": args.angles,
            "target_acc": acc, "seconds": round(time.time() - start)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "moons_cpu_sensitivity.json").write_text(json.dumps(meta, indent=2) + "\n")
    lines = ["# Two moons: how far the angle numbers move with the arithmetic (float32 vs float64)", "",
             f"Command: `{command}`  ", f"Commit: `{meta['commit']}`  ", f"Machine: {meta['machine']}  ",
             f"Seeds: {meta['seeds']} in each dtype; the moons table's batch protocol; target accuracy at the "
             f"last checkpoint, mean ± std over seeds; {meta['seconds']} s in all.", "",
             "float64 stands in for another CPU: the same code and seeds, other last bits from the first step. "
             "'Both' pools the 2 x 10 runs: the spread a user on any CPU of this kind should expect. 'Calm' = the "
             "two means differ by less than the pooled std.", "",
             "| rotation | source only f32 | source only f64 | DANN f32 | DANN f64 | DANN both | |Δ mean| DANN | calm |",
             "|---|---|---|---|---|---|---|---|"]
    for angle in args.angles:
        cell = lambda d, r, a=angle: np.array(acc[d][r][str(a)])  # noqa: E731
        both = np.concatenate([cell(d, "dann") for d in DTYPES])
        delta = abs(cell("float32", "dann").mean() - cell("float64", "dann").mean())
        fmt = lambda a: f"{a.mean():.3f} ± {a.std(ddof=1):.3f}"  # noqa: E731
        lines.append(f"| {angle:g}° | {fmt(cell('float32', 'source_only'))} | {fmt(cell('float64', 'source_only'))} | "
                     f"{fmt(cell('float32', 'dann'))} | {fmt(cell('float64', 'dann'))} | {fmt(both)} | {delta:.3f} | "
                     f"{'yes' if delta < both.std(ddof=1) else 'no'} |")
    (args.out / "moons_cpu_sensitivity.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
