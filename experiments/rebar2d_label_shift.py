"""How different are the tie labels of two rebar2d domains? A diagnostic, no training.

The all-three shift's target (column + beam cages) labels as tie the hoops wrapped round
the main bars; the slab + wall source has only small S-shaped wall links as ties (slabs
have none). This script measures that label shift from the rendered masks, per split
of each dataset folder given:

- class pixel shares, and the tie share of the steel pixels;
- images holding any tie pixel, per element type (from the manifest's images_info);
- tie connected components (8-connected): how many per image, and their size in pixels
  (median and 90th percentile) - a hoop seen from the side is a long band, a wall link a
  small blob.

Target masks are READ here (target_test, and target_train's oracle_labels/): this is a
description of the data for the README, never an input to a choice of any setting.

    python experiments/rebar2d_label_shift.py data/rebar2d-v1-XXXX [data/rebar2d-v1-YYYY ...]
        [--out experiments/results/rebar2d/rebar2d_label_shift.md]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from da.provenance import git_state

TIE = 2
SPLIT_MASKS = {"source_train": "source_train/masks", "source_val": "source_val/masks",
               "target_train": "oracle_labels/target_train", "target_test": "target_test/masks"}


def read_mask(path: Path) -> np.ndarray:
    with Image.open(path) as m:
        mask = np.asarray(m)
    if mask.ndim != 2:
        raise ValueError(f"{path}: a mask must be single-channel, got shape {mask.shape}")
    return mask


def split_stats(folder: Path, split: str, info: list[dict]) -> dict:
    """Pixel shares, tie components and per-element tie presence of one split."""
    mask_dir = folder / SPLIT_MASKS[split]
    if not mask_dir.is_dir():
        raise FileNotFoundError(f"{mask_dir}: no masks for {split}")
    counts = np.zeros(3, dtype=np.int64)
    sizes: list[int] = []
    per_image_components: list[int] = []
    by_element: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # element -> [images, with tie]
    for entry in info:
        mask = read_mask(mask_dir / entry["file"])
        counts += np.bincount(mask.ravel(), minlength=3)[:3]
        labels, n = ndimage.label(mask == TIE, structure=np.ones((3, 3), dtype=bool))
        if n:
            sizes += np.bincount(labels.ravel())[1:].tolist()
        per_image_components.append(n)
        by_element[entry["element"]][0] += 1
        by_element[entry["element"]][1] += int(n > 0)
    share = counts / max(counts.sum(), 1)
    steel = counts[1] + counts[2]
    return {"images": len(info), "share_bg": share[0], "share_main": share[1], "share_tie": share[2],
            "tie_of_steel": counts[2] / max(steel, 1),
            "components_per_image": float(np.mean(per_image_components)) if info else 0.0,
            "component_px_median": float(np.median(sizes)) if sizes else 0.0,
            "component_px_p90": float(np.percentile(sizes, 90)) if sizes else 0.0,
            "elements": {e: f"{t}/{n}" for e, (n, t) in sorted(by_element.items())}}


def folder_table(folder: Path) -> list[str]:
    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        raise FileNotFoundError(f"{manifest_path}: not a rebar2d dataset folder")
    manifest = json.loads(manifest_path.read_text())
    lines = [f"## {folder.name}: source `{manifest['source']['name']}` -> target `{manifest['target']['name']}`",
             "",
             "| split | images | bg share | main share | tie share | tie / steel | tie components per image "
             "| component px median | component px p90 | images with a tie, per element |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for split in SPLIT_MASKS:
        s = split_stats(folder, split, manifest["splits"][split]["images_info"])
        elements = ", ".join(f"{e} {v}" for e, v in s["elements"].items())
        lines.append(f"| {split} | {s['images']} | {s['share_bg']:.4f} | {s['share_main']:.4f} | "
                     f"{s['share_tie']:.4f} | {s['tie_of_steel']:.3f} | {s['components_per_image']:.1f} | "
                     f"{s['component_px_median']:.0f} | {s['component_px_p90']:.0f} | {elements} |")
    return lines + [""]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folders", nargs="+", type=Path)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    state = git_state()
    commit = state["commit"][:7] + ("-dirty" if state["dirty"] else "")
    lines = ["# rebar2d: tie labels of source and target, from the rendered masks", "",
             f"Command: `python experiments/rebar2d_label_shift.py {' '.join(sys.argv[1:])}`  ",
             f"Commit: `{commit}`. Target masks are read here to DESCRIBE the data; "
             "no setting was chosen from them.", ""]
    for folder in args.folders:
        lines += folder_table(folder)
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
