"""Real SfM (issue 38): COLMAP's text model, rectifying any pair, the similarity fit, the
walking-order pairs, and what happens without COLMAP. The end-to-end `sfm` scene, which
runs COLMAP, is in tests/test_sfm_scene.py."""

from __future__ import annotations

import math

import numpy as np
import pytest

from data_tools import colmap_sfm
from data_tools.colmap_sfm import (
    ColmapError,
    ColmapNotFound,
    intrinsics,
    match_pairs,
    pinhole_cameras,
    read_text_model,
    run_colmap_sfm,
)
from data_tools.pair_rectification import pair_depth, rectify_pair
from data_tools.photogrammetry import SGBMParams
from data_tools.rebar.mesh import LabeledMesh
from data_tools.rebar.model import MATERIAL_NAMES
from data_tools.render import Appearance, Camera, look_at, render
from data_tools.similarity_fit import fit_similarity

# ---------------------------------------------------------------------------- text model

CAMERAS = """# Camera list with one line of data per camera:
#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]
1 SIMPLE_RADIAL 320 240 401.5 160.25 119.75 -0.012
"""
# image 1 at the origin looking along +z; image 2 turned 90 degrees about y (q = cos 45, 0, sin 45, 0)
IMAGES = f"""# Image list with two lines of data per image:
1 1 0 0 0 0 0 0 1 view_0000.png
10.5 20.5 7 30 40 -1
2 {math.cos(math.pi / 4)} 0 {math.sin(math.pi / 4)} 0 1 2 3 1 view_0001.png

"""
POINTS = """# 3D point list
7 0.1 0.2 3.0 255 128 0 0.42 1 0 2 5
"""


def _write_model(folder, cameras=CAMERAS, images=IMAGES, points=POINTS):
    folder.mkdir(exist_ok=True)
    (folder / "cameras.txt").write_text(cameras)
    (folder / "images.txt").write_text(images)
    (folder / "points3D.txt").write_text(points)
    return folder


def test_text_model_is_read_back(tmp_path):
    model = read_text_model(_write_model(tmp_path / "m"))
    cam = model.cameras[1]
    assert (cam.model, cam.width, cam.height) == ("SIMPLE_RADIAL", 320, 240)
    k, dist = intrinsics(cam)
    # COLMAP's pixel centres sit at +0.5: the principal point moves by half a pixel
    assert k[0, 0] == k[1, 1] == 401.5 and (k[0, 2], k[1, 2]) == (159.75, 119.25)
    assert dist.tolist() == [-0.012, 0, 0, 0]
    one, two = model.images[1], model.images[2]
    assert one.name == "view_0000.png" and one.xys.tolist() == [[10.5, 20.5], [30, 40]]
    assert one.point3d_ids.tolist() == [7, -1]
    assert two.xys.shape == (0, 2) and len(two.point3d_ids) == 0  # an empty keypoint line
    # world_from_camera inverts cam_from_world: image 2's centre is -R^T t
    pose = two.world_from_camera()
    assert np.allclose(pose[:3, :3] @ two.cam_from_world()[:3, :3], np.eye(3))
    assert np.allclose(two.cam_from_world()[:3, :3] @ [0, 0, 1], [1, 0, 0], atol=1e-12)
    assert np.allclose(pose[:3, 3], -two.cam_from_world()[:3, :3].T @ [1, 2, 3])
    p = model.points[7]
    assert p.xyz.tolist() == [0.1, 0.2, 3.0] and p.rgb.tolist() == [255, 128, 0]
    assert p.error == 0.42 and p.image_ids.tolist() == [1, 2] and p.point2d_idxs.tolist() == [0, 5]
    cams = pinhole_cameras(model, ["view_0001.png", "missing.png", "view_0000.png"])
    assert cams[1] is None and np.allclose(cams[0].center, pose[:3, 3])
    assert cams[2].cx == 159.75 and np.allclose(cams[2].world_from_camera, np.eye(4))


