"""``python -m data_tools SUBCOMMAND ...``: data tools from the command line.

    python -m data_tools snapshot CLOUD --out picture.png [--color label|rgb]
        [--view iso|top|front] [--width W --height H] [--point-size PX]
    python -m data_tools cages --out data/bim --scenes 40 --seed 0 [--density 20000]
        [--elements column beam ...]
    python -m data_tools ifc MODEL.ifc --out cloud.ply [--density 20000] [--seed 0]
        [--allow-no-rebar]
    python -m data_tools site3d --source MODELS... --target CLOUDS... [--target-test CLOUDS...]
        --out data/my_site [--units mm | --scale S] [--up auto|x|y|z|X,Y,Z | --transform M.txt]
        [--val-fraction 0.2] [--seed 0] [--density 20000]
    python -m data_tools rebar3d --out data/rebar3d --scenes 40 --mode mvs|fast|sfm|sfm_true_poses
        --preset typical [--capture noon] --seed 0 [--density 20000] [--image-size W H]
        [--views N] [--elements column beam ...] [--similarity]
        [--walk walk_around|walk_around_two_heights] [--colmap-threads 1]   (sfm modes)

Bad input (missing or corrupt file, a cloud without the asked-for colours) prints
``error: <message>`` on stderr and exits with code 2.
"""

from __future__ import annotations

import argparse
import json
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


def cmd_rebar3d(args: argparse.Namespace) -> int:
    from data_tools.target_dataset import build_rebar3d

    command = (f"python -m data_tools rebar3d --out {args.out} --scenes {args.scenes} "
               f"--mode {args.mode} --preset {args.preset} --capture {args.capture} --seed {args.seed} "
               f"--density {args.density:g}"
               + (f" --image-size {args.image_size[0]} {args.image_size[1]}" if args.image_size else "")
               + (f" --views {args.views}" if args.views else "")
               + (f" --elements {' '.join(args.elements)}" if args.elements else "")
               + (" --similarity" if args.similarity else "")
               + (f" --walk {args.walk} --colmap-threads {args.colmap_threads}"
                  if args.mode.startswith("sfm") else ""))
    out = build_rebar3d(args.out, args.scenes, args.mode, args.preset, args.seed, args.density,
                        args.elements, args.similarity, progress=not args.no_progress,
                        image_size=tuple(args.image_size) if args.image_size else None,
                        n_views=args.views, capture=args.capture, command=command, walk=args.walk,
                        colmap_threads=args.colmap_threads, workers=args.workers)
    manifest = json.loads((out / "manifest.json").read_text())
    sizes = ", ".join(f"{k} {v}" for k, v in manifest["split_sizes"].items())
    print(f"wrote {args.scenes} scenes ({sizes}) to {out}")
    return 0


def cmd_simulate_source(args: argparse.Namespace) -> int:
    from data_tools.target_dataset import simulate_source

    out = simulate_source(args.dataset, args.preset, progress=not args.no_progress)
    manifest = json.loads((out / "manifest.json").read_text())
    print(f"wrote {len(manifest['splits'][out.name])} simulated source scenes to {out}")
    return 0


def cmd_rebar2d(args: argparse.Namespace) -> int:
    from data_tools.rebar2d import SHIFTS, SPLITS, build_rebar2d

    source, target = args.source, args.target
    if args.shift:
        source, target = SHIFTS[args.shift]
    if not source or not target:
        raise ValueError("give --source and --target domains (ASSEMBLY/TIME/POSITION), or --shift")
    images = dict(zip(SPLITS, args.images))
    out = build_rebar2d(args.out, source, target, images, tuple(args.size), args.views, args.seed,
                        progress=not args.no_progress)
    manifest = json.loads((out / "manifest.json").read_text())
    print(f"wrote {sum(images.values())} images ({manifest['source']['name']} -> "
          f"{manifest['target']['name']}) to {out} in {manifest['seconds']} s")
    return 0


def cmd_mnistm(args: argparse.Namespace) -> int:
    from data_tools.mnistm import build_mnistm

    out = build_mnistm(args.root, seed=args.seed)
    counts = json.loads((out / "recipe.json").read_text())["counts"]
    print(f"wrote MNIST-M to {out} ({counts['train']} train, {counts['test']} test images)")
    return 0


