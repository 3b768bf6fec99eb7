"""Target accuracy of source-only and DANN against the target's rotation angle (two moons).

The moons table's batch protocol (experiments/configs/moons.yaml + moons_dann.yaml: batches
of 64, SGD lr 0.2, momentum 0.9, lambda ramped to 6, 2,000 steps) at rotations 10°-90°,
5 seeds each; the paper-protocol rows (150,000 per-example updates, ~3 minutes a run here)
would take about 5 hours for this grid, so they are not in it. Runs live under
runs/moons_angles/ and are skipped when done, so an interrupted sweep resumes.

    python experiments/moons_angles.py            # -> experiments/results/moons/moons_angles.{png,md,json}
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from da.config import load_config  # noqa: E402
from da.provenance import git_state, machine_summary  # noqa: E402
from da.run_log import read_results  # noqa: E402
from da.train import train  # noqa: E402

ROWS = {"source_only": ["experiments/configs/moons.yaml"],
        "dann": ["experiments/configs/moons.yaml", "experiments/configs/moons_dann.yaml"]}


def run(row: str, angle: float, seed: int, runs: Path, extra: list[str] = ()) -> float:
    """Target accuracy of one run at the last checkpoint; `extra`: more overrides (e.g. train.dtype)."""
    cfg = load_config([REPO / c for c in ROWS[row]], [
        f"data.rotation={angle}", f"seed={seed}", f"run_dir={runs / row / f'angle{angle:g}' / f'seed{seed}'}",
        "train.embedding_samples=0", "train.progress_bar=false", "train.eval_every=2000", *extra])
    with contextlib.redirect_stdout(io.StringIO()):
        return read_results(train(cfg))[-1]["target_acc"]


def plot(angles: list[float], acc: dict, path: Path, command: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for row, colour in (("source_only", "#c0392b"), ("dann", "#2a6fb0")):
        a = np.array([acc[row][str(x)] for x in angles])  # (angles, seeds)
        m, s = a.mean(1), a.std(1, ddof=1)
        ax.plot(angles, m, "o-", color=colour, label=f"{row} (mean ± std, {a.shape[1]} seeds)")
        ax.fill_between(angles, m - s, m + s, color=colour, alpha=0.2)
    ax.axvline(35, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("target rotation (degrees)")
    ax.set_ylabel("target accuracy (last checkpoint)")
    ax.set_ylim(0.0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    ax.set_title(f"Two moons: {command}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--angles", type=float, nargs="+", default=[10, 20, 30, 40, 50, 60, 70, 80, 90])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--runs", type=Path, default=Path("runs/moons_angles"))
    ap.add_argument("--out", type=Path, default=REPO / "experiments/results/moons")
    args = ap.parse_args()
    acc = {row: {} for row in ROWS}
    for angle in args.angles:
        for row in ROWS:
            acc[row][str(angle)] = [run(row, angle, s, args.runs) for s in range(args.seeds)]
        print(f"{angle:g}°: " + ", ".join(f"{r} {np.mean(acc[r][str(angle)]):.3f}" for r in ROWS), flush=True)
    command = "python experiments/moons_angles.py"
    git = git_state()
    meta = {"command": command, "commit": git["commit"][:12] + ("-dirty" if git["dirty"] else ""),
            "machine": machine_summary(), "seeds": list(range(args.seeds)), "angles": args.angles,
            "target_acc": acc}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "moons_angles.json").write_text(json.dumps(meta, indent=2) + "\n")
    plot(args.angles, acc, args.out / "moons_angles.png", command)
    lines = ["# Two moons: target accuracy against the rotation angle", "",
             f"Command: `{command}`  ", f"Commit: `{meta['commit']}`  ", f"Machine: {meta['machine']}  ",
             f"Seeds: {meta['seeds']}; the moons table's batch protocol; mean ± std over seeds, last checkpoint.",
             "", "| rotation | source only | DANN | DANN ahead on seeds |", "|---|---|---|---|"]
    for angle in args.angles:
        so, d = np.array(acc["source_only"][str(angle)]), np.array(acc["dann"][str(angle)])
        lines.append(f"| {angle:g}° | {so.mean():.3f} ± {so.std(ddof=1):.3f} | {d.mean():.3f} ± "
                     f"{d.std(ddof=1):.3f} | {(d > so).sum()} of {len(d)} |")
    lines += ["", "![accuracy against angle](moons_angles.png)", ""]
    (args.out / "moons_angles.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
