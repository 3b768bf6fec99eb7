"""A new user's first check: segment a clean column cage with `da predict`.

Samples a column cage (`data_tools.rebar.cages.make_scene("column", SEED)`, 20,000
points/m², what `python -m data_tools ifc` gives for a Revit column), writes it without
labels, runs `da predict RUN_DIR` on it (`--up z`) and compares with the known labels.

    python experiments/predict_clean_column.py RUN_DIR [--seed 12345]
        [--out experiments/results/rebar3d/predict_clean_column.md]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from da.metrics import confusion_matrix, per_class_iou  # noqa: E402
from data_tools.io import PointCloud, read_cloud, write_cloud  # noqa: E402
from data_tools.rebar.cages import make_scene  # noqa: E402
from data_tools.rebar.mesh import scene_to_mesh  # noqa: E402
from data_tools.rebar.sampling import sample_surface  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--seed", type=int, default=12345)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    cloud = sample_surface(scene_to_mesh(make_scene("column", args.seed)), 20000.0,
                           np.random.default_rng(0))
    with tempfile.TemporaryDirectory() as tmp:
        src, pred = Path(tmp) / "column.ply", Path(tmp) / "pred.ply"
        write_cloud(src, PointCloud(cloud.xyz, None))
        subprocess.run([sys.executable, "-m", "da.cli", "predict", str(args.run), str(src),
                        "--out", str(pred), "--up", "z"], check=True, cwd=REPO)
        labels = read_cloud(pred).labels
    cm = confusion_matrix(torch.from_numpy(labels), torch.from_numpy(cloud.labels), 3).numpy()
    iou = per_class_iou(torch.from_numpy(cm))
    lines = ["# da predict on a clean column cage", "",
             f"Command: `python experiments/predict_clean_column.py {args.run} --seed {args.seed}`", "",
             f"{len(cloud):,} points; rows = truth (background, main, tie), columns = prediction:", "",
             "| | background | main | tie |", "|---|---|---|---|"]
    lines += [f"| {name} | " + " | ".join(f"{v:,}" for v in cm[k]) + " |"
              for k, name in enumerate(("background", "main", "tie"))]
    lines += ["", f"IoU background / main / tie: {iou[0]:.3f} / {iou[1]:.3f} / {iou[2]:.3f}; "
              f"tie points called main rebar: {cm[2, 1]:,} of {cm[2].sum():,} "
              f"({100 * cm[2, 1] / cm[2].sum():.1f}%)."]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
