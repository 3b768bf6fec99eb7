"""The raycasting renderer: exact geometry buffers, shadows, texture, determinism, capture."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from data_tools.rebar.cages import make_scene
from data_tools.rebar.mesh import LabeledMesh, scene_to_mesh
from data_tools.rebar.model import MATERIAL_NAMES, Bar, Scene, Solid
from data_tools.render import (
    PRESETS,
    Appearance,
    Camera,
    RaycastScene,
    camera_path,
    extend_ground,
    look_at,
    rays,
    render,
    stereo_partner,
    sun_direction,
)

W, H, F = 160, 120, 150.0


def _camera(eye, target, w=W, h=H, f=F) -> Camera:
    return Camera(w, h, f, f, (w - 1) / 2, (h - 1) / 2, look_at(eye, target))


def _quad(corners, material="concrete", label=0) -> LabeledMesh:
    v = np.asarray(corners, float)
    return LabeledMesh(v, np.array([[0, 1, 2], [0, 2, 3]]), np.zeros(2, np.int32),
                       np.full(2, label, np.int64),
                       np.full(2, MATERIAL_NAMES.index(material), np.int32))


def _plain() -> Appearance:
    """No texture, noise or vignetting: what is left is geometry and light."""
    return Appearance(texture_strength=0.0, noise_std=0.0, gain_std=0.0, vignetting=0.0,
                      specular=0.0)


def _render(mesh, cam, app=None, seed=0):
    return render(mesh, cam, app or _plain(), np.random.default_rng(seed))


def test_frontal_plane_depth_is_its_distance():
    mesh = _quad([[-50, 3, -50], [50, 3, -50], [50, 3, 50], [-50, 3, 50]])
    out = _render(mesh, _camera((0, 0, 0), (0, 1, 0)))
    assert np.isfinite(out.depth).all()  # the plane fills the view
    np.testing.assert_allclose(out.depth, 3.0, atol=1e-4)
    assert (out.label == 0).all() and (out.object_id == 0).all()


def test_tilted_plane_matches_analytic_depth():
    n = np.array([0.3, -1.0, 0.4])
    n /= np.linalg.norm(n)
    p0 = np.array([0.2, 4.0, -0.1])
    a = np.cross(n, [0, 0, 1])
    a /= np.linalg.norm(a)
    b = np.cross(n, a)
    mesh = _quad([p0 + 20 * (sa * a + sb * b) for sa, sb in ((-1, -1), (1, -1), (1, 1), (-1, 1))])
    cam = _camera((0, 0, 0.5), (0.3, 1, 0.2))
    out = _render(mesh, cam)
    r = rays(cam)
    o, d = r[..., :3].astype(float), r[..., 3:].astype(float)
    t = ((p0 - o) @ n) / (d @ n)  # camera-z of d is 1, so the ray parameter is the depth
    hit = np.isfinite(out.depth)
    assert hit.mean() > 0.9
    np.testing.assert_allclose(out.depth[hit], t[hit], atol=1e-4)
    # Depth varies across the image, so this is not the frontal test again.
    assert np.ptp(t[hit]) > 0.5


def test_label_and_object_images_follow_the_geometry():
    bar = Bar(np.array([[0.0, 2.0, -0.4], [0.0, 2.0, 0.4]]), 0.02, "main")
    wall = Solid(np.array([[-1, 4, -1], [1, 4, -1], [1, 4, 1], [-1, 4, 1]], float),
                 np.array([[0, 1, 2], [0, 2, 3]]), "concrete", "wall")
    mesh = scene_to_mesh(Scene([bar], [wall], "test"))
    cam = _camera((0, 0, 0), (0, 1, 0))
    out = _render(mesh, cam)
    uv, _ = cam.project(np.array([[0.0, 2.0, -0.35], [0.0, 2.0, 0.35]]))
    rows = np.arange(int(np.ceil(uv[:, 1].min())), int(np.floor(uv[:, 1].max())) + 1)
    col = int(round(uv[0, 0]))
    assert len(rows) > 50
    assert (out.label[rows, col] == 1).all() and (out.object_id[rows, col] == 0).all()
    np.testing.assert_allclose(out.depth[rows, col], 2.0, atol=0.021)  # front of a 2 cm tube
    # Wall: between the bar and the wall's edge (projected at +-1 m / 4 m * f = +-37.5 px).
    wall_px = out.label[25:95, 50:70]
    assert (wall_px == 0).all() and (out.object_id[25:95, 50:70] == 1).all()
    # Sky: left of the wall.
    assert (out.label[:, :30] == 255).all() and (out.object_id[:, :30] == -1).all()
    assert np.isinf(out.depth[:, :30]).all()


def _slab_hits_box(p, s, lo, hi) -> np.ndarray:
    """Does the ray p + t s (t > 0) pass through the box [lo, hi]?"""
    with np.errstate(divide="ignore"):
        t0, t1 = (lo - p) / s, (hi - p) / s
    tmin = np.minimum(t0, t1).max(1)
    tmax = np.maximum(t0, t1).min(1)
    return (tmax >= np.maximum(tmin, 0))


def test_box_casts_a_shadow_where_geometry_says():
    from data_tools.rebar.geometry import box_mesh

    lo, hi = np.array([-0.25, -0.25, 0.0]), np.array([0.25, 0.25, 0.5])
    bv, bt = box_mesh(lo, hi)
    ground = Solid(np.array([[-5, -5, 0], [5, -5, 0], [5, 5, 0], [-5, 5, 0]], float),
                   np.array([[0, 1, 2], [0, 2, 3]]), "concrete", "ground")
    mesh = scene_to_mesh(Scene([], [Solid(bv, bt, "concrete", "box"), ground], "test"))
    app = replace(_plain(), hour=15.0)
    s = sun_direction(app)
    assert 0.3 < s[2] < 0.9  # afternoon sun: a long but finite shadow
    cam = _camera((0.0, 0.0, 4.0) - 3.0 * np.array([s[0], s[1], 0.0]), (-s[0], -s[1], 0))
    out = _render(mesh, cam, app)
    r = rays(cam).reshape(-1, 6).astype(float)
    on_ground = (out.object_id.ravel() == 1)
    p = r[:, :3] + out.depth.ravel()[:, None] * r[:, 3:]
    shadow = on_ground & _slab_hits_box(p + 1e-3 * np.array([0, 0, 1]),
                                        np.broadcast_to(s, p.shape), lo - 0.01, hi + 0.01)
    # Keep away from the penumbra-free but pixel-aliased shadow edge.
    lit = on_ground & ~_slab_hits_box(p, np.broadcast_to(s, p.shape), lo - 0.05, hi + 0.05)
    deep = on_ground & _slab_hits_box(p, np.broadcast_to(s, p.shape), lo + 0.05, hi - 0.05)
    assert deep.sum() > 50 and lit.sum() > 50 and shadow.sum() >= deep.sum()
    grey = out.rgb.reshape(-1, 3).mean(1)
    assert grey[deep].mean() < 0.5 * grey[lit].mean()
    no_shadow = _render(mesh, cam, replace(app, shadows=False)).rgb.reshape(-1, 3).mean(1)
    assert no_shadow[deep].mean() > 0.9 * grey[lit].mean()  # the darkening is the shadow


def _laplacian(img: np.ndarray) -> np.ndarray:
    g = img.mean(-1)
    return np.abs(4 * g[1:-1, 1:-1] - g[:-2, 1:-1] - g[2:, 1:-1] - g[1:-1, :-2] - g[1:-1, 2:])


@pytest.mark.parametrize("material", ["concrete", "gravel", "soil", "plywood", "rusty_steel"])
def test_surfaces_carry_texture_for_matching(material):
    # StereoSGBM compares 8-bit intensities; a mean |Laplacian| of 0.01 (about 2.5 grey
    # levels per pixel) is texture its census/BT cost can lock on to, while a plain surface
    # under smooth light has none (its Laplacian is float round-off).
    mesh = _quad([[-5, 3, -5], [5, 3, -5], [5, 3, 5], [-5, 3, 5]], material)
    cam = _camera((0, 0, 0), (0, 1, 0))
    textured = replace(_plain(), texture_strength=1.0)
    assert _laplacian(_render(mesh, cam, textured).rgb).mean() > 0.01
    assert _laplacian(_render(mesh, cam).rgb).mean() < 0.001


def _cage():
    scene = make_scene("column", 0)
    return scene, extend_ground(scene_to_mesh(scene))


def test_same_seed_same_image_other_seeds_differ():
    mesh = _quad([[-5, 3, -5], [5, 3, -5], [5, 3, 5], [-5, 3, 5]], "gravel")
    cam = _camera((0, 0, 0), (0, 1, 0))
    app = Appearance()
    a, b = _render(mesh, cam, app, seed=1), _render(mesh, cam, app, seed=1)
    np.testing.assert_array_equal(a.rgb, b.rgb)
    c = _render(mesh, cam, app, seed=2)  # other sensor noise, same surface
    assert np.abs(a.rgb - c.rgb).mean() > 1e-3
    assert np.abs(a.rgb - c.rgb).mean() < 0.05
    d = _render(mesh, cam, replace(app, texture_seed=5), seed=1)  # another scene's look
    assert np.abs(a.rgb - d.rgb).mean() > 0.05


def test_presets_and_camera_path_look_at_the_target():
    assert {"noon", "overcast", "evening", "close_low", "far_high"} <= set(PRESETS)
    lo, hi = np.array([-0.4, -0.4, 0.0]), np.array([0.4, 0.4, 1.5])
    for name, settings in PRESETS.items():
        cams = camera_path(settings, lo, hi, np.random.default_rng(0))
        assert len(cams) == settings.path.n_images, name
        uv, z = np.array([c.project(0.5 * (lo + hi)[None])[0][0] for c in cams]), \
            np.array([c.project(0.5 * (lo + hi)[None])[1][0] for c in cams])
        w, h = settings.path.image_size
        assert (z > 0).all() and (uv[:, 0] > 0).all() and (uv[:, 0] < w).all(), name
        assert (uv[:, 1] > 0).all() and (uv[:, 1] < h).all(), name
        dist = np.linalg.norm([c.center[:2] - 0.5 * (lo + hi)[:2] for c in cams], axis=1)
        np.testing.assert_allclose(dist, settings.path.distance, atol=0.3)
    a = camera_path(PRESETS["noon"], lo, hi, np.random.default_rng(3))
    b = camera_path(PRESETS["noon"], lo, hi, np.random.default_rng(3))
    assert all(np.array_equal(x.world_from_camera, y.world_from_camera) for x, y in zip(a, b))


def test_stereo_partner_is_rectified():
    cam = _camera((1, -2, 1.5), (0, 0, 0.7))
    right = stereo_partner(cam, 0.1)
    pts = np.random.default_rng(0).uniform(-0.5, 0.5, (50, 3)) + [0, 0, 0.7]
    (ul, zl), (ur, zr) = cam.project(pts), right.project(pts)
    np.testing.assert_allclose(ul[:, 1], ur[:, 1], atol=1e-9)  # same rows
    np.testing.assert_allclose(ul[:, 0] - ur[:, 0], F * 0.1 / zl, rtol=1e-9)
    np.testing.assert_allclose(zl, zr)


def test_cage_render_shows_main_bars_and_ties():
    scene, mesh = _cage()
    settings = PRESETS["noon"]
    path = replace(settings.path, image_size=(320, 240), focal_px=270.0)
    lo, hi = np.array(scene.params["bounds"])
    cam = camera_path(path, lo, hi, np.random.default_rng(0))[0]
    rs = RaycastScene.from_mesh(mesh)
    out = render(mesh, cam, settings.appearance, np.random.default_rng(0), rs)
    assert out.rgb.shape == (240, 320, 3) and out.rgb.dtype == np.float32
    assert out.rgb.min() >= 0 and out.rgb.max() <= 1
    assert (out.label == 1).sum() > 200 and (out.label == 2).sum() > 20
    # Rust: bar pixels are redder than they are blue, as the material table says.
    bar = out.rgb[out.label == 1]
    assert bar[:, 0].mean() > 1.3 * bar[:, 2].mean()
