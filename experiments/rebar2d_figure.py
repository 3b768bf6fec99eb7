"""Figures of the rebar2d table: samples of each shift, and predictions before and after adaptation.

1. `rebar2d_shifts.png`: per shift (a row), two source images and two target images,
   each beside its mask overlay (red main rebar, green tie), freshly rendered by the
   dataset generator (no dataset needs to exist).
2. `rebar2d_predictions_<shift>.png`: per target_test image (a row): input | ground truth |
   one prediction per row of the table (e.g. source-only, DANN, oracle), from the finished
   runs' last checkpoints, whole image by sliding windows (what the table scores).

    python experiments/rebar2d_figure.py [--shifts assembly time position all]
        [--predict time all] [--rows source_only dann_stages train_on_target]
        [--profile standard] [--seed 0] [--images 0 1]
        [--runs runs/tables/rebar2d] [--name imagenet]

Each run predicts on data built from its own config (an ImageNet-encoder run reads its own
normalisation), so rows of the rebar2d and rebar2d_imagenet tables mix freely, e.g.
    python experiments/rebar2d_figure.py --shifts --predict all --profile long
        --runs runs/tables/rebar2d_imagenet --name imagenet --images 0 3
        --rows imagenet_source_only imagenet_photometric_source_only imagenet_train_on_target
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from da.data.segmentation2d import overlay


def resized(a: np.ndarray, size: int) -> np.ndarray:
    return np.asarray(Image.fromarray(a).resize((size, size), Image.BILINEAR))


def labelled(tile: np.ndarray, text: str) -> np.ndarray:
    img = Image.fromarray(tile)
    draw = ImageDraw.Draw(img)
    draw.rectangle([0, 0, 8 + 7 * len(text), 16], fill=(255, 255, 255))
    draw.text((4, 2), text, fill=(0, 0, 0))
    return np.asarray(img)


def tile_of(ds, i: int, labels: np.ndarray | None = None, size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    img = ds.images[i].permute(1, 2, 0).numpy()
    truth = ds.masks[i].numpy() if labels is None else labels
    return resized(img, size), resized(overlay(img, truth), size)


def shifts_figure(shifts: list[str], out: Path, seed: int, per_domain: int = 2) -> Path:
    """`per_domain` fresh renders per domain (the generator's own `render_sample`, 512 px,
    the seed fixed), so every shift is shown without building its whole dataset."""
    from data_tools.rebar2d import SHIFTS, parse_domain, render_sample

    rows = []
    for k, shift in enumerate(shifts):
        tiles = []
        for j, (side, name) in enumerate(zip(("source", f"target: {shift}"), SHIFTS[shift])):
            for v in range(per_domain):
                rng = np.random.default_rng([seed, k, j, v])
                img, mask, _ = render_sample(parse_domain(name), rng, (512, 512), 1)[0]
                tiles += [labelled(resized(img, 192), side), resized(overlay(img, mask), 192)]
        rows.append(np.concatenate(tiles, axis=1))
    path = out / "rebar2d_shifts.png"
    Image.fromarray(np.concatenate(rows, axis=0)).save(path)
    return path


def predictions_figure(shift: str, rows: list[str], runs: Path, seed: int, images: list[int], out: Path,
                       name: str = "") -> Path:
    """Each run predicts on data built from its own config.yaml (so an ImageNet-encoder run
    gets its own input normalisation); the tiles show the first run's target_test images."""
    from da.runs import load_trained
    from da.tasks import task_of

    device = torch.device("cpu")
    preds, ds = {}, None
    for row in rows:
        run_dir = runs / f"{shift}_{row}" / f"seed{seed}"
        run = load_trained(run_dir, "last.pt", device)
        ds = run.data.target_test if ds is None else ds
        task = task_of(run.data)
        preds[row] = [task.predict_labels(run.algorithm, run.data.target_test, i, device).astype(np.uint8)
                      for i in images]
    lines = []
    for k, i in enumerate(images):
        img, truth = tile_of(ds, i)
        tiles = [labelled(img, f"{shift} target_test {i}"), labelled(truth, "truth")]
        tiles += [labelled(tile_of(ds, i, preds[row][k])[1], row) for row in rows]
        lines.append(np.concatenate(tiles, axis=1))
    path = out / f"rebar2d_predictions_{name or shift}.png"
    Image.fromarray(np.concatenate(lines, axis=0)).save(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shifts", nargs="*", default=["assembly", "time", "position", "all"])
    parser.add_argument("--predict", nargs="*", default=["time", "all"])
    parser.add_argument("--rows", nargs="+", default=["source_only", "dann_stages", "train_on_target"])
    parser.add_argument("--profile", default="standard")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--images", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--runs", default="runs/tables/rebar2d")
    parser.add_argument("--out", default="experiments/results/rebar2d")
    parser.add_argument("--name", default="", help="figure name suffix (default: the shift)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.shifts:
        print(shifts_figure(args.shifts, out, args.seed))
    for shift in args.predict:
        name = f"{args.name}_{shift}" if args.name else ""
        print(predictions_figure(shift, args.rows, Path(args.runs) / args.profile, args.seed, args.images, out,
                                 name))


if __name__ == "__main__":
    main()
