"""Rendered rebar image-classification tasks, written as ImageFolder directories.

Each image is one view of one parametric cage (`data_tools.rebar.cages`) rendered with the
raycasting renderer (`data_tools.render`) under a random light and viewpoint. Tasks:

- `element`: what the cage is - column / beam / wall / slab / footing (5 classes). The
  large SOURCE task a backbone is pretrained on.
- `spacing`: how far apart the bars of a wall or slab grid are - dense (<= 0.11 m),
  medium (0.11-0.17 m), wide (> 0.17 m) (3 classes). A SIMILAR target: the same kind of
  images, a new label set, as transfer learning means. Walls and slabs alternate cage by
  cage in every class (the element type gives the label away otherwise), and the views
  are CLOSE-UPS of the grid (1.1-1.3 m wide frames, facing a wall's broad side or looking
  down on a slab): in a whole-cage view at 64 px the bars are a fraction of a pixel apart
  and the classes cannot be told apart (measured: every strategy near chance).

Light: a random capture preset's appearance among `lights` (default noon, overcast,
morning) with a random solar hour +-1.5 h; viewpoint: a random azimuth, distance 1.6-2.6x
the cage's largest extent, elevation 15-55 degrees, focal length fitting the cage;
rendered at 2x and box-filtered (thin bars do not alias). `views` images per cage (one Embree scene per cage).
The 2D segmentation issue's target presets (evening, close_low, far_high) are not among
the default lights, and cage seeds come from `default_rng([seed, task id, split id, i])`,
so no cage is shared between splits or with other datasets built from other seeds.

Layout: <out>/{train,val,test}/<class>/<cage>_<view>.png and manifest.json.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from data_tools import render
from data_tools.atomic import atomic_folder
from data_tools.rebar.cages import make_scene
from data_tools.rebar.mesh import scene_to_mesh

TASKS = {
    "element": ("column", "beam", "wall", "slab", "footing"),
    "spacing": ("dense", "medium", "wide"),
}
SPLIT_IDS = {"train": 0, "val": 1, "test": 2}
# Per task, the version of how its images are drawn (see build_rendered_classes).
VERSIONS = {"element": 1, "spacing": 2}
CLOSEUP = {"spacing"}  # tasks whose views are close-ups of the grid
SUPERSAMPLE = 2  # rays per pixel side


def spacing_class(scene) -> str | None:
    p = scene.params
    s = p.get("s_vert", p.get("s_bottom"))
    if s is None:
        return None
    return "dense" if s <= 0.11 else "medium" if s <= 0.17 else "wide"


def draw_cage(task: str, label: str, rng: np.random.Generator, index: int = 0, max_tries: int = 200):
    """A cage of class `label` (rejection sampling for `spacing`; the `index`-th cage of a
    spacing class is a wall when even, a slab when odd)."""
    for _ in range(max_tries):
        seed = int(rng.integers(2**31))
        if task == "element":
            return make_scene(label, seed), seed
        scene = make_scene(("wall", "slab")[index % 2], seed)
        if spacing_class(scene) == label:
            return scene, seed
    raise RuntimeError(f"no {label} cage in {max_tries} draws")


def closeup_camera(lo: np.ndarray, hi: np.ndarray, size: int, rng: np.random.Generator) -> render.Camera:
    """A camera 1.3-2.0 m from the grid's centre framing 1.1-1.3 m of it: down onto a slab
    (its smallest extent is vertical), square onto a wall's broad side otherwise."""
    centre, dims = 0.5 * (lo + hi), hi - lo
    if dims[2] <= dims[:2].min():  # a slab: from above
        elevation, azimuth = rng.uniform(50, 75), rng.uniform(0, 360)
    else:  # a wall: facing its broad side (the normal is its thin horizontal axis), either side
        normal = 0.0 if dims[0] < dims[1] else 90.0
        elevation = rng.uniform(0, 20)
        azimuth = normal + 180.0 * rng.integers(2) + rng.uniform(-30, 30)
    el, az = np.radians(elevation), np.radians(azimuth)
    distance, frame = rng.uniform(1.3, 2.0), rng.uniform(1.1, 1.3)
    eye = centre + distance * np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
    look = centre + rng.normal(0, 0.1, 3)
    focal = size * distance / frame
    return render.Camera(size, size, focal, focal, (size - 1) / 2, (size - 1) / 2, render.look_at(eye, look))


