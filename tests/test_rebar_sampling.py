"""Meshes, surface sampling and the dataset writer of data_tools.rebar."""

from __future__ import annotations

import json

import numpy as np
import pytest

from data_tools.__main__ import main
from data_tools.io import read_cloud
from data_tools.rebar.cages import ELEMENTS, make_scene
from data_tools.rebar.generate import draw_scene, generate_scenes, load_mesh
from data_tools.rebar.geometry import helix, polyline_length, rect_tie, tube_mesh
from data_tools.rebar.mesh import scene_to_mesh, to_open3d
from data_tools.rebar.model import Bar, Scene
from data_tools.rebar.sampling import sample_surface


def _area(v, t) -> float:
    return float(0.5 * np.linalg.norm(np.cross(v[t[:, 1]] - v[t[:, 0]], v[t[:, 2]] - v[t[:, 0]]), axis=1).sum())


@pytest.mark.parametrize("shape", ["straight", "tie", "helix"])
def test_tube_area_is_2_pi_r_l(shape):
    pts = {"straight": np.array([[0, 0, 0], [0.3, 0.4, 1.2]], float),
           "tie": rect_tie(0.4, 0.3, 0.010),
           "helix": helix(0.2, 0.08, 0.0, 0.5)}[shape]
    r = 0.006
    v, t = tube_mesh(pts, r, sides=12, caps=False)
    expected = 2 * np.pi * r * polyline_length(pts)
    assert _area(v, t) == pytest.approx(expected, rel=0.02)


def _dist_to_polyline(p: np.ndarray, poly: np.ndarray) -> np.ndarray:
    a, b = poly[:-1], poly[1:]
    ab = b - a
    t = np.clip(((p[:, None] - a) * ab).sum(-1) / (ab * ab).sum(-1), 0, 1)
    return np.linalg.norm(a + t[..., None] * ab - p[:, None], axis=-1).min(1)


def test_sampled_tie_points_lie_on_the_bar_surface():
    tie = rect_tie(0.3, 0.3, 0.010)
    scene = Scene([Bar(tie, 0.005, "tie")], [], "test")
    cloud = sample_surface(scene_to_mesh(scene), 2e5, np.random.default_rng(0))
    xyz = cloud.xyz.astype(float)
    # end caps are discs across the bar: their points are legitimately closer than r
    caps = np.minimum(*(np.linalg.norm(xyz - tie[i], axis=1) for i in (0, -1))) < 1.02 * 0.005
    assert caps.mean() < 0.01
    d = _dist_to_polyline(xyz[~caps], tie)
    # 12-sided tube: between the apothem (0.977 r) and the area-matched vertex radius (1.012 r)
    assert np.all(np.abs(d / 0.005 - 1) < 0.03)
    assert set(np.unique(cloud.labels)) == {2}


def test_point_count_and_local_density_follow_area():
    mesh = scene_to_mesh(make_scene("column", 3))
    density = 3000.0
    cloud = sample_surface(mesh, density, np.random.default_rng(1))
    areas = mesh.areas()
    assert len(cloud) == pytest.approx(density * areas.sum(), rel=0.05)
    for label in (0, 1, 2):  # each class gets points in proportion to its surface
        expected = density * areas[mesh.labels == label].sum()
        assert (cloud.labels == label).sum() == pytest.approx(expected, rel=0.05)
    assert np.allclose(np.linalg.norm(cloud.normals, axis=1), 1, atol=1e-4)
    assert cloud.rgb.min() >= 0 and cloud.rgb.max() <= 1


