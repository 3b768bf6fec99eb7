"""The `da` command: train, reproduce, index, config, evaluate, validate, predict, export-backbone, view."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def split_args(items: list[str]) -> tuple[list[str], list[str]]:
    """YAML paths vs key=value overrides, in the order given."""
    configs = [a for a in items if "=" not in a]
    overrides = [a for a in items if "=" in a]
    return configs, overrides


def cmd_train(args) -> int:
    from da.config import load_config
    from da.train import train

    configs, overrides = split_args(args.items)
    train(load_config(configs, overrides))
    return 0


def cmd_index(args) -> int:
    from da.results_index import RESULTS_ROOT, write_index

    print(write_index(Path(args.root) if args.root else RESULTS_ROOT))
    return 0


def cmd_config(args) -> int:
    from da.config import load_config, to_yaml

    configs, overrides = split_args(args.items)
    print(to_yaml(load_config(configs, overrides)), end="")
    return 0


def cmd_reproduce(args) -> int:
    from da.reproduce import command_line, reproduce

    reproduce(args.table, args.profile, args.seeds, Path(args.out) if args.out else None, Path(args.runs),
              command_line(),
              args.rows, args.finished_only, args.allow_dirty,
              Path(args.carry) if args.carry else None, args.name, args.overrides)
    return 0


def cmd_evaluate(args) -> int:
    from da.evaluation import evaluate
    from da.runs import load_trained

    run = load_trained(Path(args.run_dir), args.checkpoint, args.device, overrides=args.overrides)
    print(json.dumps(evaluate(run, step=-1), indent=2))
    return 0


def cmd_validate(args) -> int:
    from da.validation import validate_run

    for name in args.validator:
        print(json.dumps(validate_run(Path(args.run_dir), name, args.device), indent=2))
    return 0


def cmd_view(args) -> int:
    from da.view import view

    text = view(Path(args.cloud), args.color, Path(args.screenshot) if args.screenshot else None,
                Path(args.truth) if args.truth else None, args.view, args.point_size)
    if args.screenshot:
        print(f"wrote {args.screenshot}\n{text}")
    return 0


def cmd_predict(args) -> int:
    import numpy as np

    from da.predict import CloudFrame, predict_any
    from data_tools.levelling import read_transform
    from data_tools.site_dataset import scale_of
    from data_tools.viz import LABELS

    reference = None
    if args.reference_length is not None:
        if args.reference_points is None:
            raise ValueError("--reference-length needs --reference-points X1 Y1 Z1 X2 Y2 Z2")
        p = np.array(args.reference_points, dtype=float)
        reference = (p[:3], p[3:], args.reference_length)
    frame = CloudFrame(scale_of(args), reference, args.up,
                       read_transform(args.transform) if args.transform else None)
    counts = predict_any(Path(args.run_dir), Path(args.input), Path(args.out), frame, args.checkpoint, args.device)
    total = max(sum(counts.values()), 1)
    print(f"wrote {args.out}: " + ", ".join(f"{LABELS[k].name} {c} ({c / total:.1%})"
                                           for k, c in sorted(counts.items())))
    return 0


def cmd_export_backbone(args) -> int:
    from da.models.torchvision_nets import export_run_backbone

    out = export_run_backbone(Path(args.run_dir), Path(args.out), args.checkpoint)
    print(f"wrote {out}: load it with model.weights={out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="da", description="Domain-adversarial training (DANN).")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train one run; re-running the same command resumes it")
    p.add_argument("items", nargs="+", help="config YAML files (merged in order) and key=value overrides")
    p.set_defaults(fn=cmd_train)

    p = sub.add_parser("config", help="print the resolved config")
    p.add_argument("items", nargs="*", help="config YAML files and key=value overrides")
    p.set_defaults(fn=cmd_config)

    p = sub.add_parser("reproduce", help="run a table (rows x seeds) and write experiments/results")
    p.add_argument("table", help="table name in experiments/tables/ or a path to a table YAML")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="for every row, anywhere on the line (e.g. data.path=PHOTOS for "
                        "experiments/tables/transfer_own.yaml)")
    p.add_argument("--profile", default="standard", help="quick | standard | full (as the table defines)")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="override the profile's seeds")
    p.add_argument("--out", default=None,
                   help="where TABLE.PROFILE.md/.json go (default: the table's study folder, "
                        "experiments/results/<study>/, and INDEX.md is rewritten)")
    p.add_argument("--name", default=None,
                   help="file name without suffix (default TABLE.PROFILE[.subset][.partial]), e.g. for a "
                        "subset of rows kept beside the full table")
    p.add_argument("--runs", default="runs", help="root of the run folders")
    p.add_argument("--rows", nargs="+", default=None, help="only rows matching these patterns (fnmatch)")
    p.add_argument("--carry", default=None, metavar="RESULTS_JSON",
                   help="with --finished-only: seeds with no finished run here take their metrics from "
                        "this earlier results JSON (runs made elsewhere or earlier); listed in the table")
    p.add_argument("--finished-only", action="store_true",
                   help="train nothing: tabulate the finished runs (-> NAME.PROFILE.partial.* if some are missing)")
    p.add_argument("--allow-dirty", action="store_true",
                   help="train a non-quick profile from uncommitted code anyway (the table says so)")
    p.set_defaults(fn=cmd_reproduce)

    p = sub.add_parser("evaluate", help="evaluate a run folder's checkpoint")
    p.add_argument("run_dir")
    p.add_argument("overrides", nargs="*", metavar="data.key=value",
                   help="evaluate on other data, e.g. data.path=ANOTHER_DATASET (data.* keys only)")
    p.add_argument("--checkpoint", default="last.pt", help="last.pt or best.pt")
    p.add_argument("--device", default="cpu")
    p.set_defaults(fn=cmd_evaluate)

    p = sub.add_parser("validate", help="score a finished run without target labels (model selection)")
    p.add_argument("run_dir")
    p.add_argument("--validator", nargs="+", default=["reverse"],
                   help="reverse (trains RUN_DIR/reverse) | dev | source_val")
    p.add_argument("--device", default="cpu")
    p.set_defaults(fn=cmd_validate)

    p = sub.add_parser("predict", help="segment a point cloud (3D run) or an image / a folder of images (2D run)")
    p.add_argument("run_dir")
    p.add_argument("input", help="3D: a cloud (.ply .pcd .las .laz .xyz .txt .npy .npz); 2D: an image or a folder")
    p.add_argument("--out", required=True,
                   help="3D: output cloud with a label per point and label colours; 2D: a folder for "
                        "NAME_mask.png and NAME_overlay.png")
    from data_tools.site_dataset import add_site_arguments

    add_site_arguments(p)  # --scale --units --up --transform (3D)
    p.add_argument("--reference-length", type=float, default=None,
                   help="true distance in metres between the two --reference-points (3D, instead of --scale)")
    p.add_argument("--reference-points", type=float, nargs=6, default=None,
                   metavar=("X1", "Y1", "Z1", "X2", "Y2", "Z2"))
    p.add_argument("--checkpoint", default="last.pt")
    p.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    p.set_defaults(fn=cmd_predict)

    p = sub.add_parser("export-backbone", help="a run's torchvision backbone as a weights file")
    p.add_argument("run_dir")
    p.add_argument("--out", required=True, help="file to write (.pth); use it as model.weights=FILE")
    p.add_argument("--checkpoint", default="last.pt", help="last.pt or best.pt")
    p.set_defaults(fn=cmd_export_backbone)

    p = sub.add_parser("index", help="rewrite experiments/results/INDEX.md (study -> table -> command -> commit)")
    p.add_argument("--root", default=None, help="the results folder (default experiments/results)")
    p.set_defaults(fn=cmd_index)

    p = sub.add_parser("view", help="look at a cloud or prediction in Open3D (or --screenshot headless)")
    p.add_argument("cloud", help="any format data_tools reads, e.g. RUN_DIR/predictions/target_test_0000.ply")
    p.add_argument("--color", default="label", choices=["label", "pred", "error", "rgb"])
    p.add_argument("--truth", default=None, help="ground truth for --color error (default: STEM_labels.npy beside it)")
    p.add_argument("--screenshot", default=None, help="write this PNG headless instead of opening a window")
    p.add_argument("--view", default="iso", choices=["iso", "top", "front"])
    p.add_argument("--point-size", type=float, default=2.0)
    p.set_defaults(fn=cmd_view)

    # `da reproduce TABLE --runs R data.path=P`: key=value items after options are overrides too
    args, extra = parser.parse_known_args(argv)
    if extra and (args.command != "reproduce" or any("=" not in e or e.startswith("-") for e in extra)):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    from da.config import ConfigError
    from da.interrupt import TrainingInterrupted
    from da.train import NonFiniteLossError
    from data_tools.splits import DatasetFileError

    try:
        return args.fn(args)
    except TrainingInterrupted as exc:  # a checkpoint was written: the same command resumes
        print(f"stopped: {exc}", file=sys.stderr)
        return 128 + exc.signum
    except NonFiniteLossError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except (ConfigError, DatasetFileError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