def render_views(scene, size: int, views: int, lights: tuple[str, ...], rng: np.random.Generator,
                 texture_seed: int, closeup: bool = False) -> list[np.ndarray]:
    """`views` (size, size, 3) uint8 images of one cage (whole-cage views, or close-ups)."""
    mesh = render.extend_ground(scene_to_mesh(scene))
    cache = render.RaycastScene.from_mesh(mesh)
    lo, hi = (np.asarray(b, float) for b in scene.params["bounds"])
    extent = float(np.max(hi - lo))
    out = []
    for _ in range(views):
        preset = render.PRESETS[str(rng.choice(lights))]
        app = replace(preset.appearance, texture_seed=texture_seed,
                      hour=float(preset.appearance.hour + rng.uniform(-1.5, 1.5)))
        distance = extent * rng.uniform(1.6, 2.6)
        elevation = np.radians(rng.uniform(15, 55))  # slabs are seen from above, not edge-on
        height = 0.5 * (hi[2] - lo[2]) + distance * np.tan(elevation)
        big = size * SUPERSAMPLE  # rendered larger and box-filtered: thin bars do not alias
        focal = big * distance / (1.3 * extent)  # the cage fills most of the frame
        path = render.CameraPath(n_images=1, distance=distance, camera_height=height,
                                 focal_px=focal, image_size=(big, big))
        cam = closeup_camera(lo, hi, big, rng) if closeup else render.camera_path(path, lo, hi, rng)[0]
        img = render.render(mesh, cam, app, rng, scene_cache=cache).rgb
        img = img.reshape(size, SUPERSAMPLE, size, SUPERSAMPLE, 3).mean(axis=(1, 3))
        out.append((np.clip(img, 0, 1) * 255).round().astype(np.uint8))
    return out


def build_rendered_classes(out_dir: str | Path, task: str, per_class: dict[str, int], size: int = 64,
                           views: int = 4, seed: int = 0,
                           lights: Sequence[str] = ("noon", "overcast", "morning"),
                           progress: bool = True, version: int | None = None) -> Path:
    """Write the task's ImageFolder dataset; per_class: images per class for each split
    (e.g. {"train": 200, "val": 40, "test": 100}). Returns the folder. `version` (None = the
    current one) must be the task's VERSIONS entry: it goes into cached folders' names (da.data.images), so a
    change of how a task's images are drawn (spacing 2: close-ups, walls and slabs
    alternating) renders anew instead of reusing old images."""
    from PIL import Image

    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose from {', '.join(TASKS)}")
    version = VERSIONS[task] if version is None else version
    if version != VERSIONS[task]:
        raise ValueError(f"this code renders {task} version {VERSIONS[task]}, not {version}")
    unknown = [s for s in per_class if s not in SPLIT_IDS]
    if unknown or not per_class:
        raise ValueError(f"per_class keys must be among {list(SPLIT_IDS)}, got {list(per_class)}")
    unknown = [x for x in lights if x not in render.PRESETS]
    if unknown:
        raise ValueError(f"unknown light presets {unknown}; choose from {', '.join(render.PRESETS)}")
    lights = tuple(lights)
    if size < 16 or views < 1:
        raise ValueError("need size >= 16 and views >= 1")
    t0 = time.perf_counter()
    task_id = list(TASKS).index(task)
    jobs = [(split, k, label) for split in per_class for k, label in enumerate(TASKS[task])]
    with atomic_folder(out_dir) as tmp:
        counts = {}
        bar = tqdm(total=sum(per_class[s] for s, _, _ in jobs), desc=f"render {task}", unit="img",
                   disable=not progress)
        for split, k, label in jobs:
            folder = tmp / split / label
            folder.mkdir(parents=True)
            rng = np.random.default_rng([seed, task_id, SPLIT_IDS[split], k])
            n, cage = 0, 0
            while n < per_class[split]:
                scene, cage_seed = draw_cage(task, label, rng, cage)
                for v, img in enumerate(render_views(scene, size, min(views, per_class[split] - n),
                                                     lights, rng, cage_seed, closeup=task in CLOSEUP)):
                    Image.fromarray(img).save(folder / f"{cage:05d}_{v}.png")
                    n += 1
                    bar.update(1)
                cage += 1
            counts.setdefault(split, {})[label] = {"images": n, "cages": cage}
        bar.close()
        (tmp / "manifest.json").write_text(json.dumps({
            "task": task, "classes": list(TASKS[task]), "size": size, "views": views, "seed": seed,
            "lights": list(lights), "version": version, "closeup": task in CLOSEUP, "counts": counts,
            "seconds": round(time.perf_counter() - t0, 1)},
            indent=1))
    return Path(out_dir)
