"""Where do a finished rebar2d run's target pixels go? Row-normalised confusion matrices.

For each run folder given (a finished `da train` / `da reproduce` run), the last
checkpoint predicts every target_test image whole (sliding windows, as the table scores
it) and the confusion matrix true -> predicted is printed as shares of each true class,
with the share of all pixels each class is predicted as. A description of errors the
table already counts, never an input to a choice.

    python experiments/rebar2d_confusion.py runs/tables/rebar2d/long/all_source_only/seed0 ...
        [--out experiments/results/rebar2d/rebar2d_confusion.md] [--device cpu]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from da.provenance import git_state
from da.runs import load_trained
from da.tasks import task_of

CLASSES = ("background", "main", "tie")


def confusion_lines(run_dir: Path, device: str) -> list[str]:
    if not (run_dir / "checkpoints" / "last.pt").is_file():
        raise FileNotFoundError(f"{run_dir}: no checkpoints/last.pt (train the run first)")
    run = load_trained(run_dir, device=device)
    cm = task_of(run.data).evaluate(run.algorithm, run.data.target_test, run.device).confusion.double().cpu()
    rows = cm / cm.sum(dim=1, keepdim=True).clamp_min(1)
    predicted = cm.sum(dim=0) / cm.sum()
    truth = cm.sum(dim=1) / cm.sum()
    lines = [f"### {run_dir}", "",
             "| true \\ predicted | " + " | ".join(CLASSES) + " | share of pixels |",
             "|---|" + "---|" * (len(CLASSES) + 1)]
    for i, name in enumerate(CLASSES):
        lines.append(f"| {name} | " + " | ".join(f"{float(v):.3f}" for v in rows[i]) + f" | {float(truth[i]):.4f} |")
    lines.append("| predicted share | " + " | ".join(f"{float(v):.4f}" for v in predicted) + " | |")
    return lines + [""]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    state = git_state()
    commit = state["commit"][:7] + ("-dirty" if state["dirty"] else "")
    lines = ["# rebar2d: target_test confusion of finished runs (rows: true class, shares of it)", "",
             f"Command: `python experiments/rebar2d_confusion.py {' '.join(sys.argv[1:])}`  ",
             f"Commit: `{commit}`; last checkpoints; whole images by sliding windows.", ""]
    torch.set_grad_enabled(False)
    for run_dir in args.runs:
        lines += confusion_lines(run_dir, args.device)
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
