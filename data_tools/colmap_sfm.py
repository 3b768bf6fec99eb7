"""Structure from motion by COLMAP: camera intrinsics and poses from the photos alone.

COLMAP is the SfM program photogrammetry users run. Debian's package (``apt-get install
colmap``, 3.8) is built without CUDA: feature extraction, matching and the incremental
mapper run on the CPU, its dense stereo does not - the dense step is ours
(``data_tools.pair_rectification``). We drive the command line (no Python bindings in
Debian), headless (``QT_QPA_PLATFORM=offscreen``, ``use_gpu 0``):

1. ``feature_extractor``: SIFT, ONE shared camera for all photos (one phone, one zoom),
   its focal length and radial distortion unknown (``SIMPLE_RADIAL``);
2. ``matches_importer``: a pair list from the walking order (``match_pairs``): each photo
   with its next `overlap` photos round the loop, wrapping round so the loop closes, and
   across loops with the photos at the same place in the other loop. COLMAP's
   ``sequential_matcher`` does not wrap, and its loop detection needs a vocabulary tree
   file we cannot download;
3. ``mapper``: incremental SfM; the largest model is kept;
4. ``model_converter`` to the text format, read by ``read_text_model``.

No pose from the renderer reaches COLMAP. Where fewer than ``min_registered_share`` of
the photos register, matching is repeated with each of ``retry_overlaps`` (more pairs)
and the mapper rerun; what registers in the end is reported, never hidden.

Conventions: COLMAP poses are ``cam_from_world`` (quaternion w, x, y, z and translation),
cameras x right, y down, z forward as OpenCV's - but COLMAP puts the CENTRE of the
top-left pixel at (0.5, 0.5) where ``data_tools.render`` puts it at (0, 0): principal
points are shifted by -0.5 on the way in (``intrinsics``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from data_tools.render import Camera

__all__ = ["INSTALL_HINT", "ColmapCamera", "ColmapError", "ColmapImage", "ColmapNotFound",
           "ColmapPoint", "ColmapSettings", "SfmRun", "TextModel", "colmap_executable",
           "intrinsics", "match_pairs", "pinhole_cameras", "read_text_model", "run_colmap_sfm"]

INSTALL_HINT = "install it with `apt-get install colmap` (Debian/Ubuntu package colmap; .ci/system-deps.sh does)"


class ColmapError(RuntimeError):
    """COLMAP failed, or its output could not be read."""


class ColmapNotFound(ColmapError):
    """No ``colmap`` program on PATH."""


def colmap_executable() -> str:
    """Path of the ``colmap`` program; ColmapNotFound naming the package where there is none."""
    path = shutil.which("colmap")
    if path is None:
        raise ColmapNotFound(f"the sfm mode needs COLMAP, and no `colmap` program is on PATH: {INSTALL_HINT}")
    return path

# ---------------------------------------------------------------------------- text model


@dataclass
class ColmapCamera:
    camera_id: int
    model: str  # SIMPLE_PINHOLE, PINHOLE, SIMPLE_RADIAL, RADIAL, OPENCV
    width: int
    height: int
    params: np.ndarray  # COLMAP's order for `model` (f, cx, cy, k for SIMPLE_RADIAL)


@dataclass
class ColmapImage:
    image_id: int
    qvec: np.ndarray  # (4,) w, x, y, z of cam_from_world
    tvec: np.ndarray  # (3,) cam_from_world translation
    camera_id: int
    name: str
    xys: np.ndarray  # (N, 2) keypoints, COLMAP pixel convention
    point3d_ids: np.ndarray  # (N,) int64, -1 where the keypoint triangulated nothing

    def cam_from_world(self) -> np.ndarray:
        w, x, y, z = self.qvec / np.linalg.norm(self.qvec)
        m = np.eye(4)
        m[:3, :3] = [[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]]
        m[:3, 3] = self.tvec
        return m

    def world_from_camera(self) -> np.ndarray:
        m = self.cam_from_world()
        out = np.eye(4)
        out[:3, :3] = m[:3, :3].T
        out[:3, 3] = -m[:3, :3].T @ m[:3, 3]
        return out


@dataclass
class ColmapPoint:
    point3d_id: int
    xyz: np.ndarray
    rgb: np.ndarray  # uint8
    error: float  # mean reprojection error, px
    image_ids: np.ndarray  # the track: which images see it ...
    point2d_idxs: np.ndarray  # ... as which of their keypoints


@dataclass
class TextModel:
    cameras: dict[int, ColmapCamera]
    images: dict[int, ColmapImage]
    points: dict[int, ColmapPoint]


def _data_lines(path: Path) -> list[tuple[int, list[str]]]:
    """(line number, fields) of the non-comment lines; a missing file is a clear error."""
    if not path.is_file():
        raise ColmapError(f"{path}: missing (a COLMAP text model has cameras.txt, images.txt, points3D.txt)")
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip() and not line.lstrip().startswith("#"):
            out.append((n, line.split()))
    return out


def _parse(path: Path, n: int, what: str, convert, *fields):
    try:
        return convert(*fields)
    except (ValueError, IndexError) as exc:
        raise ColmapError(f"{path}:{n}: not a valid {what} line ({exc})") from None


def _camera(f: list[str]) -> ColmapCamera:
    return ColmapCamera(int(f[0]), f[1], int(f[2]), int(f[3]), np.array([float(v) for v in f[4:]]))


def _image(f: list[str], pts: list[str]) -> ColmapImage:
    return ColmapImage(int(f[0]), np.array([float(v) for v in f[1:5]]),
                       np.array([float(v) for v in f[5:8]]), int(f[8]), f[9],
                       np.array([float(v) for v in pts[0::3] + pts[1::3]]).reshape(2, -1).T.copy(),
                       np.array([int(v) for v in pts[2::3]], np.int64))


def _point(f: list[str]) -> ColmapPoint:
    return ColmapPoint(int(f[0]), np.array([float(v) for v in f[1:4]]),
                       np.array([int(v) for v in f[4:7]], np.uint8), float(f[7]),
                       np.array([int(v) for v in f[8::2]], np.int64),
                       np.array([int(v) for v in f[9::2]], np.int64))


PARAM_COUNTS = {"SIMPLE_PINHOLE": 3, "PINHOLE": 4, "SIMPLE_RADIAL": 4, "RADIAL": 5, "OPENCV": 8}


def _read_cameras(path: Path) -> dict[int, ColmapCamera]:
    cams = {}
    for n, f in _data_lines(path):
        cam = _parse(path, n, "camera", _camera, f)
        if cam.model not in PARAM_COUNTS:
            raise ColmapError(f"{path}:{n}: camera model {cam.model} is not supported; "
                              f"use one of {', '.join(PARAM_COUNTS)}")
        if len(cam.params) != PARAM_COUNTS[cam.model]:
            raise ColmapError(f"{path}:{n}: {cam.model} takes {PARAM_COUNTS[cam.model]} parameters, "
                              f"got {len(cam.params)}")
        cams[cam.camera_id] = cam
    return cams


def _read_images(path: Path) -> dict[int, ColmapImage]:
    """images.txt holds two lines per image: the pose line, then its keypoints (may be empty)."""
    if not path.is_file():
        raise ColmapError(f"{path}: missing (a COLMAP text model has cameras.txt, images.txt, points3D.txt)")
    lines = [(n, line) for n, line in enumerate(path.read_text().splitlines(), 1)
             if not line.lstrip().startswith("#")]
    images = {}
    k = 0
    while k < len(lines):
        n, head = lines[k]
        if not head.strip():  # blank lines between images are tolerated
            k += 1
            continue
        f = head.split()
        points_line = lines[k + 1][1].split() if k + 1 < len(lines) else []
        if len(points_line) % 3:
            raise ColmapError(f"{path}:{lines[k + 1][0]}: keypoints come in triples X Y POINT3D_ID")
        img = _parse(path, n, "image", _image, f, points_line)
        images[img.image_id] = img
        k += 2
    return images


def _read_points(path: Path) -> dict[int, ColmapPoint]:
    points = {}
    for n, f in _data_lines(path):
        if len(f) < 8 or (len(f) - 8) % 2:
            raise ColmapError(f"{path}:{n}: a point has ID X Y Z R G B ERROR then (IMAGE_ID, POINT2D_IDX) pairs")
        p = _parse(path, n, "point", _point, f)
        points[p.point3d_id] = p
    return points


def read_text_model(folder: str | Path) -> TextModel:
    """COLMAP's text model (cameras.txt, images.txt, points3D.txt) in `folder`."""
    folder = Path(folder)
    model = TextModel(_read_cameras(folder / "cameras.txt"), _read_images(folder / "images.txt"),
                      _read_points(folder / "points3D.txt"))
    for img in model.images.values():
        if img.camera_id not in model.cameras:
            raise ColmapError(f"{folder / 'images.txt'}: image {img.name} uses camera {img.camera_id}, "
                              "which cameras.txt does not define")
    return model