@pytest.mark.parametrize("element", list(ELEMENTS))
def test_label_fractions_are_sensible(element):
    # Background always exists (ground, formwork) but must not swamp the cage: a net
    # trained on clouds with < 10% rebar learns "everything is background". Columns and
    # beams have both classes; walls may have links (tie) or none; slabs never have ties.
    for seed in range(3):
        mesh = scene_to_mesh(make_scene(element, seed))
        labels = sample_surface(mesh, 1000.0, np.random.default_rng(seed)).labels
        frac = np.bincount(labels, minlength=3) / len(labels)
        assert 0.15 <= frac[0] <= 0.88, frac
        assert frac[1] >= 0.05 and frac[1] + frac[2] >= 0.12, frac
        if element in ("column", "circular_column", "beam", "footing"):
            assert frac[2] >= 0.01, frac
        if element == "slab":
            assert frac[2] == 0


def test_open3d_mesh_raycasts_to_the_right_labels():
    import open3d as o3d

    mesh = scene_to_mesh(make_scene("column", 5))
    rc = o3d.t.geometry.RaycastingScene()
    rc.add_triangles(mesh.vertices.astype(np.float32), mesh.triangles.astype(np.uint32))
    main = next(b for b in make_scene("column", 5).bars if b.role == "main")
    x, y = main.polyline[0, :2]
    rays = np.array([[x * 3 + 0.5, y * 3 + 0.5, 5, 0, 0, -1],  # straight down onto ground
                     [x, y, 5, 0, 0, -1]], np.float32)  # down the axis of a main bar
    hit = rc.cast_rays(o3d.core.Tensor(rays))["primitive_ids"].numpy()
    assert mesh.labels[hit[1]] == 1
    assert len(to_open3d(mesh).triangles) == len(mesh.triangles)


def test_generate_writes_readable_reproducible_scenes(tmp_path):
    out = generate_scenes(tmp_path / "a", 2, seed=4, density=800.0, elements=["column", "slab"],
                          progress=False)
    manifest = json.loads((out / "manifest.json").read_text())
    drawn = [draw_scene(4, i, ["column", "slab"]) for i in range(2)]
    assert [(e["element"], e["scene_seed"]) for e in manifest["scene_list"]] == drawn
    for entry in manifest["scene_list"]:
        cloud = read_cloud(out / entry["file"])
        assert len(cloud) == entry["points"] > 1000
        counts = np.bincount(cloud.labels, minlength=3)
        assert {str(k): int(c) for k, c in enumerate(counts)} == entry["label_counts"]
        mesh = load_mesh(out / entry["mesh"])
        assert set(np.unique(mesh.labels)) <= {0, 1, 2} and len(mesh.labels) == len(mesh.triangles)
        assert make_scene(entry["element"], entry["scene_seed"]).params == entry["params"]
    again = generate_scenes(tmp_path / "b", 2, seed=4, density=800.0, elements=["column", "slab"],
                            progress=False)
    other = generate_scenes(tmp_path / "c", 2, seed=5, density=800.0, elements=["column", "slab"],
                            progress=False)
    for name in ("scene_0000.ply", "scene_0001.ply", "scene_0000_mesh.npz", "manifest.json"):
        assert (out / name).read_bytes() == (again / name).read_bytes()
        assert (out / name).read_bytes() != (other / name).read_bytes()
    assert not list(tmp_path.glob(".*tmp*"))  # temporary folder renamed away


def test_cages_command_matches_the_function(tmp_path, capsys):
    args = ["cages", "--out", str(tmp_path / "cli"), "--scenes", "2", "--seed", "1",
            "--density", "500", "--elements", "beam", "wall"]
    assert main(args) == 0
    ref = generate_scenes(tmp_path / "ref", 2, 1, 500.0, ["beam", "wall"], progress=False)
    manifest = json.loads((tmp_path / "cli" / "manifest.json").read_text())
    assert manifest["command"].startswith("python -m data_tools cages --out")
    for i in range(2):
        name = f"scene_{i:04d}.ply"
        assert (tmp_path / "cli" / name).read_bytes() == (ref / name).read_bytes()
    assert main(["cages", "--out", str(tmp_path / "bad"), "--scenes", "0"]) == 2
