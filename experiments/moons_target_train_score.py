"""Accuracy of trained two-moons runs on their own unlabeled target-training points.

The DANN authors' numpy script has no held-out target set; a number quoted from it is
most likely its accuracy on the target points it adapted to. Our tables score 1,000 fresh
rotated points. This reads every finished run of a moons table profile, predicts its
target_train points and scores them against their labels (read here for scoring only;
training never saw them), so the two scorings can be put side by side.

    python experiments/moons_target_train_score.py runs/tables/moons_paper_protocol/standard \
        --data-root data [--rows source_only dann]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from da.data.base import read_split  # noqa: E402
from da.runs import load_trained  # noqa: E402


def labels_of(points: np.ndarray, data_root: Path) -> np.ndarray:
    """The labels of these target_train points, from the moons dataset folder holding them."""
    for folder in sorted(data_root.glob("moons-*")):
        x, y = read_split(folder, "target_train", with_labels=True)
        if np.shape(x) == points.shape and np.allclose(np.asarray(x), points):
            return np.asarray(y)
    raise SystemExit(f"no moons dataset under {data_root} holds these target_train points")


def score(run_dir: Path, data_root: Path) -> float:
    run = load_trained(run_dir, "last.pt", "cpu")
    tt = run.data.target_train
    with torch.no_grad():
        run.algorithm.eval()
        pred = run.algorithm.predict({"x": tt.prepare(tt.x) if tt.prepare else tt.x}).argmax(1).numpy()
    return float((pred == labels_of(tt.x.numpy(), data_root)).mean())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("profile_dir", type=Path, help="runs/tables/TABLE/PROFILE")
    ap.add_argument("--data-root", type=Path, default=Path("data"))
    ap.add_argument("--rows", nargs="+", default=None)
    args = ap.parse_args()
    rows = args.rows or sorted(p.name for p in args.profile_dir.iterdir() if p.is_dir())
    for row in rows:
        runs = sorted(d for d in (args.profile_dir / row).iterdir() if (d / "done").exists())
        acc = [score(d, args.data_root) for d in runs]
        spread = f" ± {np.std(acc, ddof=1):.3f}" if len(acc) > 1 else ""
        print(f"{row}: target_train accuracy {np.mean(acc):.3f}{spread} over {len(acc)} seeds "
              f"({', '.join(f'{a:.3f}' for a in acc)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
