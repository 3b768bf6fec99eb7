"""2D rebar image segmentation data: rendered photos of parametric cages with exact masks.

Every image is one raycast render (`data_tools.render`) of one parametric cage
(`data_tools.rebar.cages`); the renderer's per-pixel labels ARE the mask (0 background -
formwork, ground, sky -, 1 main rebar, 2 tie), so masks agree with the geometry exactly.

A domain is three factors, written ASSEMBLY/TIME/POSITION (e.g. `slab+wall/noon/close`):

- assembly: which cages - `slab` (slab grids), `wall`, `column` (square and circular column
  cages), `beam` (beam cages); several joined by `+`;
- collection time (`TIMES`): sun hour, sun colour and strength, overcast vs direct light,
  exposure, wet vs dry steel;
- shooting position (`POSITIONS`): distance, elevation, azimuth relative to the element's
  broad side, and field of view (focal length).

Sensor noise, blur and JPEG compression vary per image with the same distribution in every
domain. Resolution: a 10 mm tie 1.5 m away is under a pixel wide at 128 px, so images are
rendered at >= 512 px (bars >= 3 px wide at the `close` position); training takes crops.

Layout (`build_rebar2d`):

    <out>/source_train/images/*.png + masks/*.png     labeled source
    <out>/source_val/images + masks                   labeled source, other cages
    <out>/target_train/images                         target, NO masks
    <out>/oracle_labels/target_train/*.png            its masks, for the train-on-target row only
    <out>/target_test/images + masks                  target, reported
    <out>/manifest.json

Cages come from `default_rng([seed, split id, i])`: no cage is shared between splits.
"""

from __future__ import annotations

import io
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from data_tools import render
from data_tools.atomic import atomic_folder
from data_tools.rebar.cages import make_scene
from data_tools.rebar.mesh import scene_to_mesh

CLASSES = ("background", "main", "tie")
VERSION = 1
SPLITS = {"source_train": 0, "source_val": 1, "target_train": 2, "target_test": 3}
ASSEMBLIES = {"slab": ("slab",), "wall": ("wall",), "column": ("column", "circular_column"), "beam": ("beam",)}


@dataclass(frozen=True)
class TimeSetting:
    """When the photo is taken: light and surface state."""

    hour: float = 12.5
    hour_jitter: float = 1.0
    sun_intensity: float = 1.0
    sun_color: tuple[float, float, float] = (1.0, 0.97, 0.90)
    ambient_intensity: float = 0.35
    sky_zenith: tuple[float, float, float] = (0.35, 0.55, 0.85)
    sky_horizon: tuple[float, float, float] = (0.75, 0.82, 0.90)
    specular: float = 0.25
    exposure: tuple[float, float] = (0.9, 1.1)
    wet: float = 0.0


TIMES = {
    "noon": TimeSetting(),
    "morning": TimeSetting(hour=8.5, sun_color=(1.0, 0.88, 0.75)),
    "overcast": TimeSetting(sun_intensity=0.12, ambient_intensity=0.85, sky_zenith=(0.62, 0.64, 0.68),
                            sky_horizon=(0.80, 0.81, 0.83), specular=0.05),
    # after rain, low warm sun: dark glossy steel, long shadows, under-exposed
    "evening_wet": TimeSetting(hour=17.6, hour_jitter=0.4, sun_intensity=1.1, sun_color=(1.0, 0.72, 0.45),
                               ambient_intensity=0.25, sky_zenith=(0.30, 0.40, 0.65),
                               sky_horizon=(0.95, 0.70, 0.50), exposure=(0.7, 0.9), wet=1.0),
}


@dataclass(frozen=True)
class Position:
    """Where the camera is, relative to a random point of the cage it looks at."""

    distance: tuple[float, float] = (1.3, 2.2)  # metres
    elevation: tuple[float, float] = (5.0, 30.0)  # degrees; slabs are seen 30 degrees higher
    azimuth: tuple[float, float] = (-35.0, 35.0)  # degrees off the broad side's normal
    fov: tuple[float, float] = (50.0, 65.0)  # horizontal field of view, degrees


POSITIONS = {
    "close": Position(),
    "far_high": Position(distance=(3.0, 4.5), elevation=(35.0, 55.0), azimuth=(-70.0, 70.0), fov=(30.0, 42.0)),
    "oblique": Position(distance=(1.5, 2.5), elevation=(10.0, 35.0), azimuth=(45.0, 80.0), fov=(45.0, 60.0)),
}


