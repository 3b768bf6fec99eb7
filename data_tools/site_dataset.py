"""A 3D training set from a user's own files: `python -m data_tools site3d`.

    source       IFC models (sampled into labeled clouds, as `data_tools ifc`) and/or labeled
                 clouds (a `label` property: 0 background, 1 main, 2 tie, 255 ignore), in
                 metres, Z up - what a BIM export gives; files or folders
    target       unlabeled site clouds in any format `data_tools.io` reads, any unit and
                 orientation: each is scaled (--scale / --units), levelled
                 (`data_tools.levelling`: --up auto | axis | X,Y,Z, or --transform FILE) -
                 the same preparation `da predict` gives a cloud - and written as it is
                 then, without any label it may carry
    target_test  optional labeled site clouds for a test split, prepared the same way;
                 without them the dataset has no target_test and training reports source
                 metrics only

The folder written is what `data.name=rebar3d data.path=OUT` reads: source_train/,
source_val/ (a seeded share of the source files held out for model selection),
target_train/, target_test/ (clouds + scene_XXXX_labels.npy), manifest.json and
preparation.json, which records for every input file what was done to it (scale,
levelling transform and report, warnings). The folder is written atomically.

Units are checked, not assumed: a cloud whose extent is no rebar scene's in metres (over
300 or under 0.3 after scaling) is refused with the likely unit named.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from data_tools.atomic import atomic_folder
from data_tools.io import SUFFIXES, DatasetFileError, PointCloud, read_cloud, write_cloud
from data_tools.levelling import level
from data_tools.prepare import scale_cloud

UNITS = {"m": 1.0, "cm": 0.01, "mm": 0.001, "in": 0.0254, "ft": 0.3048}
MODEL_SUFFIXES = {".ifc"}
MAX_EXTENT_M, MIN_EXTENT_M = 300.0, 0.3  # a site cloud, a single bar


def add_site_arguments(p: argparse.ArgumentParser) -> None:
    """Units and levelling of a user's site clouds (shared with `da predict`)."""
    p.add_argument("--scale", type=float, default=None, help="multiply coordinates by S to get metres")
    p.add_argument("--units", choices=sorted(UNITS), default=None, help="the clouds' unit (instead of --scale)")
    p.add_argument("--up", default="auto",
                   help="auto (the plane that carries the scene is the ground), an axis of the cloud "
                        "(x, y, z, -x, ...) or a vector X,Y,Z pointing up in the cloud's frame")
    p.add_argument("--transform", type=Path, default=None,
                   help="a 4x4 rigid transform (text, 4 rows) to Z-up metres, ground at z = 0; "
                        "replaces --up")


def scale_of(args: argparse.Namespace) -> float | None:
    """--scale S or --units U (not both) -> the factor to metres, None = already metres."""
    if args.scale is not None and args.units:
        raise ValueError("give --scale or --units, not both")
    if args.units:
        return UNITS[args.units]
    return args.scale


def expand(paths: list[str | Path], suffixes: set[str], what: str) -> list[Path]:
    """Files, and the files of folders (sorted), with a suffix we read."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.suffix.lower() in suffixes and not f.name.startswith("."))
            if not found:
                raise DatasetFileError(f"{p}: no {what} file ({', '.join(sorted(suffixes))}) in the folder")
            out += found
        elif p.is_file():
            if p.suffix.lower() not in suffixes:
                raise DatasetFileError(f"{p}: not a {what} file ({', '.join(sorted(suffixes))})")
            out.append(p)
        else:
            raise DatasetFileError(f"{p}: no such file or folder")
    return out


def unit_problem(xyz: np.ndarray) -> str | None:
    """None when the cloud's extent fits a rebar scene in metres, else what it looks like."""
    lo, hi = np.percentile(xyz, [1, 99], axis=0)
    extent = float(np.linalg.norm(hi - lo))
    if extent > MAX_EXTENT_M:
        guess = "millimetres (--units mm)" if extent < 3e5 else "a georeferenced frame far from the origin"
        return f"spans {extent:,.0f} units, no rebar scene in metres does: {guess}?"
    if extent < MIN_EXTENT_M:
        return f"spans {extent:.3g} units, too small for a rebar scene in metres: kilometres, or a wrong --scale?"
    return None


def source_cloud(path: Path, density: float, seed: int) -> tuple[PointCloud, dict]:
    """A labeled source cloud from an IFC model or a labeled cloud file, and its record."""
    if path.suffix.lower() in MODEL_SUFFIXES:
        from data_tools.rebar.ifc import ifc_scene_to_mesh, read_ifc
        from data_tools.rebar.sampling import sample_surface

        scene = read_ifc(path)
        cloud = sample_surface(ifc_scene_to_mesh(scene), density, np.random.default_rng(seed))
        record = {"input": str(path), "kind": "ifc", "density": density, "seed": seed}
    else:
        cloud = read_cloud(path)
        if cloud.labels is None:
            raise DatasetFileError(f"{path}: a source cloud needs a 'label' property (0 background, 1 main "
                                   "rebar, 2 tie, 255 ignore); unlabeled clouds go to --target")
        record = {"input": str(path), "kind": "labeled cloud"}
    _check_labels(path, cloud.labels)
    problem = unit_problem(cloud.xyz)
    if problem:
        raise DatasetFileError(f"{path}: {problem} Source clouds must be in metres, Z up (IFC models are "
                               "converted from their own units)")
    record["points"] = len(cloud)
    record["label_counts"] = np.bincount(np.clip(cloud.labels, 0, 3), minlength=4)[:3].tolist()
    return cloud, record