def cmd_site3d(args: argparse.Namespace) -> int:
    from data_tools.levelling import read_transform
    from data_tools.site_dataset import build_site_dataset, scale_of

    transform = read_transform(args.transform) if args.transform else None
    build_site_dataset(args.out, args.source, args.target, args.target_test or [], scale=scale_of(args),
                       up=args.up, transform=transform, val_fraction=args.val_fraction, seed=args.seed,
                       density=args.density, command="python -m data_tools " + " ".join(sys.argv[1:]))
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

    p = sub.add_parser("rebar3d", help="split 3D dataset: labelled source clouds, reconstructed target clouds")
    p.add_argument("--out", type=Path, required=True, help="dataset folder to write (replaced)")
    p.add_argument("--scenes", type=int, default=40, help="scenes over all splits (>= 4)")
    p.add_argument("--mode", default="fast",
                   help="target reconstruction: mvs (stereo rig + matcher), fast (artefact model), sfm "
                        "(walk-around photos -> COLMAP poses -> dense matching; needs `colmap`) or "
                        "sfm_true_poses (the same photos and dense step on the renderer's poses)")
    p.add_argument("--preset", default="typical", help="reconstruction preset: mild, typical, harsh")
    from data_tools.render import PRESETS as CAPTURE_PRESETS

    p.add_argument("--capture", choices=list(CAPTURE_PRESETS), default="noon",
                   help="capture preset, independent of --preset: light (noon, overcast, "
                        "evening, morning) or camera ring (close_low, far_high)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--density", type=float, default=20000.0, help="source points per square metre")
    p.add_argument("--image-size", type=int, nargs=2, metavar=("W", "H"), default=None,
                   help="render at W x H (same field of view) instead of the preset's 960 x 720")
    p.add_argument("--views", type=int, default=None, help="camera positions (default: the preset's); sfm modes: photos per loop")
    p.add_argument("--elements", nargs="+", choices=list(ELEMENTS), default=None,
                   help="element types to draw from (default: all)")
    p.add_argument("--similarity", action="store_true",
                   help="give each target cloud a random similarity transform (recorded in the manifest)")
    from data_tools.walk_around import WALK_AROUND_PRESETS

    p.add_argument("--walk", choices=list(WALK_AROUND_PRESETS), default="walk_around",
                   help="sfm modes: the walk-around capture (--views sets its photos per loop)")
    p.add_argument("--colmap-threads", type=int, default=1, help="sfm mode: threads COLMAP may use")
    p.add_argument("--workers", type=int, default=1,
                   help="scenes built side by side (processes); the files do not depend on it")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(fn=cmd_rebar3d)

    p = sub.add_parser("simulate-source",
                       help="labelled fast-photogrammetry clouds of a rebar3d dataset's source cages")
    p.add_argument("dataset", type=Path, help="a folder written by `rebar3d`")
    p.add_argument("--preset", default="typical", help="artefact preset: mild, typical, harsh")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(fn=cmd_simulate_source)

    from data_tools.rebar2d import SHIFTS

    p = sub.add_parser("rebar2d", help="split 2D dataset: rendered rebar photos with exact pixel masks")
    p.add_argument("--out", type=Path, required=True, help="dataset folder to write (replaced)")
    p.add_argument("--source", default="", help="source domain ASSEMBLY/TIME/POSITION, e.g. slab+wall/noon/close")
    p.add_argument("--target", default="", help="target domain, e.g. slab+wall/evening_wet/close")
    p.add_argument("--shift", choices=list(SHIFTS), default=None,
                   help="one of the experiment's shifts instead of --source/--target")
    p.add_argument("--images", type=int, nargs=4, default=[60, 16, 60, 20],
                   metavar=("SRC_TRAIN", "SRC_VAL", "TGT_TRAIN", "TGT_TEST"), help="images per split")
    p.add_argument("--size", type=int, nargs=2, default=[512, 512], metavar=("W", "H"))
    p.add_argument("--views", type=int, default=2, help="images per cage")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(fn=cmd_rebar2d)

    p = sub.add_parser("mnistm", help="MNIST-M by the DANN paper's recipe from MNIST and the offline photos")
    p.add_argument("--root", type=Path, default=Path("data/digits_raw"), help="writes ROOT/mnist_m")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(fn=cmd_mnistm)

    p = sub.add_parser("site3d", help="a 3D training set from your files: IFC models / labeled clouds "
                                      "(source) and site clouds (target)")
    p.add_argument("--source", nargs="+", required=True,
                   help="IFC models and/or labeled clouds (label property), metres, Z up; files or folders")
    p.add_argument("--target", nargs="+", required=True, help="unlabeled site clouds; files or folders")
    p.add_argument("--target-test", nargs="+", default=None,
                   help="labeled site clouds for a test split (optional: without, no target metrics)")
    p.add_argument("--out", type=Path, required=True, help="dataset folder (data.name=rebar3d data.path=OUT)")
    from data_tools.site_dataset import add_site_arguments

    add_site_arguments(p)
    p.add_argument("--val-fraction", type=float, default=0.2, help="share of the source files held out")
    p.add_argument("--seed", type=int, default=0, help="source split and IFC sampling")
    p.add_argument("--density", type=float, default=20000.0, help="IFC sampling, points per square metre")
    p.set_defaults(fn=cmd_site3d)

    args = parser.parse_args(argv)
    from data_tools.colmap_sfm import ColmapError
    from data_tools.splits import DatasetFileError

    try:
        return args.fn(args)
    except (DatasetFileError, ValueError, ColmapError) as exc:  # DatasetFileError is a ValueError; named for clarity
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