def intrinsics(cam: ColmapCamera) -> tuple[np.ndarray, np.ndarray]:
    """(K, OpenCV distortion k1 k2 p1 p2) in ``data_tools.render``'s pixel convention."""
    p = cam.params
    fx, fy, cx, cy, dist = {
        "SIMPLE_PINHOLE": lambda: (p[0], p[0], p[1], p[2], [0, 0, 0, 0]),
        "PINHOLE": lambda: (p[0], p[1], p[2], p[3], [0, 0, 0, 0]),
        "SIMPLE_RADIAL": lambda: (p[0], p[0], p[1], p[2], [p[3], 0, 0, 0]),
        "RADIAL": lambda: (p[0], p[0], p[1], p[2], [p[3], p[4], 0, 0]),
        "OPENCV": lambda: (p[0], p[1], p[2], p[3], list(p[4:8])),
    }[cam.model]()
    k = np.array([[fx, 0, cx - 0.5], [0, fy, cy - 0.5], [0, 0, 1]], float)  # pixel centres at 0
    return k, np.asarray(dist, float)


def pinhole_cameras(model: TextModel, names: list[str]) -> list[Camera | None]:
    """One ``Camera`` per photo name (None where COLMAP did not register it): COLMAP's pose
    and intrinsics; the distortion is left to the caller (``intrinsics``), which undistorts
    the photos to these pinhole cameras."""
    by_name = {img.name: img for img in model.images.values()}
    out: list[Camera | None] = []
    for name in names:
        img = by_name.get(name)
        if img is None:
            out.append(None)
            continue
        cam = model.cameras[img.camera_id]
        k, _ = intrinsics(cam)
        out.append(Camera(cam.width, cam.height, k[0, 0], k[1, 1], k[0, 2], k[1, 2],
                          img.world_from_camera()))
    return out

