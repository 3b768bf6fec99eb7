"""The `mvs` reconstruction: real StereoSGBM on rendered pairs, fused over views."""

from __future__ import annotations

import dataclasses
from dataclasses import replace

import numpy as np
import pytest

from data_tools.io import PointCloud
from data_tools.photogrammetry import (
    IGNORE,
    RECONSTRUCTION_PRESETS,
    StereoView,
    capture,
    label_by_nearest_surface,
    reconstruct_mvs,
    reconstruction_stats,
    similarity_transform,
)
from data_tools.rebar.cages import make_scene
from data_tools.rebar.geometry import box_mesh, tube_mesh
from data_tools.rebar.mesh import LabeledMesh, merge_meshes, scene_to_mesh
from data_tools.rebar.model import MATERIAL_NAMES
from data_tools.render import Appearance, Camera, extend_ground, look_at

W, H, F = 320, 240, 400.0


def _part(v, t, material: str, label: int, oid: int) -> LabeledMesh:
    t = np.asarray(t, np.int64)
    return LabeledMesh(np.asarray(v, float), t, np.full(len(t), oid, np.int32),
                       np.full(len(t), label, np.int64),
                       np.full(len(t), MATERIAL_NAMES.index(material), np.int32))


def _wall(y: float, half: float = 1.5, material: str = "concrete", oid: int = 0) -> LabeledMesh:
    """A vertical quad facing -y at depth y (the cameras stand at negative y)."""
    v = [[-half, y, -half + 1], [half, y, -half + 1], [half, y, half + 1], [-half, y, half + 1]]
    return _part(v, [[0, 1, 2], [0, 2, 3]], material, 0, oid)


def _cams(distance: float, xs=(-0.15, 0.15), target=(0.0, 0.0, 1.0)) -> list[Camera]:
    """Left cameras on the line y = -distance, all looking along +y at `target`."""
    target = np.asarray(target, float)
    return [Camera(W, H, F, F, (W - 1) / 2, (H - 1) / 2,
                   look_at(target + [x, -distance, 0.0], target + [x, 0.0, 0.0])) for x in xs]


def _exact(distance: float, baseline: float = 0.25, **kw):
    """A preset with exact poses, framed for `distance` and F at W x H."""
    return replace(RECONSTRUCTION_PRESETS["mild"], distance=distance, baseline=baseline,
                   rotation_noise_deg=0.0, translation_noise_m=0.0, image_size=(W, H),
                   focal_px=F, **kw)


def _bar_x(radius: float = 0.012) -> LabeledMesh:
    """A horizontal main bar along x (parallel to the stereo baseline) at z = 1."""
    v, t = tube_mesh(np.array([[-0.5, 0.0, 1.0], [0.5, 0.0, 1.0]]), radius, 16)
    return _part(v, t, "rusty_steel", 1, 1)


def test_textured_plane_lies_within_the_disparity_quantisation_error():
    z, b = 1.5, 0.25
    preset = _exact(z, b)
    views, _ = capture(_wall(0.0), preset, Appearance(), np.random.default_rng(0), _cams(z))
    cloud = reconstruct_mvs(views, preset)
    # Depth error from a disparity error dd: dz = z^2 / (f b) * dd; SGBM's sub-pixel
    # disparities are good to about half a pixel on a textured plane.
    dz = z ** 2 / (F * b) * 0.5
    err = np.abs(cloud.xyz[:, 1])  # the wall is y = 0
    print(f"plane: {len(cloud)} points, median error {np.median(err) * 1e3:.1f} mm, bound {dz * 1e3:.1f} mm")
    # A pixel covers z / F = 3.75 mm > the 3 mm voxel, so a view gives at most W * H fused
    # points; SGBM is blind in the left min+num disparities (~170 of 320) columns, so
    # about half the image can match at all (18k of 77k pixels survive, seed 0).
    assert len(cloud) > 0.15 * W * H
    assert np.median(err) < dz
    assert np.mean(err < 3 * dz) > 0.9


