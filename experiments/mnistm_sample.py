"""The first 40 MNIST-M test images as one picture (what the target looks like).

    python experiments/mnistm_sample.py --out experiments/results/digits/mnistm_sample.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from da.data.paper_digits import ensure_mnistm  # noqa: E402
from data_tools.digit_files import read_digits  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path("data/digits_raw"))
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    ensure_mnistm(args.root)
    x, _ = read_digits("mnistm", args.root, "test")
    tiles = np.concatenate([np.concatenate(list(x[r * 10:(r + 1) * 10]), axis=1) for r in range(4)], axis=0)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(tiles).resize((560, 224), Image.NEAREST).save(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
