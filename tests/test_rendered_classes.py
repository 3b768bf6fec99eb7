"""Rendered classification tasks: ImageFolder layout, labels that match the cages, seeds."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from da.config import load_config
from da.data import build_data
from data_tools.rebar.cages import make_scene
from data_tools.rendered_classes import TASKS, build_rendered_classes, spacing_class


def test_element_task_folder_reads_back(tmp_path):
    out = build_rendered_classes(tmp_path / "el", "element", {"train": 2, "val": 1, "test": 1},
                                 size=32, views=2, progress=False)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["classes"] == list(TASKS["element"])
    for split, n in (("train", 2), ("val", 1), ("test", 1)):
        for label in TASKS["element"]:
            files = sorted((out / split / label).glob("*.png"))
            assert len(files) == n
            img = np.asarray(Image.open(files[0]))
            assert img.shape == (32, 32, 3) and img.std() > 5  # a picture, not a flat fill
    data = build_data(load_config(None, ["data.name=image_folder", f"data.path={out}",
                                         "data.image_size=32"]).data)
    assert data.num_classes == 5 and len(data.source_train) == 10
    again = build_rendered_classes(tmp_path / "el2", "element", {"train": 2, "val": 1, "test": 1},
                                   size=32, views=2, progress=False)
    first = out / "train" / "wall" / "00000_0.png"
    assert np.array_equal(np.asarray(Image.open(first)), np.asarray(Image.open(again / "train/wall/00000_0.png")))


def test_spacing_labels_follow_the_cage_parameters(tmp_path):
    for seed in range(40):
        scene = make_scene("wall", seed)
        s = scene.params["s_vert"]
        assert spacing_class(scene) == ("dense" if s <= 0.11 else "medium" if s <= 0.17 else "wide")
    assert spacing_class(make_scene("column", 0)) is None  # no grid spacing
    with pytest.raises(ValueError, match="unknown task"):
        build_rendered_classes(tmp_path / "x", "colour", {"train": 1})
    with pytest.raises(ValueError, match="unknown light presets"):
        build_rendered_classes(tmp_path / "x", "element", {"train": 1}, lights=("disco",))


def test_rendered_dataset_entry_builds_once_and_reads(tmp_path):
    over = ["data.name=rendered_classes", f"data.root={tmp_path}", "data.task=spacing", "data.train_images=2",
            "data.val_images=1", "data.test_images=1", "data.render_size=32", "data.image_size=32",
            "data.views=2"]
    data = build_data(load_config(None, over).data)
    assert data.num_classes == 3 and len(data.source_train) == 6 and len(data.target_test) == 3
    folders = list(tmp_path.glob("rendered-spacing-*"))
    assert len(folders) == 1
    stamp = (folders[0] / "manifest.json").stat().st_mtime_ns
    build_data(load_config(None, over).data)  # reused, not rendered again
    assert (folders[0] / "manifest.json").stat().st_mtime_ns == stamp


def test_digits_m_folder_has_disjoint_digits_per_split(tmp_path):
    from data_tools.digits import build_digits_m_folder

    out = build_digits_m_folder(tmp_path / "dm", {"train": 3, "val": 2, "test": 2}, image_size=32)
    names = {split: {p.name for p in (out / split).rglob("*.png")} for split in ("train", "val", "test")}
    assert [len(v) for v in names.values()] == [30, 20, 20]
    assert not (names["train"] & names["val"]) and not (names["train"] & names["test"])
    data = build_data(load_config(None, ["data.name=image_folder", f"data.path={out}", "data.image_size=32"]).data)
    assert data.num_classes == 10
    with pytest.raises(ValueError, match="fewer than"):
        build_digits_m_folder(tmp_path / "too_many", {"train": 200})


def test_digits_m_train_blends_multiply_only_the_train_split(tmp_path):
    from data_tools.digits import build_digits_m_folder

    out = build_digits_m_folder(tmp_path / "dm", {"train": 3, "val": 2, "test": 2}, image_size=16, train_blends=2)
    train = sorted(p.name for p in (out / "train" / "4").glob("*.png"))
    assert len(train) == 6 and len(list((out / "val" / "4").glob("*.png"))) == 2
    digits = {n.split("_")[0] for n in train}
    assert len(digits) == 3 and all(sum(n.startswith(d) for n in train) == 2 for d in digits)
    a, b = (np.asarray(Image.open(out / "train" / "4" / f"{next(iter(sorted(digits)))}_{i}.png")) for i in (0, 1))
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 5  # another photo behind the same digit


def test_rendered_task_with_target_lights_is_a_domain_pair(tmp_path):
    over = ["data.name=rendered_classes", f"data.root={tmp_path}", "data.task=spacing", "data.train_images=2",
            "data.val_images=1", "data.test_images=1", "data.render_size=24", "data.image_size=24",
            "data.views=2", "data.target_lights=[evening]", "data.target_train_images=2",
            "data.target_test_images=2"]
    data = build_data(load_config(None, over).data)
    assert len(data.source_train) == 6 and len(data.target_train) == 6 and len(data.target_test) == 6
    assert data.target_train.y is None  # the target stays unlabeled
    manifests = [json.loads((f / "manifest.json").read_text()) for f in sorted(tmp_path.glob("rendered-spacing-*"))]
    assert sorted(m["lights"] for m in manifests) == [["evening"], ["noon", "overcast", "morning"]]
    assert {m["seed"] for m in manifests} == {0, 1000}  # other cages in the target domain
    # the evening preset is darker: the domains differ in what the light changes
    assert data.target_test.x.float().mean() < data.source_train.x.float().mean()
    with pytest.raises(ValueError, match="target_lights"):
        build_data(load_config(None, over + [f"data.target_path={tmp_path}"]).data)


def test_spacing_cages_alternate_walls_and_slabs_and_views_are_closeups():
    from data_tools.rendered_classes import closeup_camera, draw_cage

    rng = np.random.default_rng(0)
    for label in TASKS["spacing"]:
        kinds = []
        for i in range(4):
            scene, _ = draw_cage("spacing", label, rng, i)
            assert spacing_class(scene) == label
            kinds.append("wall" if "s_vert" in scene.params else "slab")
        assert kinds == ["wall", "slab", "wall", "slab"]  # the element type cannot give the label away
    wall_lo, wall_hi = np.array([0.0, -0.125, 0.0]), np.array([3.4, 0.125, 1.7])
    slab_lo, slab_hi = np.array([0.0, 0.0, 0.0]), np.array([2.9, 1.7, 0.25])
    for _ in range(10):
        for lo, hi, facing in ((wall_lo, wall_hi, 1), (slab_lo, slab_hi, 2)):
            cam = closeup_camera(lo, hi, 64, rng)
            offset = cam.center - 0.5 * (lo + hi)
            distance = np.linalg.norm(offset)
            # a wall is seen square on its broad side (its normal is y), a slab from above
            assert abs(offset[facing]) > 0.6 * distance
            assert 1.3 <= distance <= 2.0 + 1e-9
            frame = 64 * distance / cam.fx  # metres of grid across the image
            assert 1.1 - 1e-9 <= frame <= 1.3 + 1e-9