def test_box_faces_hidden_from_every_view_are_missing():
    v, t = box_mesh([-0.3, -0.3, 0.7], [0.3, 0.3, 1.3])
    box = _part(v, t, "timber_formwork", 0, 0)
    preset = _exact(1.8)
    cams = [Camera(W, H, F, F, (W - 1) / 2, (H - 1) / 2, look_at(eye, (0, 0, 1.0)))
            for eye in ([-0.9, -1.6, 1.6], [0.6, -1.7, 1.5], [-0.2, -1.8, 1.7])]
    views, _ = capture(box, preset, Appearance(), np.random.default_rng(1), cams)
    p = reconstruct_mvs(views, preset).xyz
    inner = lambda a, c: np.abs(a - c) < 0.25  # noqa: E731 - away from the edges' fattening
    front = (np.abs(p[:, 1] + 0.3) < 0.01) & inner(p[:, 0], 0) & inner(p[:, 2], 1.0)
    back = (np.abs(p[:, 1] - 0.3) < 0.02) & inner(p[:, 0], 0) & inner(p[:, 2], 1.0)
    bottom = (np.abs(p[:, 2] - 0.7) < 0.02) & inner(p[:, 0], 0) & inner(p[:, 1], 0)
    assert front.sum() > 1000  # the visible face is there ...
    assert back.sum() == 0 and bottom.sum() == 0  # ... the hidden ones are not


def test_textureless_bar_is_mostly_missing_textured_bar_is_not():
    mesh = merge_meshes(_bar_x(), _wall(0.5, oid=0))
    region = ([-0.45, -0.2, 0.8], [0.45, 0.2, 1.2])
    out = {}
    for strength in (0.0, 1.0):
        preset = _exact(1.2, 0.15, texture_strength=strength)
        views, _ = capture(mesh, preset, Appearance(), np.random.default_rng(3), _cams(1.2))
        cloud = reconstruct_mvs(views, preset)
        labels = label_by_nearest_surface(cloud, mesh, 0.03)
        out[strength] = reconstruction_stats(cloud, labels, mesh, region=region).completeness[1]
    print("completeness of the bar, textureless / textured:", out)
    # Seen from one side at most ~half a bar's surface is in view; 320 x 240 at 1.2 m
    # gives the textured bar 0.2 (seed 3), the textureless one nothing along its rows.
    assert out[0.0] < 0.05 and out[1.0] > 0.12


def column_by_preset_for_seed(seed: int = 0):
    """One column cage captured and reconstructed with every preset: (scene, {preset:
    (stats, cloud, labels)}). Also used by experiments/test_margins.py with other seeds."""
    scene = make_scene("column", 3)
    mesh = extend_ground(scene_to_mesh(scene))
    lo, hi = (np.asarray(b, float) for b in scene.params["bounds"])
    region = (lo - [0.1, 0.1, 0.02], hi + 0.1)
    out = {}
    for name, preset in RECONSTRUCTION_PRESETS.items():
        preset = preset.at_size(W, H)
        views, _ = capture(mesh, preset, Appearance(), np.random.default_rng(seed), bounds=(lo, hi))
        cloud = reconstruct_mvs(views, preset)
        labels = label_by_nearest_surface(cloud, mesh, 0.02)
        stats = reconstruction_stats(cloud, labels, scene_to_mesh(scene), region=region)
        print(name, stats)
        out[name] = (stats, cloud, labels)
    return scene, out


@pytest.fixture(scope="module")
def column_by_preset():
    return column_by_preset_for_seed(0)


def _centreline_offset(points: np.ndarray, bars) -> np.ndarray:
    """Distance of each point to the nearest bar centreline minus that bar's radius."""
    best = np.full(len(points), np.inf)
    for bar in bars:
        a, b = bar.polyline[:-1], bar.polyline[1:]
        ab = b - a
        for k in range(len(a)):
            t = np.clip((points - a[k]) @ ab[k] / max(ab[k] @ ab[k], 1e-12), 0, 1)
            d = np.linalg.norm(points - (a[k] + t[:, None] * ab[k]), axis=1) - bar.radius
            best = np.where(np.abs(d) < np.abs(best), d, best)
    return best


