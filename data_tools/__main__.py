"""``python -m data_tools SUBCOMMAND ...``: data tools from the command line.

    python -m data_tools snapshot CLOUD --out picture.png [--color label|rgb]
        [--view iso|top|front] [--width W --height H] [--point-size PX]
    python -m data_tools cages --out data/bim --scenes 40 --seed 0 [--density 20000]
        [--elements column beam ...]
    python -m data_tools ifc MODEL.ifc --out cloud.ply [--density 20000] [--seed 0]
        [--allow-no-rebar]

Bad input (missing or corrupt file, a cloud without the asked-for colours) prints
``error: <message>`` on stderr and exits with code 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def cmd_snapshot(args: argparse.Namespace) -> int:
    from data_tools.io import read_cloud
    from data_tools.viz import legend, snapshot

    cloud = read_cloud(args.cloud)
    out = snapshot(cloud, args.out, color=args.color, width=args.width, height=args.height,
                   point_size=args.point_size, view=args.view)
    print(f"wrote {out} ({len(cloud)} points, {args.view} view)")
    if args.color == "label":
        print(legend())
    return 0


def cmd_cages(args: argparse.Namespace) -> int:
    from data_tools.rebar.generate import generate_scenes

    command = (f"python -m data_tools cages --out {args.out} --scenes {args.scenes} "
               f"--seed {args.seed} --density {args.density:g}"
               + (f" --elements {' '.join(args.elements)}" if args.elements else ""))
    out = generate_scenes(args.out, args.scenes, args.seed, args.density, args.elements, command)
    print(f"wrote {args.scenes} scenes to {out}")
    return 0


def cmd_ifc(args: argparse.Namespace) -> int:
    import numpy as np

    from data_tools.io import write_cloud
    from data_tools.rebar.ifc import ifc_scene_to_mesh, read_ifc
    from data_tools.rebar.sampling import sample_surface

    scene = read_ifc(args.model, allow_no_rebar=args.allow_no_rebar)
    cloud = sample_surface(ifc_scene_to_mesh(scene), args.density, np.random.default_rng(args.seed))
    write_cloud(args.out, cloud)
    counts = np.bincount(cloud.labels, minlength=3)
    p = scene.params
    print(f"wrote {args.out} ({len(cloud)} points; labels 0/1/2: {counts[0]}/{counts[1]}/{counts[2]}; "
          f"{p['swept_bars']} swept + {p['meshed_bars']} meshed bars, "
          f"{p['context_objects']} background objects)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m data_tools",
                                     description="Make, convert and look at data.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("snapshot", help="render a point cloud to a PNG (headless)")
    p.add_argument("cloud", type=Path, help="point cloud: .ply .pcd .las .laz .xyz .txt .npy .npz")
    p.add_argument("--out", type=Path, required=True, help="PNG to write")
    p.add_argument("--color", choices=["label", "rgb"], default="label",
                   help="colour points by label (project table) or by their own colours")
    p.add_argument("--view", choices=["iso", "top", "front"], default="iso")
    p.add_argument("--width", type=int, default=1024)
    p.add_argument("--height", type=int, default=768)
    p.add_argument("--point-size", type=float, default=2.0, help="point size in pixels")
    p.set_defaults(fn=cmd_snapshot)

    from data_tools.rebar.cages import ELEMENTS

    p = sub.add_parser("cages", help="labelled synthetic clouds from parametric rebar cages")
    p.add_argument("--out", type=Path, required=True, help="dataset folder to write (replaced)")
    p.add_argument("--scenes", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--density", type=float, default=20000.0, help="points per square metre")
    p.add_argument("--elements", nargs="+", choices=list(ELEMENTS), default=None,
                   help="element types to draw from (default: all)")
    p.set_defaults(fn=cmd_cages)

    p = sub.add_parser("ifc", help="labelled cloud sampled from an IFC model (Revit export)")
    p.add_argument("model", type=Path, help="IFC file: IfcReinforcingBar -> main/tie, rest background")
    p.add_argument("--out", type=Path, required=True, help="cloud to write: .ply .pcd .las .laz .npz ...")
    p.add_argument("--density", type=float, default=20000.0, help="points per square metre")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--allow-no-rebar", action="store_true",
                   help="accept a model without IfcReinforcingBar (all points background)")
    p.set_defaults(fn=cmd_ifc)

    args = parser.parse_args(argv)
    from data_tools.splits import DatasetFileError

    try:
        return args.fn(args)
    except (DatasetFileError, ValueError) as exc:  # DatasetFileError is a ValueError; named for clarity
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
