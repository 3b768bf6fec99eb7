"""Does `--up auto` level the project's clouds? Every scene of a rebar3d dataset folder,
turned by a random rotation and moved by a random offset, levelled again.

"Levelled" means up within 3 degrees and the ground within 2 cm of z = 0 (the generator's
ground; a footing's is its blinding). The rule was developed on source_train and
target_train scenes; target_test is the check.

    python experiments/levelling_check.py DATASET_FOLDER --splits target_test \
        --out experiments/results/rebar3d/levelling_target_test.md
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from da.provenance import git_state, machine_summary  # noqa: E402
from data_tools.io import PointCloud, read_cloud  # noqa: E402
from data_tools.levelling import level  # noqa: E402
from data_tools.prepare import gravity_align, transform_cloud  # noqa: E402
from data_tools.rebar.cages import make_scene  # noqa: E402
from data_tools.splits import read_manifest  # noqa: E402

MAX_ANGLE_DEG = 3.0
MAX_GROUND_M = 0.02


def random_pose(rng: np.random.Generator) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3] = Rotation.random(random_state=rng.integers(1 << 31)).as_matrix()
    m[:3, 3] = rng.uniform(-50, 50, 3)
    return m


def errors(transform: np.ndarray, pose: np.ndarray, centre: np.ndarray) -> tuple[float, float]:
    """Angle of the levelled up to +Z (degrees) and height of the true ground point."""
    total = transform @ pose  # generator frame -> levelled frame
    up = total[:3, :3] @ np.array([0.0, 0.0, 1.0])
    return float(np.degrees(np.arccos(np.clip(up[2], -1.0, 1.0)))), float((total @ centre)[2])


def levelled(angle: float, ground: float) -> bool:
    return angle <= MAX_ANGLE_DEG and abs(ground) <= MAX_GROUND_M


def check_scene(cloud: PointCloud, rng: np.random.Generator, ground_z: float = 0.0) -> dict:
    """One random pose: the rule of data_tools.levelling, and beside it the earlier rule (the
    largest plane is the ground, data_tools.prepare.gravity_align) on the same pose."""
    pose = random_pose(rng)
    moved = transform_cloud(PointCloud(cloud.xyz), pose)
    _, rec = level(moved, "auto")
    centre = np.array([*np.median(cloud.xyz[:, :2], axis=0), ground_z, 1.0])  # the true ground under the scene
    angle, ground = errors(rec.transform, pose, centre)
    largest = levelled(*errors(gravity_align(moved)[1], pose, centre))
    return {"angle": angle, "ground": ground, "ok": levelled(angle, ground), "ok_largest": largest,
            "share": rec.plane_share, "support": rec.support, "warnings": len(rec.warnings)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--splits", nargs="+", default=["target_test"])
    parser.add_argument("--poses", type=int, default=2, help="random poses per scene")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    manifest = read_manifest(args.folder)
    rng = np.random.default_rng(args.seed)
    rows, t0 = [], time.time()
    for split in args.splits:
        for entry in manifest["splits"][split]:
            cloud = read_cloud(args.folder / split / entry["file"])
            element = entry.get("element", "")
            ground_z = 0.0  # a footing's ground is its blinding (the scene's lowest bound)
            if element == "footing" and "scene_seed" in entry:
                ground_z = make_scene(element, int(entry["scene_seed"])).params["bounds"][0][2]
            for _ in range(args.poses):
                r = check_scene(cloud, rng, ground_z)
                rows.append({"split": split, "scene": entry["file"], "element": entry.get("element", ""), **r})
                print(f"{split}/{entry['file']} {entry.get('element', '')}: {r['angle']:.2f} deg, ground "
                      f"{100 * r['ground']:+.1f} cm {'ok' if r['ok'] else 'FAILED'}", flush=True)
    elements = sorted({r["element"] for r in rows})
    git = git_state()
    lines = [f"# Levelling check: `--up auto` on randomly posed clouds ({', '.join(args.splits)})", "",
             f"Command: `python {' '.join(sys.argv)}`  ",
             f"Dataset: `{args.folder}`; {args.poses} random poses per scene (uniform rotation, offset "
             f"+-50 m), seed {args.seed}; commit {git['commit'][:12]}{' (dirty)' if git['dirty'] else ''}; "
             f"machine: {machine_summary()}; {time.time() - t0:.0f} s.  ",
             f"Levelled = up within {MAX_ANGLE_DEG:g} deg and the ground within {100 * MAX_GROUND_M:g} cm.", "",
             "| element | clouds | levelled | levelled by the largest plane (earlier rule) | median angle (deg) | max angle (deg) | median abs ground (cm) | max abs ground (cm) |",
             "|---|---|---|---|---|---|---|---|"]
    for el in [*elements, "all"]:
        sel = [r for r in rows if el == "all" or r["element"] == el]
        a = np.array([r["angle"] for r in sel])
        g = 100 * np.abs([r["ground"] for r in sel])
        lines.append(f"| {el or '-'} | {len(sel)} | {sum(r['ok'] for r in sel)} | {sum(r['ok_largest'] for r in sel)} | "
                     f"{np.median(a):.2f} | {a.max():.2f} | "
                     f"{np.median(g):.1f} | {g.max():.1f} |")
    failed = [r for r in rows if not r["ok"]]
    good = [r for r in rows if r["ok"]]
    lines += ["", f"A levelling warning was printed for {sum(r['warnings'] > 0 for r in failed)} of the "
                  f"{len(failed)} clouds not levelled and for {sum(r['warnings'] > 0 for r in good)} of the "
                  f"{len(good)} levelled."]
    if failed:
        lines += ["", "Not levelled:", ""]
        lines += [f"- {r['split']}/{r['scene']} ({r['element']}): {r['angle']:.1f} deg, ground {100 * r['ground']:+.1f} cm"
                  for r in failed]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