@dataclass(frozen=True)
class Domain:
    assembly: tuple[str, ...]
    time: str
    position: str

    @property
    def name(self) -> str:
        return f"{'+'.join(self.assembly)}/{self.time}/{self.position}"


def parse_domain(text: str) -> Domain:
    """`ASSEMBLY[+ASSEMBLY]/TIME/POSITION` -> Domain, with a clear error for unknown parts."""
    parts = text.split("/")
    if len(parts) != 3:
        raise ValueError(f"domain {text!r}: expected ASSEMBLY/TIME/POSITION, e.g. slab+wall/noon/close")
    assembly = tuple(a for a in parts[0].split("+") if a)
    bad = [a for a in assembly if a not in ASSEMBLIES]
    if not assembly or bad:
        raise ValueError(f"domain {text!r}: unknown assembly {bad or parts[0]!r}; choose from {', '.join(ASSEMBLIES)}")
    if parts[1] not in TIMES:
        raise ValueError(f"domain {text!r}: unknown time {parts[1]!r}; choose from {', '.join(TIMES)}")
    if parts[2] not in POSITIONS:
        raise ValueError(f"domain {text!r}: unknown position {parts[2]!r}; choose from {', '.join(POSITIONS)}")
    return Domain(assembly, parts[1], parts[2])


@dataclass(frozen=True)
class Sensor:
    """Per-image camera degradations, the same distribution in every domain."""

    noise_std: tuple[float, float] = (0.005, 0.02)
    blur_sigma: tuple[float, float] = (0.0, 0.8)  # pixels (Gaussian)
    jpeg_quality: tuple[int, int] = (70, 95)


def appearance_for(t: TimeSetting, rng: np.random.Generator, texture_seed: int) -> render.Appearance:
    return render.Appearance(
        hour=float(t.hour + rng.uniform(-t.hour_jitter, t.hour_jitter)), sun_intensity=t.sun_intensity,
        sun_color=t.sun_color, ambient_intensity=t.ambient_intensity, sky_zenith=t.sky_zenith,
        sky_horizon=t.sky_horizon, specular=t.specular, exposure=float(rng.uniform(*t.exposure)), wet=t.wet,
        texture_seed=texture_seed, site_rotation_deg=float(rng.uniform(0, 360)), noise_std=0.0)


def camera_for(p: Position, lo: np.ndarray, hi: np.ndarray, size: tuple[int, int],
               rng: np.random.Generator) -> render.Camera:
    """Look at a random point of the cage's box (its inner 60%) from `p`'s ranges."""
    dims = hi - lo
    look = lo + dims * rng.uniform(0.2, 0.8, 3)
    slab = dims[2] <= dims[:2].min()
    normal = 0.0 if dims[0] < dims[1] else 90.0  # the broad side faces along the thin axis
    azimuth = normal + 180.0 * rng.integers(2) + rng.uniform(*p.azimuth)
    elevation = min(rng.uniform(*p.elevation) + (30.0 if slab else 0.0), 85.0)
    el, az = np.radians(elevation), np.radians(azimuth)
    distance = rng.uniform(*p.distance)
    eye = look + distance * np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
    eye[2] = max(eye[2], lo[2] + 0.3)  # a person's camera stays above the ground
    w, h = size
    focal = (w / 2) / np.tan(np.radians(rng.uniform(*p.fov)) / 2)
    return render.Camera(w, h, focal, focal, (w - 1) / 2, (h - 1) / 2, render.look_at(eye, look))


