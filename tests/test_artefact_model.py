"""The fast SfM + MVS artefact model: visibility, support, noise law, thickening, dropout."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from data_tools.artefact_model import (
    ARTEFACT_PRESETS,
    ArtefactParams,
    bar_radii,
    effective_stride,
    fast_reconstruct,
)
from data_tools.rebar.geometry import box_mesh
from data_tools.rebar.mesh import LabeledMesh, scene_to_mesh
from data_tools.rebar.model import Bar, Scene, Solid
from data_tools.render import Camera, look_at

W, H, F = 200, 150, 180.0

# Every artefact off: exact visible surfaces seen by >= 2 views, nothing else.
CLEAN = ArtefactParams(pixel_stride=1, keep_main=1.0, keep_tie=1.0, keep_background=1.0,
                       width50_px=0.0, width_scale_px=1e-3, hole_rate=0.0,
                       disparity_noise_px=0.0, depth_noise_floor_m=0.0, thicken_m=0.0,
                       thicken_px=0.0, thicken_spread_m=0.0, blob_prob=0.0,
                       outlier_fraction=0.0, color_noise=0.0, color_gain_std=0.0,
                       voxel_m=0.002)


def _cam(eye, target, w=W, h=H, f=F) -> Camera:
    return Camera(w, h, f, f, (w - 1) / 2, (h - 1) / 2, look_at(eye, target))


def _mesh(solids=(), bars=()) -> LabeledMesh:
    return scene_to_mesh(Scene(list(bars), list(solids), "test"))


def _plane(z=0.0, half=5.0, material="concrete") -> Solid:
    v = np.array([[-half, -half, z], [half, -half, z], [half, half, z], [-half, half, z]])
    return Solid(v, np.array([[0, 1, 2], [0, 2, 3]]), material, "ground")


def _run(mesh, cams, params=CLEAN, seed=0):
    return fast_reconstruct(mesh, cams, params, np.random.default_rng(seed))


def _ring(target, radius, height, n, w=W, h=H, f=F):
    az = np.linspace(0, 2 * np.pi, n, endpoint=False)
    t = np.asarray(target, float)
    return [_cam(t + [radius * np.cos(a), radius * np.sin(a), height], t, w, h, f) for a in az]


def test_occluded_far_side_and_bottom_are_missing():
    box = Solid(*box_mesh([-0.25, -0.25, 0.0], [0.25, 0.25, 0.5]), "concrete", "box")
    mesh = _mesh([_plane(), box])
    # all cameras on the +x side, above the box
    cams = [_cam((2.0, y, z), (0, 0, 0.25)) for y in (-0.6, 0.0, 0.6) for z in (0.8, 1.6)]
    cloud, lab = _run(mesh, cams)
    x, y, z = cloud.xyz.T
    on_box = (np.abs(y) < 0.24) & (z > 0.01) & (z < 0.49)
    assert (on_box & (np.abs(x - 0.25) < 0.003)).sum() > 500  # near face is there
    assert (on_box & (np.abs(x + 0.25) < 0.01)).sum() == 0  # far face is not
    inside = (np.abs(x) < 0.24) & (np.abs(y) < 0.24)
    assert (inside & (z < 0.49)).sum() == 0  # no bottom face, no ground under the box
    assert (inside & (np.abs(z - 0.5) < 0.003)).sum() > 500  # the top is seen
    assert set(np.unique(lab)) == {0}


def test_points_seen_by_one_camera_only_are_dropped():
    mesh = _mesh([_plane()])
    # two downward views whose footprints overlap only around x = 0 (each ~ +-1.1 m wide)
    cams = [_cam((x, 0.0, 2.0), (x, 0.0, 0.0)) for x in (-0.9, 0.9)]
    cloud, _ = _run(mesh, cams)
    assert len(cloud) > 1000
    assert np.abs(cloud.xyz[:, 0]).max() < 0.3  # only the overlap survives
    alone, _ = _run(mesh, cams[:1])
    assert len(alone) == 0


def test_depth_noise_grows_like_depth_squared():
    mesh = _mesh([_plane(half=20.0)])
    params = replace(CLEAN, pixel_stride=2, disparity_noise_px=0.3, voxel_m=0.001)
    spread = {}
    for d in (1.0, 3.0):
        # a 2x2 block of downward views 10 cm apart, at height d above the plane
        cams = [_cam((x, y, d), (x, y, 0.0)) for x in (0.0, 0.1) for y in (0.0, 0.1)]
        cloud, _ = _run(mesh, cams, params)
        spread[d] = np.std(cloud.xyz[:, 2])  # plane z = 0: z is the point-to-plane distance
    # Expected ratio (3/1)^2 = 9 (same view geometry, so the same ray angles, scaled); a
    # linear law gives 3, a cubic one 27. +-25% covers the sample std of ~5k points and the
    # voxel merge (noisier points keep a larger share of voxels, slightly).
    assert 0.75 * 9 < spread[3.0] / spread[1.0] < 1.25 * 9
    # absolute size at 1 m: sigma_z = 0.3 px x 1 m^2 / (180 px x 0.1 m) = 16.7 mm
    assert spread[1.0] == pytest.approx(0.3 / (F * 0.1), rel=0.15)


def _bar(x=0.0, y=0.0, r=0.01, z0=0.2, z1=1.0, role="main") -> Bar:
    return Bar(np.array([[x, y, z0], [x, y, z1]]), r, role)


def _radial(cloud, lab, x=0.0, y=0.0, label=1):
    p = cloud.xyz[lab == label]
    p = p[(p[:, 2] > 0.3) & (p[:, 2] < 0.9)]  # away from the caps
    return np.hypot(p[:, 0] - x, p[:, 1] - y)


def test_thickening_moves_bar_points_out_by_the_configured_offset():
    r = 0.01
    mesh = _mesh(bars=[_bar(r=r)])
    assert bar_radii(mesh)[0] == pytest.approx(r, rel=0.05)
    cams = _ring((0, 0, 0.6), 0.8, 0.2, 8)
    plain = _radial(*_run(mesh, cams))
    assert len(plain) > 200
    assert np.median(plain) - r == pytest.approx(0.0, abs=0.0007)
    thick = _radial(*_run(mesh, cams, replace(CLEAN, thicken_m=0.004)))
    assert np.median(thick) - r == pytest.approx(0.004, abs=0.0007)
    frac = _radial(*_run(mesh, cams, replace(CLEAN, thicken_radius_frac=0.5)))
    assert np.median(frac) - r == pytest.approx(0.5 * r, abs=0.0007)


def test_thin_bars_lose_more_points_than_thick_ones_at_the_same_distance():
    bars = [_bar(x=-0.15, r=0.003), _bar(x=0.15, r=0.0125)]
    mesh = _mesh(bars=bars)
    cams = [_cam((0.0, -2.0, 0.6 + dz), (0.0, 0.0, 0.6)) for dz in (-0.1, 0.0, 0.1)]
    # at 2 m with f = 180 px: the 6 mm bar is ~0.5 px wide, the 25 mm bar ~2.3 px
    drop = replace(CLEAN, width50_px=1.0, width_scale_px=0.3, dropout_patch_m=0.02)
    full, lab_full = _run(mesh, cams)
    kept, lab_kept = _run(mesh, cams, drop)
    thin = (kept.xyz[:, 0] < 0).sum() / (full.xyz[:, 0] < 0).sum()
    thick = (kept.xyz[:, 0] > 0).sum() / (full.xyz[:, 0] > 0).sum()
    assert (full.xyz[:, 0] < 0).sum() > 30  # the thin bar is visible without dropout
    assert thin < 0.3 and thick > 0.7


def _column_case():
    board = Solid(*box_mesh([-0.4, 0.3, 0.0], [0.4, 0.35, 1.0]), "plywood", "panel")
    bars = [_bar(x, y, 0.008, 0.02, 1.0) for x in (-0.15, 0.15) for y in (-0.15, 0.15)]
    bars += [Bar(np.array([[-0.16, -0.16, z], [0.16, -0.16, z], [0.16, 0.16, z],
                           [-0.16, 0.16, z], [-0.16, -0.16, z]]), 0.004, "tie")
             for z in (0.2, 0.5, 0.8)]
    mesh = _mesh([_plane(half=0.8, material="gravel"), board], bars)
    cams = _ring((0, 0, 0.5), 1.2, 0.7, 10, w=320, h=240, f=400)  # ties ~2.7 px wide
    return mesh, cams


def _case_stats(mesh, cloud):
    """The calibration's statistics (experiments/calibrate_fast.py) on the column case."""
    from data_tools.photogrammetry import label_by_nearest_surface, reconstruction_stats

    s = reconstruction_stats(cloud, label_by_nearest_surface(cloud, mesh), mesh,
                             region=(np.array([-0.8, -0.8, -0.1]), np.array([0.8, 0.8, 1.2])))
    return {"comp": [s.completeness[k] for k in (0, 1, 2)], "err": s.accuracy_median,
            "thick": [s.thickening[k] for k in (1, 2)], "outliers": s.outlier_fraction}