def _check_labels(path: Path, labels: np.ndarray) -> None:
    bad = ~np.isin(labels, (0, 1, 2, 255))
    if bad.any():
        raise DatasetFileError(f"{path}: label {int(labels[bad][0])} is not one of 0, 1, 2, 255")


def prepare_site_cloud(cloud: PointCloud, path: Path, scale: float | None, up: str,
                       transform: np.ndarray | None) -> tuple[PointCloud, dict]:
    """Scale, check the units, level: the preparation `da predict` gives a cloud too."""
    if scale is not None:
        cloud = scale_cloud(cloud, scale)
    problem = unit_problem(cloud.xyz)
    if problem:
        raise DatasetFileError(f"{path}: {problem} Pass --scale S or --units mm|cm|m|in|ft")
    levelled, rec = level(cloud, up, transform)
    return levelled, {"input": str(path), "points": len(cloud), "scale": scale, "levelling": rec.to_json(),
                      "report": rec.line(), "warnings": list(rec.warnings)}


def build_site_dataset(out: str | Path, source: list[str | Path], target: list[str | Path],
                       target_test: list[str | Path] = (), scale: float | None = None, up: str = "auto",
                       transform: np.ndarray | None = None, val_fraction: float = 0.2, seed: int = 0,
                       density: float = 20000.0, command: str = "",
                       say: Callable[[str], None] = print) -> Path:
    """Write the dataset folder (see the module docstring); returns its path."""
    sources = expand(source, set(SUFFIXES) | MODEL_SUFFIXES, "model or labeled cloud")
    targets = expand(target, set(SUFFIXES), "cloud")
    tests = expand(target_test, set(SUFFIXES), "cloud") if target_test else []
    if len(sources) < 2:
        raise DatasetFileError(f"{len(sources)} source file(s): at least 2 are needed, one is held out as "
                               "source_val (the labels model selection reads)")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    order = np.random.default_rng(seed).permutation(len(sources))
    n_val = min(len(sources) - 1, max(1, int(round(val_fraction * len(sources)))))
    split_of = {int(i): ("source_val" if k < n_val else "source_train") for k, i in enumerate(order)}
    manifest: dict = {"kind": "site3d", "command": command, "seed": seed, "val_fraction": val_fraction,
                      "splits": {"source_train": [], "source_val": [], "target_train": []}}
    records: dict[str, list] = {"source_train": [], "source_val": [], "target_train": [], "target_test": []}
    with atomic_folder(out) as tmp:
        for i, path in enumerate(sources):
            split = split_of[i]
            cloud, rec = source_cloud(path, density, seed + i)
            _write(tmp, split, manifest, records, cloud, rec)
            say(f"{split}: {path.name} -> {rec['points']:,} points, labels 0/1/2 {rec['label_counts']}")
        for split, paths in (("target_train", targets), ("target_test", tests)):
            for path in paths:
                cloud = read_cloud(path)
                if split == "target_test":
                    if cloud.labels is None:
                        raise DatasetFileError(f"{path}: a target_test cloud needs a 'label' property")
                    _check_labels(path, cloud.labels)
                    if not (cloud.labels != 255).any():
                        raise DatasetFileError(f"{path}: every label is 255 (ignore): nothing to test on")
                prepared, rec = prepare_site_cloud(cloud, path, scale, up, transform)
                labels = cloud.labels if split == "target_test" else None
                _write(tmp, split, manifest, records, PointCloud(prepared.xyz, prepared.rgb, labels=labels), rec)
                say(f"{split}: {path.name} -> {rec['points']:,} points; {rec['report']}")
                for w in rec["warnings"]:
                    say(f"  warning: {w}")
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
        (tmp / "preparation.json").write_text(json.dumps(records, indent=1) + "\n")
    sizes = ", ".join(f"{k} {len(v)}" for k, v in manifest["splits"].items())
    say(f"wrote {out} ({sizes}); what was done to each file: {Path(out) / 'preparation.json'}")
    return Path(out)


def _write(tmp: Path, split: str, manifest: dict, records: dict, cloud: PointCloud, record: dict) -> None:
    entries = manifest["splits"].setdefault(split, [])
    index = len(entries)
    name = f"scene_{index:04d}"
    entry = {"index": index, "file": f"{name}.ply", "input": record["input"]}
    if split == "target_test":  # labels beside the cloud: unlabeled means unlabeled
        np.save(_mkdir(tmp / split) / f"{name}_labels.npy", cloud.labels.astype(np.uint8))
        entry["labels_file"] = f"{name}_labels.npy"
        cloud = PointCloud(cloud.xyz, cloud.rgb)
    write_cloud(_mkdir(tmp / split) / f"{name}.ply", cloud)
    entries.append(entry)
    records[split].append({"file": f"{split}/{name}.ply", **record})


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


if __name__ == "__main__":  # pragma: no cover - the command line is data_tools.__main__
    sys.exit("use: python -m data_tools site3d --help")