def degrade(rgb: np.ndarray, s: Sensor, rng: np.random.Generator) -> np.ndarray:
    """float (H, W, 3) in [0, 1] -> uint8 after sensor noise, Gaussian blur and JPEG."""
    from PIL import Image, ImageFilter

    img = rgb + rng.uniform(*s.noise_std) * rng.standard_normal(rgb.shape).astype(np.float32)
    pil = Image.fromarray((np.clip(img, 0, 1) * 255).round().astype(np.uint8))
    sigma = rng.uniform(*s.blur_sigma)
    if sigma > 0.05:
        pil = pil.filter(ImageFilter.GaussianBlur(sigma))
    buf = io.BytesIO()
    pil.save(buf, format="JPEG", quality=int(rng.integers(s.jpeg_quality[0], s.jpeg_quality[1] + 1)))
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def render_sample(domain: Domain, rng: np.random.Generator, size: tuple[int, int], views: int,
                  sensor: Sensor = Sensor()) -> list[tuple[np.ndarray, np.ndarray, dict]]:
    """`views` (image uint8 (H, W, 3), mask uint8 (H, W), info) of one random cage of `domain`."""
    element = str(rng.choice([e for a in domain.assembly for e in ASSEMBLIES[a]]))
    cage_seed = int(rng.integers(2**31))
    scene = make_scene(element, cage_seed)
    mesh = render.extend_ground(scene_to_mesh(scene))
    cache = render.RaycastScene.from_mesh(mesh)
    lo, hi = (np.asarray(b, float) for b in scene.params["bounds"])
    out = []
    for _ in range(views):
        app = appearance_for(TIMES[domain.time], rng, cage_seed)
        cam = camera_for(POSITIONS[domain.position], lo, hi, size, rng)
        r = render.render(mesh, cam, app, rng, scene_cache=cache)
        mask = np.where(r.label == render.NO_LABEL, 0, r.label).astype(np.uint8)  # sky is background
        info = {"element": element, "cage_seed": cage_seed, "hour": round(app.hour, 2),
                "focal_px": round(cam.fx, 1)}
        out.append((degrade(r.rgb, sensor, rng), mask, info))
    return out


def build_rebar2d(out_dir: str | Path, source: str, target: str, images: dict[str, int] | None = None,
                  size: tuple[int, int] = (512, 512), views: int = 2, seed: int = 0,
                  progress: bool = True) -> Path:
    """Write a split 2D dataset (layout in the module docstring); images: per split."""
    from PIL import Image

    images = images or {"source_train": 60, "source_val": 16, "target_train": 60, "target_test": 20}
    unknown = sorted(set(images) - set(SPLITS))
    if unknown or not images:
        raise ValueError(f"images: splits must be among {list(SPLITS)}, got {list(images)}")
    if min(size) < 64 or views < 1:
        raise ValueError("need image sides >= 64 px and views >= 1")
    domains = {"source": parse_domain(source), "target": parse_domain(target)}
    t0 = time.perf_counter()
    with atomic_folder(out_dir) as tmp:
        bar = tqdm(total=sum(images.values()), desc="render rebar2d", unit="img", disable=not progress)
        counts: dict[str, dict] = {}
        for split, n in images.items():
            domain = domains[split.split("_")[0]]
            (tmp / split / "images").mkdir(parents=True)
            masks = tmp / ("oracle_labels/target_train" if split == "target_train" else f"{split}/masks")
            masks.mkdir(parents=True, exist_ok=True)
            rng = np.random.default_rng([seed, SPLITS[split]])
            i, pixels, records = 0, np.zeros(len(CLASSES), np.int64), []
            while i < n:
                for img, mask, info in render_sample(domain, rng, size, min(views, n - i)):
                    name = f"{i:05d}.png"
                    Image.fromarray(img).save(tmp / split / "images" / name)
                    Image.fromarray(mask).save(masks / name)
                    pixels += np.bincount(mask.ravel(), minlength=len(CLASSES))[:len(CLASSES)]
                    records.append({"file": name, **info})
                    i += 1
                    bar.update(1)
            counts[split] = {"images": n, "pixels_per_class": pixels.tolist(), "images_info": records}
        bar.close()
        (tmp / "manifest.json").write_text(json.dumps({
            "version": VERSION, "classes": list(CLASSES), "size": list(size), "views": views, "seed": seed,
            "source": {"name": domains["source"].name, **describe(domains["source"])},
            "target": {"name": domains["target"].name, **describe(domains["target"])},
            "splits": counts, "seconds": round(time.perf_counter() - t0, 1)}, indent=1))
    return Path(out_dir)


def describe(domain: Domain) -> dict:
    return {"assembly": list(domain.assembly), "time": asdict(TIMES[domain.time]),
            "position": asdict(POSITIONS[domain.position])}


# The four shifts of the 2D experiment, each from the same source domain.
SOURCE = "slab+wall/noon/close"
SHIFTS = {
    "assembly": (SOURCE, "column+beam/noon/close"),
    "time": (SOURCE, "slab+wall/evening_wet/close"),
    "position": (SOURCE, "slab+wall/noon/far_high"),
    "all": (SOURCE, "column+beam/evening_wet/far_high"),
}