def test_presets_are_ordered_by_severity():
    """The order the mvs reconstructions themselves show (the 6 calibration scenes per
    preset, experiments/results/rebar3d/fast_calibration.json): from mild to harsh the median
    error, the thickening of main bars and of ties and the outlier share grow strictly,
    on every scene; harsh is the least complete preset in every class on average over
    the scenes. mvs does NOT order mild and typical by completeness (which is more
    complete changes from scene to scene), so neither does this test. At these 320 px
    images every preset samples at stride 1 (test below): the order comes from the
    artefacts, not from density.

    Margins (experiments/results/reliability/test_margins.md, seeds 0-4): the strict orders hold on
    every seed with >= 1.7 mm (error, thickening) and >= 0.10 (outlier share) to spare,
    so they are asserted per seed. Completeness is noisier per seed (tie room 0.012 on
    seed 3; an earlier "+0.1 on ties" bound failed on 3 of 5 seeds), so it is asserted on
    the mean over seeds 0-2, whose smallest room is 0.059 (background)."""
    mesh, cams = _column_case()
    rooms = []
    for seed in (0, 1, 2):
        st = {name: _case_stats(mesh, _run(mesh, cams, ARTEFACT_PRESETS[name], seed=seed)[0])
              for name in ("mild", "typical", "harsh")}
        mild, typ, harsh = st["mild"], st["typical"], st["harsh"]
        assert mild["err"] < typ["err"] < harsh["err"], st
        for k in range(2):
            assert mild["thick"][k] < typ["thick"][k] < harsh["thick"][k], st
        assert mild["outliers"] < typ["outliers"] < harsh["outliers"], st
        rooms.append([min(mild["comp"][k], typ["comp"][k]) - harsh["comp"][k] for k in range(3)])
    mean_room = np.mean(rooms, axis=0)
    assert (mean_room > 0.02).all(), rooms


