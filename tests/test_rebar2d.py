"""2D rebar data: masks agree with the geometry, domain factors change only what they name."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from data_tools import render
from data_tools.__main__ import main
from data_tools.rebar.cages import make_scene
from data_tools.rebar.mesh import scene_to_mesh
from data_tools.rebar2d import (
    POSITIONS,
    TIMES,
    appearance_for,
    camera_for,
    parse_domain,
    render_sample,
)


def test_bar_pixels_carry_the_bars_label():
    """Project rebar triangle centres: where they are visible, the mask names their class."""
    scene = make_scene("column", 3)
    mesh = render.extend_ground(scene_to_mesh(scene))
    lo, hi = (np.asarray(b, float) for b in scene.params["bounds"])
    rng = np.random.default_rng(0)
    cam = camera_for(POSITIONS["close"], lo, hi, (256, 256), rng)
    r = render.render(mesh, cam, appearance_for(TIMES["noon"], rng, 0), rng)
    checked = {1: 0, 2: 0}
    for label in (1, 2):
        tris = mesh.triangles[mesh.labels == label]
        centres = mesh.vertices[tris].mean(1)
        uv, z = cam.project(centres)
        u, v = np.round(uv).astype(int).T
        inside = (z > 0) & (u >= 0) & (u < 256) & (v >= 0) & (v < 256)
        u, v, z = u[inside], v[inside], z[inside]
        visible = np.abs(r.depth[v, u] - z) < 0.002  # the ray at that pixel hits this surface
        assert visible.sum() > 20
        mask = np.where(r.label == render.NO_LABEL, 0, r.label)
        assert (mask[v[visible], u[visible]] == label).mean() > 0.9
        checked[label] = int(visible.sum())
    assert checked[1] > 0 and checked[2] > 0


def _sample(domain: str, seed: int = 1):
    return render_sample(parse_domain(domain), np.random.default_rng(seed), (128, 128), 1)[0]


def test_each_domain_factor_changes_what_it_should_and_nothing_else():
    img, mask, info = _sample("column/noon/close")
    # time: the same cage from the same camera (identical mask), another light
    img_t, mask_t, info_t = _sample("column/evening_wet/close")
    assert np.array_equal(mask, mask_t) and info_t["cage_seed"] == info["cage_seed"]
    assert img_t.mean() < 0.8 * img.mean()  # evening, wet, under-exposed: darker
    # position: the same cage and light, another camera (other mask, other focal length)
    img_p, mask_p, info_p = _sample("column/noon/far_high")
    assert info_p["cage_seed"] == info["cage_seed"] and info_p["hour"] == info["hour"]
    assert not np.array_equal(mask, mask_p) and info_p["focal_px"] != info["focal_px"]
    assert (mask_p > 0).mean() < (mask > 0).mean()  # farther away: the cage covers less
    # assembly: another kind of cage
    _, _, info_a = _sample("slab/noon/close")
    assert info_a["element"] == "slab" and info["element"] == "column"


def test_wet_steel_is_darker_and_dry_renders_are_unchanged():
    scene = make_scene("wall", 0)
    mesh = render.extend_ground(scene_to_mesh(scene))
    lo, hi = (np.asarray(b, float) for b in scene.params["bounds"])
    cam = camera_for(POSITIONS["close"], lo, hi, (96, 96), np.random.default_rng(0))
    dry = render.render(mesh, cam, render.Appearance(noise_std=0), np.random.default_rng(0))
    wet = render.render(mesh, cam, render.Appearance(noise_std=0, wet=1.0), np.random.default_rng(0))
    steel = dry.label == 1
    assert wet.rgb[steel].mean() < 0.8 * dry.rgb[steel].mean()
    zero = render.render(mesh, cam, render.Appearance(noise_std=0, wet=0.0), np.random.default_rng(0))
    assert np.array_equal(zero.rgb, dry.rgb)


def test_cli_writes_splits_without_target_train_masks(tmp_path):
    out = tmp_path / "r2d"
    assert main(["rebar2d", "--out", str(out), "--shift", "time", "--images", "2", "1", "2", "1",
                 "--size", "96", "80", "--views", "2", "--no-progress"]) == 0
    m = json.loads((out / "manifest.json").read_text())
    assert m["source"]["name"] == "slab+wall/noon/close" and m["target"]["name"] == "slab+wall/evening_wet/close"
    for split, n in (("source_train", 2), ("source_val", 1), ("target_test", 1)):
        assert len(list((out / split / "images").glob("*.png"))) == n
        mask = np.asarray(Image.open(out / split / "masks" / "00000.png"))
        assert mask.shape == (80, 96) and set(np.unique(mask)) <= {0, 1, 2}
    assert not (out / "target_train" / "masks").exists()  # no labels beside the unlabeled images
    assert len(list((out / "oracle_labels" / "target_train").glob("*.png"))) == 2
    cages = {s: {r["cage_seed"] for r in m["splits"][s]["images_info"]} for s in m["splits"]}
    assert not (cages["source_train"] & cages["source_val"])
    assert main(["rebar2d", "--out", str(tmp_path / "bad"), "--source", "slab/noon/nowhere",
                 "--target", "slab/noon/close"]) == 2


def test_bad_domain_names_give_clear_errors():
    with pytest.raises(ValueError, match="ASSEMBLY/TIME/POSITION"):
        parse_domain("slab")
    with pytest.raises(ValueError, match="unknown assembly"):
        parse_domain("bridge/noon/close")
    with pytest.raises(ValueError, match="unknown time"):
        parse_domain("slab/midnight/close")