def test_cage_bars_come_out_thicker_than_they_are(column_by_preset):
    scene, out = column_by_preset
    stats, cloud, labels = out["typical"]
    mains = [b for b in scene.bars if b.role == "main"]
    offset = _centreline_offset(cloud.xyz[labels == 1].astype(np.float64), mains)
    print(f"main-bar points {len(offset)}, median radial excess {np.median(offset) * 1e3:.1f} mm")
    assert len(offset) > 1000
    assert np.median(offset) > 0.002  # fattened by millimetres, as SfM + MVS clouds are
    assert stats.thickening[1] > 0.002  # the signed surface offset tells the same story


def test_presets_are_ordered_by_severity(column_by_preset):
    """Only orders with room to spare (experiments/results/reliability/test_margins.md, capture seeds
    0-3): harsh is the least complete by >= 0.21 on main bars and ties, and the median
    error grows mild < typical < harsh by >= 0.88 mm. mild vs typical completeness is NOT
    asserted: it was +0.028 on this seed and -0.0006 on seed 1, i.e. not an order."""
    s = {name: stats for name, (stats, _, _) in column_by_preset[1].items()}
    for c in (1, 2):
        assert min(s["mild"].completeness[c], s["typical"].completeness[c]) > s["harsh"].completeness[c] + 0.1
    assert s["mild"].accuracy_median < s["typical"].accuracy_median < s["harsh"].accuracy_median


def test_same_seed_same_cloud_and_views_carry_only_photos():
    preset = _exact(1.5)
    clouds = []
    for seed in (5, 5, 6):
        views, truth = capture(_wall(0.0), preset, Appearance(), np.random.default_rng(seed),
                               _cams(1.5))
        clouds.append(reconstruct_mvs(views, preset).xyz)
    assert np.array_equal(clouds[0], clouds[1])
    assert not (clouds[0].shape == clouds[2].shape and np.array_equal(clouds[0], clouds[2]))
    names = {f.name for f in dataclasses.fields(StereoView)}
    assert names == {"left_rgb", "right_rgb", "camera", "baseline"}
    assert not any(hasattr(views[0], a) for a in ("depth", "label", "labels", "object_id"))
    assert len(truth.depth) == len(views)  # the truth exists, but apart


def test_pose_noise_reaches_the_given_cameras_only():
    preset = replace(_exact(1.5), rotation_noise_deg=0.5, translation_noise_m=0.01)
    views, truth = capture(_wall(0.0), preset, Appearance(), np.random.default_rng(0), _cams(1.5))
    for view, cam in zip(views, truth.cameras):
        shift = np.linalg.norm(view.camera.world_from_camera[:3, 3] - cam.center)
        assert 1e-4 < shift < 0.1


def test_nearest_surface_labels_and_ignore():
    mesh = merge_meshes(_bar_x(0.01), _wall(0.5, oid=0))
    pts = np.array([[0.0, -0.01, 1.0], [0.2, 0.0, 1.011], [0.0, 0.499, 0.3], [0.0, -0.5, 2.4],
                    [0.0, 0.2, 1.0]], np.float32)
    labels = label_by_nearest_surface(PointCloud(pts), mesh, max_distance=0.02)
    assert labels.tolist() == [1, 1, 0, IGNORE, IGNORE]


def test_similarity_transform_round_trips():
    pts = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)
    moved, sim = similarity_transform(PointCloud(pts), np.random.default_rng(1))
    assert not np.allclose(moved.xyz, pts, atol=1e-2)
    assert np.allclose(sim.invert(moved.xyz.astype(np.float64)), pts, atol=1e-4)
    d0, d1 = np.linalg.norm(pts[0] - pts[1]), np.linalg.norm(moved.xyz[0] - moved.xyz[1])
    assert d1 / d0 == pytest.approx(sim.scale, rel=1e-4)