@pytest.mark.parametrize("file, text, message", [
    ("cameras.txt", "1 FISHEYE 320 240 1 2 3\n", "FISHEYE is not supported"),
    ("cameras.txt", "1 PINHOLE 320 240 1 2 3\n", "PINHOLE takes 4 parameters"),
    ("cameras.txt", "1 PINHOLE 320 wide 1 2 3 4\n", "cameras.txt:1: not a valid camera"),
    ("images.txt", "1 1 0 0 0 0 0 0 1 a.png\n1 2\n", "images.txt:2: keypoints come in triples"),
    ("images.txt", "1 1 0 0 0 0 0 0 5 a.png\n\n", "uses camera 5"),
    ("points3D.txt", "7 0.1 0.2 3.0 255 128 0 0.4 1\n", "points3D.txt:1: a point has ID"),
])
def test_bad_text_model_names_file_and_line(tmp_path, file, text, message):
    folder = _write_model(tmp_path / "m")
    (folder / file).write_text(text)
    with pytest.raises(ColmapError, match=message):
        read_text_model(folder)


def test_missing_model_file_is_named(tmp_path):
    folder = _write_model(tmp_path / "m")
    (folder / "points3D.txt").unlink()
    with pytest.raises(ColmapError, match="points3D.txt: missing"):
        read_text_model(folder)

# ---------------------------------------------------------------------------- COLMAP absent


def test_missing_colmap_names_the_package(tmp_path, monkeypatch):
    monkeypatch.setattr(colmap_sfm.shutil, "which", lambda name: None)
    with pytest.raises(ColmapNotFound, match="apt-get install colmap"):
        run_colmap_sfm([np.zeros((8, 8, 3), np.float32)] * 3, [[0, 1, 2]], tmp_path / "w")


# ---------------------------------------------------------------------------- matching pairs


def test_pairs_wrap_round_the_loop_and_join_loops():
    one = match_pairs([list(range(10))], 2)
    assert (0, 1) in one and (0, 2) in one and (0, 3) not in one
    assert (8, 9) in one and (0, 9) in one and (1, 9) in one  # the loop closes
    assert len(one) == 20
    two = match_pairs([list(range(8)), list(range(8, 12))], 2)  # 8 low, 4 high photos
    assert (4, 10) in two and (4, 9) in two and (4, 11) in two  # half-way round both loops
    assert all(a < b for a, b in two)

# ---------------------------------------------------------------------------- similarity


def test_similarity_fit_recovers_a_known_transform():
    rng = np.random.default_rng(0)
    src = rng.normal(size=(40, 3))
    angle = 1.1
    axis = np.array([1.0, -2.0, 0.5]) / np.linalg.norm([1.0, -2.0, 0.5])
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rot = np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * k @ k
    dst = 0.37 * src @ rot.T + [4.0, -1.0, 2.5]
    sim = fit_similarity(src, dst)
    assert sim.scale == pytest.approx(0.37, rel=1e-9)
    assert np.allclose(sim.rotation, rot, atol=1e-9) and np.allclose(sim.translation, [4, -1, 2.5])
    assert np.allclose(sim.invert(dst), src, atol=1e-9)
    # noise on the targets: still close, and a mirror image is never returned
    noisy = fit_similarity(src, dst + rng.normal(scale=1e-3, size=dst.shape))
    assert noisy.scale == pytest.approx(0.37, rel=1e-2) and np.linalg.det(noisy.rotation) > 0
    with pytest.raises(ValueError, match="collinear"):
        fit_similarity(np.outer(np.arange(5.0), [1, 1, 0]), np.outer(np.arange(5.0), [0, 1, 1]))

# ---------------------------------------------------------------------------- rectification

W, H, F = 320, 240, 300.0


def _plane(normal, point, half=4.0) -> LabeledMesh:
    """A textured square (gravel photo) through `point` with unit `normal`."""
    n = np.asarray(normal, float) / np.linalg.norm(normal)
    u = np.cross(n, [0.0, 0.0, 1.0] if abs(n[2]) < 0.9 else [1.0, 0.0, 0.0])
    u /= np.linalg.norm(u)
    v = np.cross(n, u)
    c = np.asarray(point, float)
    verts = np.array([c - half * u - half * v, c + half * u - half * v,
                      c + half * u + half * v, c - half * u + half * v])
    return LabeledMesh(verts, np.array([[0, 1, 2], [0, 2, 3]]), np.zeros(2, np.int32),
                       np.zeros(2, np.int64), np.full(2, MATERIAL_NAMES.index("gravel"), np.int32))


