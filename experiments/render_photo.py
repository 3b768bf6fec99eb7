"""One rendered 'phone photo' of a parametric cage, for the README.

    python experiments/render_photo.py [--element column] [--preset noon] [--seed 0]
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import matplotlib
import numpy as np

from data_tools import render
from data_tools.rebar.cages import ELEMENTS, make_scene
from data_tools.rebar.mesh import scene_to_mesh

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--element", default="column", choices=list(ELEMENTS))
    parser.add_argument("--preset", default="noon", choices=list(render.PRESETS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="image file (default experiments/results/rebar3d/render_ELEMENT_PRESET.jpg)")
    args = parser.parse_args()
    scene = make_scene(args.element, args.seed)
    mesh = render.extend_ground(scene_to_mesh(scene))  # the site continues to the horizon
    preset = render.PRESETS[args.preset]
    path = replace(preset.path, image_size=(640, 480), focal_px=preset.path.focal_px * 640 / 960)
    lo, hi = np.array(scene.params["bounds"])
    camera = render.camera_path(render.CaptureSettings(preset.appearance, path), lo, hi,
                                np.random.default_rng(args.seed + 1))[0]
    out = render.render(mesh, camera, preset.appearance, np.random.default_rng(args.seed))
    target = Path(args.out or f"experiments/results/rebar3d/render_{args.element}_{args.preset}.jpg")
    plt.imsave(target, out.rgb, pil_kwargs={"quality": 90} if target.suffix == ".jpg" else None)
    print(f"wrote {target}; pixels per label: "
          f"{ {k: int((out.label == k).sum()) for k in (0, 1, 2, 255)} }")


if __name__ == "__main__":
    main()