def test_pixel_stride_scales_with_image_width():
    """The stride is a density knob set for the capture presets' 960x720 images: at the
    column case's 320 px every preset samples at stride 1, so density cannot decide the
    severity order above (a finer harsh stride once made harsh the densest preset)."""
    for p in ARTEFACT_PRESETS.values():
        assert p.stride_ref_width_px == 960
        assert effective_stride(p, 960) == p.pixel_stride
        assert effective_stride(p, 320) == 1
    assert effective_stride(replace(CLEAN, pixel_stride=3), 320) == 3  # ref 0: no scaling
    assert effective_stride(replace(CLEAN, pixel_stride=3, stride_ref_width_px=960), 1920) == 6


def test_deterministic_by_seed_no_labels_in_cloud():
    mesh, cams = _column_case()
    a, la = _run(mesh, cams, ARTEFACT_PRESETS["typical"], seed=3)
    b, lb = _run(mesh, cams, ARTEFACT_PRESETS["typical"], seed=3)
    c, _ = _run(mesh, cams, ARTEFACT_PRESETS["typical"], seed=4)
    np.testing.assert_array_equal(a.xyz, b.xyz)
    np.testing.assert_array_equal(a.rgb, b.rgb)
    np.testing.assert_array_equal(la, lb)
    assert len(a) != len(c) or not np.array_equal(a.xyz, c.xyz)
    assert a.labels is None and a.normals is None
    assert a.rgb.shape == a.xyz.shape and a.rgb.min() >= 0 and a.rgb.max() <= 1
    assert la.shape == (len(a),) and set(np.unique(la)) <= {0, 1, 2, 255}
    assert {0, 1, 2, 255} <= set(np.unique(la))  # typical has outliers at silhouettes
    a.validate("fast cloud")


def test_params_are_validated():
    with pytest.raises(ValueError):
        ArtefactParams(keep_main=1.5)
    with pytest.raises(ValueError):
        ArtefactParams(pixel_stride=0)
