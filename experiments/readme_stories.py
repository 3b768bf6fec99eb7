"""Run the README's "Your own data" commands as written, on tiny files made here.

Every command line of the section's code blocks runs in a scratch folder that holds the
files the commands name (models/*.ifc in millimetres, scans/level3.ply turned, moved and
in millimetres, my_labeled/ as COCO with RLE, my_site/, photos/<class>/), with the
repository's experiments/ beside them. Only what makes a run short is added: a few
training steps and small blocks / images on `da train`, and `--profile quick` on
`da reproduce` (one seed, a few steps). A command that exits non-zero fails the script.

    python experiments/readme_stories.py          # .ci/run runs it after make test
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

FAST = {  # per config file named in a `da train` command: what keeps it to seconds
    "rebar3d.yaml": ["data.num_points=256", "data.voxel=0.02", "data.shape_radii=[0.04]", "train.steps=4",
                     "train.batch_size=2", "train.eval_every=4", "train.checkpoint_every=4",
                     "train.embedding_samples=8", "algorithm.domain_rows=64", "train.progress_bar=false"],
    "seg_files.yaml": ["data.size=[64,64]", "data.crop=32", "algorithm.domain_rows=64", "train.steps=3",
                       "train.batch_size=2", "train.eval_every=3", "train.checkpoint_every=3",
                       "train.progress_bar=false"],
    "transfer_own.yaml": ["train.steps=4", "train.eval_every=2", "train.checkpoint_every=4", "train.batch_size=8",
                          "train.progress_bar=false"],
}


def story_commands(readme: Path) -> list[str]:
    """Command lines of the code blocks between '## Your own data' and the next '## '."""
    text = readme.read_text()
    section = text.split("## Your own data", 1)[1].split("\n## ", 1)[0]
    lines: list[str] = []
    for block in re.findall(r"```\n(.*?)```", section, re.S):
        joined = block.replace("\\\n", " ")
        for line in joined.splitlines():
            line = line.split("  #", 1)[0].strip()
            if line.startswith(("da ", "python ")):
                lines.append(line)
    return lines


def make_files(root: Path) -> None:
    from PIL import Image
    from scipy.spatial.transform import Rotation

    from data_tools.io import PointCloud, write_cloud
    from data_tools.prepare import transform_cloud
    from data_tools.rebar.cages import make_scene
    from data_tools.rebar.ifc import write_ifc
    from data_tools.rebar.mesh import scene_to_mesh
    from data_tools.rebar.sampling import sample_surface

    for seed in (3, 4):  # 3D: two IFC models in millimetres, one site cloud
        write_ifc(make_scene("column", seed), root / "models" / f"column_{seed}.ifc", length_unit="mm",
                  include_context=True)
    cloud = sample_surface(scene_to_mesh(make_scene("column", 5)), 1500.0, np.random.default_rng(5))
    pose = np.eye(4)
    pose[:3, :3] = Rotation.random(random_state=7).as_matrix()
    pose[:3, 3] = [12.0, -4.0, 30.0]
    moved = transform_cloud(PointCloud(cloud.xyz.astype(np.float64), cloud.rgb), pose)
    write_cloud(root / "scans" / "level3.ply", PointCloud(moved.xyz * 1000.0, moved.rgb))

    rng = np.random.default_rng(0)  # 2D: COCO with RLE (a ring: a mask with a hole)
    mask = np.zeros((48, 48), np.uint8)
    mask[8:40, 8:40] = 1
    mask[16:32, 16:32] = 0
    flat = mask.T.ravel()
    runs = np.diff(np.r_[0, np.flatnonzero(np.diff(flat)) + 1, len(flat)]).tolist()
    for split in ("train", "val", "test"):
        d = root / "my_labeled" / split / "images"
        d.mkdir(parents=True)
        images, anns = [], []
        for i in range(2):
            img = rng.integers(60, 120, (48, 48, 3))
            img[mask == 1] = [200, 40, 40]
            Image.fromarray(img.astype(np.uint8)).save(d / f"{i}.jpg")
            images.append({"id": i, "file_name": f"{i}.jpg", "width": 48, "height": 48})
            anns.append({"id": i, "image_id": i, "category_id": 1, "iscrowd": 1,
                         "segmentation": {"size": [48, 48], "counts": runs}})
        (d.parent / "annotations.json").write_text(json.dumps({
            "images": images, "annotations": anns,
            "categories": [{"id": 1, "name": "rebar"}, {"id": 2, "name": "tie_wire"}]}))
    (root / "my_site" / "train" / "images").mkdir(parents=True)
    for i in range(2):
        img = (rng.integers(60, 120, (48, 48, 3)) * 0.6).astype(np.uint8)
        Image.fromarray(img).save(root / "my_site" / "train" / "images" / f"{i}.jpg")

    for k in range(2):  # transfer: one folder per class
        d = root / "photos" / f"class_{k}"
        d.mkdir(parents=True)
        for i in range(10):
            img = rng.integers(0, 60, (40, 40, 3)) + (120 if k else 0)
            Image.fromarray(img.astype(np.uint8)).save(d / f"{i}.jpg")


def runnable(line: str) -> list[str]:
    """The README line as argv, with the short-run additions."""
    argv = shlex.split(line)
    if argv[0] == "da":
        argv = [sys.executable, "-m", "da", *argv[1:]]
    elif argv[0] == "python":
        argv = [sys.executable, *argv[1:]]
    if len(argv) > 3 and argv[3] == "train":
        for name, extra in FAST.items():
            if any(a.endswith(name) for a in argv):
                argv += extra
    if len(argv) > 3 and argv[3] == "reproduce":
        argv += ["--profile", "quick"]
    return argv


def main() -> int:
    commands = story_commands(REPO / "README.md")
    if not commands:
        print("no commands found in the README's 'Your own data' section")
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "experiments").symlink_to(REPO / "experiments")
        make_files(root)
        env = {**os.environ, "PYTHONPATH": str(REPO), "QT_QPA_PLATFORM": "offscreen"}
        for line in commands:
            argv = runnable(line)
            start = time.perf_counter()
            done = subprocess.run(argv, cwd=root, env=env, capture_output=True, text=True)
            print(f"{'ok ' if done.returncode == 0 else 'FAILED'} {time.perf_counter() - start:5.1f} s  {line}",
                  flush=True)
            if done.returncode != 0:
                print(done.stdout[-3000:], done.stderr[-3000:], sep="\n")
                return 1
    print(f"all {len(commands)} README story commands ran")
    return 0


if __name__ == "__main__":
    sys.exit(main())