# ---------------------------------------------------------------------------- running


@dataclass(frozen=True)
class ColmapSettings:
    camera_model: str = "SIMPLE_RADIAL"  # a phone: focal and a little radial distortion unknown
    overlap: int = 6  # photos each photo is matched with, ahead in the walking order
    retry_overlaps: tuple[int, ...] = (12,)  # more matching for a scene that registers too few
    min_registered_share: float = 0.95  # below it, retry
    threads: int = 1  # the machines these run on are shared; COLMAP takes every core by default
    # options passed to the mapper as they are, e.g. (("Mapper.init_min_num_inliers", "50"),)
    mapper_options: tuple[tuple[str, str], ...] = ()


@dataclass
class SfmRun:
    """What COLMAP made of a capture."""

    model: TextModel | None  # the largest model; None where the mapper built none
    names: list[str]  # photo names, in input order
    registered: list[bool]  # per photo
    attempts: list[dict] = field(default_factory=list)  # per try: overlap, pairs, registered, seconds
    seconds: dict[str, float] = field(default_factory=dict)  # features, matching, mapping

    @property
    def registered_share(self) -> float:
        return float(np.mean(self.registered)) if self.registered else 0.0


def match_pairs(loops: list[list[int]], overlap: int) -> set[tuple[int, int]]:
    """Photo pairs to match, from the walking order only (see the module docstring)."""
    pairs: set[tuple[int, int]] = set()

    def add(a: int, b: int) -> None:
        if a != b:
            pairs.add((min(a, b), max(a, b)))

    for loop in loops:
        for p, a in enumerate(loop):
            for k in range(1, min(overlap, len(loop) - 1) + 1):
                add(a, loop[(p + k) % len(loop)])
    for la, lb in zip(loops, loops[1:]):  # the same place, one loop higher
        for p, a in enumerate(la):
            q = int(round(p * len(lb) / len(la)))
            for k in range(-(overlap // 2), overlap // 2 + 1):
                add(a, lb[(q + k) % len(lb)])
    return pairs


def _run(args: list[str], log: Path) -> int:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}  # no display: COLMAP's Qt must not look for one
    with log.open("a") as out:
        out.write("$ " + " ".join(args) + "\n")
        out.flush()
        return subprocess.run(args, stdout=out, stderr=subprocess.STDOUT, env=env).returncode


def _must(args: list[str], log: Path) -> None:
    if _run(args, log) != 0:
        tail = "\n".join(log.read_text().splitlines()[-15:])
        raise ColmapError(f"`{' '.join(args[:2])}` failed (log {log}):\n{tail}")


def _write_images(images: list[np.ndarray], folder: Path) -> list[str]:
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i, rgb in enumerate(images):
        name = f"view_{i:04d}.png"
        bgr = cv2.cvtColor((np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8), cv2.COLOR_RGB2BGR)
        if not cv2.imwrite(str(folder / name), bgr):
            raise ColmapError(f"{folder / name}: could not write the photo")
        names.append(name)
    return names


def _map(exe: str, work: Path, settings: ColmapSettings, attempt: int, log: Path) -> TextModel | None:
    """Run the mapper into its own folder; the largest model read back, or None."""
    out = work / f"sparse_{attempt}"
    out.mkdir()
    args = [exe, "mapper", "--database_path", str(work / "database.db"),
            "--image_path", str(work / "images"), "--output_path", str(out),
            "--Mapper.num_threads", str(settings.threads)]
    for key, value in settings.mapper_options:
        args += [f"--{key}", str(value)]
    _run(args, log)  # a failure to find an initial pair is "nothing registered", not an error
    best: TextModel | None = None
    for sub in sorted(p for p in out.iterdir() if p.is_dir()):
        txt = work / f"text_{attempt}_{sub.name}"
        txt.mkdir()
        _must([exe, "model_converter", "--input_path", str(sub), "--output_path", str(txt),
               "--output_type", "TXT"], log)
        model = read_text_model(txt)
        if best is None or len(model.images) > len(best.images):
            best = model
    return best


def run_colmap_sfm(images: list[np.ndarray], loops: list[list[int]], work_dir: str | Path,
                   settings: ColmapSettings | None = None) -> SfmRun:
    """SfM of `images` (RGB floats in [0, 1], walking order given by `loops`) in `work_dir`
    (created; photos, database, models and colmap.log stay there for inspection)."""
    exe = colmap_executable()
    settings = settings if settings is not None else ColmapSettings()
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    log = work / "colmap.log"
    db = work / "database.db"
    names = _write_images(images, work / "images")
    t0 = time.perf_counter()
    _must([exe, "feature_extractor", "--database_path", str(db), "--image_path", str(work / "images"),
           "--ImageReader.single_camera", "1", "--ImageReader.camera_model", settings.camera_model,
           "--SiftExtraction.use_gpu", "0", "--SiftExtraction.num_threads", str(settings.threads)], log)
    run = SfmRun(None, names, [False] * len(names), seconds={"features": time.perf_counter() - t0,
                                                                "matching": 0.0, "mapping": 0.0})
    matched: set[tuple[int, int]] = set()
    for attempt, overlap in enumerate((settings.overlap, *settings.retry_overlaps)):
        t1 = time.perf_counter()
        new = sorted(match_pairs(loops, overlap) - matched)  # pairs matched before stay in the database
        (work / f"pairs_{attempt}.txt").write_text("".join(f"{names[a]} {names[b]}\n" for a, b in new))
        _must([exe, "matches_importer", "--database_path", str(db),
               "--match_list_path", str(work / f"pairs_{attempt}.txt"), "--match_type", "pairs",
               "--SiftMatching.use_gpu", "0", "--SiftMatching.num_threads", str(settings.threads)], log)
        matched |= set(new)
        t2 = time.perf_counter()
        model = _map(exe, work, settings, attempt, log)
        t3 = time.perf_counter()
        run.seconds["matching"] += t2 - t1
        run.seconds["mapping"] += t3 - t2
        registered = {img.name for img in model.images.values()} if model else set()
        run.attempts.append({"overlap": overlap, "pairs": len(matched), "registered": len(registered),
                             "seconds": round(t3 - t1, 3)})
        if model is not None and len(model.images) >= sum(run.registered):
            run.model, run.registered = model, [n in registered for n in names]
        if run.registered_share >= settings.min_registered_share:
            break
    return run