def test_rectified_pair_gives_the_depth_of_a_known_plane():
    # A tilted plane about 2 m away; the second camera stands 0.3 m to the side, 0.08 m up and
    # 0.1 m back, turned towards the plane's centre: no row of one photo is a row of the other.
    plane = _plane([0.2, -1.0, 0.3], [0.0, 2.0, 1.0])
    left = Camera(W, H, F, F, (W - 1) / 2, (H - 1) / 2, look_at([0.0, 0.0, 1.0], [0.05, 2.0, 1.0]))
    right = Camera(W, H, F * 1.02, F * 1.02, (W - 1) / 2 + 3, (H - 1) / 2 - 2,
                   look_at([0.3, -0.1, 1.08], [-0.1, 2.0, 0.95]))
    rng = np.random.default_rng(0)
    shots = [render(plane, cam, Appearance(), rng) for cam in (left, right)]
    pair = rectify_pair(shots[0].rgb, shots[1].rgb, left, right)
    assert pair.baseline == pytest.approx(np.linalg.norm(right.center - left.center))
    sgbm = SGBMParams(block_size=5)
    depth = pair_depth(shots[0].rgb, shots[1].rgb, left, right, sgbm, (1.0, 5.0))
    truth = shots[0].depth
    ok = np.isfinite(depth)
    err = np.abs(depth[ok] - truth[ok])
    # Tolerance: half a pixel of disparity, dz = z^2 / (f b) * 0.5 (~2.3 cm at 2 m, b = 0.32 m).
    z = float(np.median(truth))
    tol = z ** 2 / (F * pair.baseline) * 0.5
    print(f"valid {ok.mean():.2f}, median error {np.median(err) * 1e3:.1f} mm, tolerance {tol * 1e3:.1f} mm")
    assert ok.mean() > 0.4  # the shared part of both photos, less SGBM's blind left border
    assert np.median(err) < tol
    assert np.mean(err < 3 * tol) > 0.95
    # the same pair taken the other way round (second camera to the LEFT) works as well
    back = pair_depth(shots[1].rgb, shots[0].rgb, right, left, sgbm, (1.0, 5.0))
    ok_b = np.isfinite(back)
    assert ok_b.mean() > 0.4 and np.median(np.abs(back[ok_b] - shots[1].depth[ok_b])) < tol


def test_rectification_refuses_degenerate_pairs():
    cam = Camera(W, H, F, F, (W - 1) / 2, (H - 1) / 2, look_at([0.0, 0.0, 1.0], [0.0, 2.0, 1.0]))
    ahead = Camera(W, H, F, F, (W - 1) / 2, (H - 1) / 2, look_at([0.0, 0.5, 1.0], [0.0, 2.0, 1.0]))
    img = np.zeros((H, W, 3), np.float32)
    with pytest.raises(ValueError, match="same centre"):
        rectify_pair(img, img, cam, cam)
    with pytest.raises(ValueError, match="one behind the other"):
        rectify_pair(img, img, cam, ahead)

# ---------------------------------------------------------------------------- walk-around


def test_walk_around_loops_heights_and_supersampling():
    from data_tools.photogrammetry import RECONSTRUCTION_PRESETS
    from data_tools.walk_around import WALK_AROUND_PRESETS, WalkAround, capture_walk_around

    recon = RECONSTRUCTION_PRESETS["typical"].at_size(48, 36)
    walk = WALK_AROUND_PRESETS["walk_around_two_heights"]
    plane = _plane([0.0, 0.0, 1.0], [0.0, 0.0, 0.0])
    lo, hi = np.array([-0.3, -0.3, 0.0]), np.array([0.3, 0.3, 1.0])
    small = WalkAround(views_per_loop=6, height_offsets=walk.height_offsets, supersample=2)
    cap, truth = capture_walk_around(plane, small, recon, Appearance(), np.random.default_rng(0), (lo, hi))
    assert cap.loops == [[0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11]] and len(cap.images) == 12
    assert cap.images[0].shape == (36, 48, 3) and truth.depth[0].shape == (36, 48)
    heights = np.array([c.center[2] for c in truth.cameras])
    # one loop 0.4 m under the preset's camera height, one 0.4 m over it (+- the 5 cm walk jitter)
    assert np.all(np.abs(heights[:6] - (recon.camera_height - 0.4)) < 0.2)
    assert np.all(np.abs(heights[6:] - (recon.camera_height + 0.4)) < 0.2)
    assert walk.n_views == 96 and WALK_AROUND_PRESETS["walk_around"].n_views == 72
