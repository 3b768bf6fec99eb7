"""The README's "your own data" stories, end to end on tiny files written here.

3D: two IFC models (millimetres) and an unlabeled site cloud (millimetres, turned and moved)
-> `python -m data_tools site3d` -> a few DANN steps with no target labels -> `da predict`
-> `da view --screenshot`. Beside it: levelling of every element type under random
rotations, the unit check, a target test of ignore labels refused.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from da.cli import main as da_main
from da.config import load_config
from da.data import build_data
from da.run_log import read_results
from data_tools.__main__ import main as data_tools_main
from data_tools.io import PointCloud, read_cloud, write_cloud
from data_tools.levelling import level, parse_up, read_transform
from data_tools.prepare import transform_cloud
from data_tools.rebar.cages import ELEMENTS, make_scene
from data_tools.rebar.ifc import write_ifc
from data_tools.rebar.mesh import scene_to_mesh
from data_tools.rebar.sampling import sample_surface

REPO = Path(__file__).resolve().parent.parent
CONFIGS = [REPO / "experiments/configs/rebar3d.yaml", REPO / "experiments/configs/rebar3d_pointnet.yaml",
           REPO / "experiments/configs/rebar3d_dann.yaml"]
TINY = ["data.num_points=256", "data.voxel=0.02", "data.shape_radii=[0.04]", "model.local=[16,32]",
        "model.global_width=32", "model.fuse=[32,16]", "model.head_hidden=[16]", "train.steps=4",
        "train.batch_size=2", "train.eval_every=4", "train.checkpoint_every=4", "train.progress_bar=false",
        "train.embedding_samples=8"]


def site_cloud(element: str, seed: int, density: float = 1500.0) -> PointCloud:
    """A whole scene (cage, ground, formwork) sampled as a stand-in for a site cloud, metres, Z up."""
    return sample_surface(scene_to_mesh(make_scene(element, seed)), density, np.random.default_rng(seed))


def pose(seed: int) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3] = Rotation.random(random_state=seed).as_matrix()
    m[:3, 3] = np.random.default_rng(seed).uniform(-20, 20, 3)
    return m


def up_error_deg(levelling_transform: np.ndarray, applied: np.ndarray) -> float:
    up = (levelling_transform @ applied)[:3, :3] @ [0.0, 0.0, 1.0]
    return float(np.degrees(np.arccos(np.clip(up[2], -1, 1))))


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """Two IFC models in millimetres and one site cloud in millimetres, turned and moved."""
    root = tmp_path_factory.mktemp("site")
    for seed in (3, 4):
        write_ifc(make_scene("column", seed), root / "models" / f"column_{seed}.ifc", length_unit="mm",
                  include_context=True)
    cloud = site_cloud("column", 5)
    applied = pose(7)
    moved = transform_cloud(PointCloud(cloud.xyz.astype(np.float64), cloud.rgb), applied)
    write_cloud(root / "site" / "scan.ply", PointCloud((moved.xyz * 1000).astype(np.float64)))
    return root, applied, cloud


def test_3d_story_ifc_to_dataset_to_training_to_prediction(site, tmp_path, capsys):
    root, applied, truth = site
    out = tmp_path / "my_site"
    assert data_tools_main(["site3d", "--source", str(root / "models"), "--target", str(root / "site"),
                            "--units", "mm", "--density", "1500", "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "target_train: scan.ply" in said and "auto: up (" in said
    manifest = json.loads((out / "manifest.json").read_text())
    assert {k: len(v) for k, v in manifest["splits"].items()} == {"source_train": 1, "source_val": 1,
                                                                  "target_train": 1}
    prep = json.loads((out / "preparation.json").read_text())["target_train"][0]
    assert prep["scale"] == 0.001 and prep["warnings"] == []
    # the site cloud stands upright again: up within 3 degrees, ground within 2 cm
    transform = np.asarray(prep["levelling"]["transform"])
    assert up_error_deg(transform, applied) < 3.0
    levelled = read_cloud(out / "target_train" / "scene_0000.ply")
    assert levelled.labels is None  # unlabeled means unlabeled
    ground = (transform @ applied @ [*np.median(truth.xyz[:, :2], axis=0), 0.0, 1.0])[2]
    assert abs(ground) < 0.02

    # no target labels: trains, validates on source_val, shows target_train predictions, no NaN
    run_dir = tmp_path / "run"
    cfg = load_config(CONFIGS, [f"data.path={out}", f"data.root={tmp_path / 'data'}", *TINY, f"run_dir={run_dir}"])
    assert build_data(cfg.data).target_test is None
    assert da_main(["train", *map(str, CONFIGS), f"data.path={out}", f"data.root={tmp_path / 'data'}", *TINY,
                    f"run_dir={run_dir}"]) == 0
    final = read_results(run_dir)[-1]
    assert not any(k.startswith("target") for k in final) and "source_val_miou" in final
    assert all(np.isfinite(v) for k, v in final.items() if k.startswith("source_val_miou") and "_" not in k[15:])
    assert (run_dir / "predictions" / "target_train_0000.ply").is_file()
    assert da_main(["validate", str(run_dir), "--validator", "dev"]) == 0

    # predict the user's own file, in its own frame and units
    pred = tmp_path / "pred.ply"
    assert da_main(["predict", str(run_dir), str(root / "site" / "scan.ply"), "--units", "mm", "--out", str(pred)]) == 0
    back = read_cloud(pred)
    assert len(back) == len(read_cloud(root / "site" / "scan.ply")) and set(np.unique(back.labels)) <= {0, 1, 2}
    shot = tmp_path / "pred.png"
    assert da_main(["view", str(pred), "--screenshot", str(shot)]) == 0
    assert shot.stat().st_size > 1000


def ground_height(element: str, seed: int) -> float:
    """z of the scene's ground in the generator's frame: 0, but a footing's is its blinding."""
    return make_scene(element, seed).params["bounds"][0][2] if element == "footing" else 0.0


@pytest.mark.parametrize("element", sorted(ELEMENTS))
def test_auto_levelling_holds_for_every_element_type(element):
    """Up within 3 degrees and the ground within 2 cm, under random rotations and offsets."""
    cloud = site_cloud(element, 11, density=800.0)
    for seed in (1, 2):
        applied = pose(seed)
        _, rec = level(transform_cloud(PointCloud(cloud.xyz.astype(np.float64)), applied), "auto")
        assert up_error_deg(rec.transform, applied) < 3.0, rec.line()
        under = [*np.median(cloud.xyz[:, :2], axis=0), ground_height(element, 11), 1.0]
        assert abs((rec.transform @ applied @ under)[2]) < 0.02, rec.line()


def test_given_up_vector_and_transform_file(tmp_path):
    cloud = site_cloud("column", 12, density=800.0)
    applied = pose(3)
    moved = transform_cloud(PointCloud(cloud.xyz.astype(np.float64)), applied)
    up_in_cloud = applied[:3, :3] @ [0.0, 0.0, 1.0]
    _, rec = level(moved, ",".join(f"{v:.6f}" for v in up_in_cloud))
    assert rec.method == "up" and up_error_deg(rec.transform, applied) < 0.01
    (tmp_path / "m.txt").write_text("\n".join(" ".join(f"{v:.12f}" for v in row) for row in np.linalg.inv(applied)))
    back, rec = level(moved, transform=read_transform(tmp_path / "m.txt"))
    np.testing.assert_allclose(back.xyz, cloud.xyz, atol=1e-4)
    assert rec.method == "transform"
    (tmp_path / "bad.txt").write_text("1 0 0 0\n0 2 0 0\n0 0 1 0\n0 0 0 1\n")
    with pytest.raises(ValueError, match="not a rotation"):
        read_transform(tmp_path / "bad.txt")
    with pytest.raises(ValueError, match="axis"):
        parse_up("sideways")


def test_a_panel_larger_than_the_visible_ground_is_not_taken_for_it():
    """The old rule (the largest plane is the ground) fails here; the supported plane holds."""
    rng = np.random.default_rng(0)
    ground = np.c_[rng.uniform(-1, 1, (3000, 2)), rng.normal(0, 0.003, 3000)]
    panel = np.c_[np.full(6000, 0.9) + rng.normal(0, 0.003, 6000), rng.uniform(-1, 1, 6000), rng.uniform(0, 3, 6000)]
    post = np.c_[rng.normal(0, 0.01, (2000, 2)), rng.uniform(0, 3, 2000)]
    cloud = PointCloud(np.vstack([ground, panel, post]))
    _, rec = level(cloud, "auto")
    assert rec.up[2] > 0.999 and rec.plane_share < 0.3  # the ground, not the panel (55% of the points)


def test_unit_check_names_the_likely_unit(site, tmp_path, capsys):
    root, _, _ = site
    args = ["site3d", "--source", str(root / "models"), "--target", str(root / "site"), "--out", str(tmp_path / "d")]
    assert data_tools_main(args) == 2  # millimetres given as metres
    assert "millimetres (--units mm)" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()  # nothing half-written


def test_a_target_test_of_ignore_labels_is_refused(site, tmp_path, capsys):
    root, _, _ = site
    scan = read_cloud(root / "site" / "scan.ply")
    write_cloud(tmp_path / "test" / "t.ply", PointCloud(scan.xyz, labels=np.full(len(scan), 255)))
    assert data_tools_main(["site3d", "--source", str(root / "models"), "--target", str(root / "site"),
                            "--target-test", str(tmp_path / "test"), "--units", "mm", "--density", "500",
                            "--out", str(tmp_path / "d")]) == 2
    assert "every label is 255" in capsys.readouterr().err


# ---- 2D: labeled photos (COCO, RLE with a hole) and unlabeled photos of another site -----

def ring_mask(h: int, w: int) -> np.ndarray:
    """A square ring: a mask with a hole, which polygons cannot hold and RLE can."""
    m = np.zeros((h, w), np.uint8)
    m[8:40, 8:40] = 1
    m[16:32, 16:32] = 0
    return m


def uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO's uncompressed RLE: run lengths over the column-major pixels, starting with 0s."""
    flat = mask.T.ravel()
    change = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.r_[0, change, len(flat)]).tolist()
    return {"size": list(mask.shape), "counts": ([0] + runs) if flat[0] else runs}


def photo(rng: np.random.Generator, mask: np.ndarray, tint: float) -> np.ndarray:
    img = rng.integers(60, 120, (*mask.shape, 3)).astype(np.float64) * tint
    img[mask == 1] = [200, 40, 40]  # bars red: learnable in a few steps
    return img.clip(0, 255).astype(np.uint8)


def test_2d_story_coco_source_unlabeled_target_to_prediction(tmp_path, capsys):
    from PIL import Image

    from data_tools.segmentation_files import read_coco

    rng = np.random.default_rng(0)
    mask = ring_mask(48, 48)
    for split in ("train", "val", "test"):
        d = tmp_path / "labeled" / split
        (d / "images").mkdir(parents=True)
        images, anns = [], []
        for i in range(2):
            Image.fromarray(photo(rng, mask, 1.0)).save(d / "images" / f"{i}.png")
            images.append({"id": i, "file_name": f"{i}.png", "width": 48, "height": 48})
            anns.append({"id": i, "image_id": i, "category_id": 1, "iscrowd": 1,
                         "segmentation": uncompressed_rle(mask)})
        (d / "annotations.json").write_text(json.dumps(
            {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "main"}]}))
    (tmp_path / "site" / "train" / "images").mkdir(parents=True)
    for i in range(2):
        Image.fromarray(photo(rng, mask, 0.6)).save(tmp_path / "site" / "train" / "images" / f"{i}.jpg")
    # the hole survives the reader
    (_, read, _), *_ = read_coco(tmp_path / "labeled/train/annotations.json", tmp_path / "labeled/train/images",
                                 {"main": 1})
    assert read[24, 24] == 0 and read[10, 10] == 1

    run_dir = tmp_path / "run"
    args = ["train", str(REPO / "experiments/configs/seg_files.yaml"),
            str(REPO / "experiments/configs/rebar2d_dann_pixel.yaml"),
            f"data.path={tmp_path / 'labeled'}", "data.coco=true", "data.classes={main: 1}",
            f"data.target_path={tmp_path / 'site'}", "data.size=[64,64]", "data.crop=32",
            "algorithm.domain_rows=64", "algorithm.disc_hidden=[8]", "train.steps=3", "train.batch_size=2",
            "train.eval_every=3", "train.checkpoint_every=3", "train.progress_bar=false", f"run_dir={run_dir}"]
    assert da_main(args) == 0
    final = read_results(run_dir)[-1]
    assert "source_val_miou" in final and not any(k.startswith("target") for k in final)

    out = tmp_path / "pred"
    assert da_main(["predict", str(run_dir), str(tmp_path / "site" / "train" / "images"), "--out", str(out)]) == 0
    for i in range(2):
        pred = np.asarray(Image.open(out / f"{i}_mask.png"))
        assert pred.shape == (48, 48) and set(np.unique(pred)) <= {0, 1, 2}  # the photo's own size
        assert np.asarray(Image.open(out / f"{i}_overlay.png")).shape == (48, 48, 3)
    assert "wrote" in capsys.readouterr().out


# ---- transfer: a plain folder of class folders, two strategies compared in one command ----

def test_transfer_story_class_folder_split_and_strategies(tmp_path, capsys):
    from PIL import Image

    from da.data.images import split_class_folder

    rng = np.random.default_rng(0)
    for k, colour in enumerate(([200, 40, 40], [40, 40, 200])):
        d = tmp_path / "photos" / f"class_{k}"
        d.mkdir(parents=True)
        for i in range(10):
            img = rng.integers(0, 60, (40, 40, 3)) + np.array(colour) // 2
            Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(d / f"{i}.png")
    a = split_class_folder(tmp_path / "photos", [0.6, 0.2, 0.2], seed=0)
    b = split_class_folder(tmp_path / "photos", [0.6, 0.2, 0.2], seed=0)
    assert a == b and {s: len(v[0]) for s, v in a.items()} == {"train": 12, "val": 4, "test": 4}
    assert not set(a["train"][0]) & set(a["test"][0])  # disjoint
    assert split_class_folder(tmp_path / "photos", [0.6, 0.2, 0.2], seed=1)["test"][0] != a["test"][0]

    out = tmp_path / "results"
    table = str(REPO / "experiments/tables/transfer_own.yaml")
    base = ["reproduce", table, "--profile", "quick", "--runs", str(tmp_path / "runs"), "--out", str(out)]
    assert da_main(base) == 2  # data.path is required: said, not a crash
    assert "needs data.path=" in capsys.readouterr().err
    assert da_main([*base, f"data.path={tmp_path / 'photos'}", "--rows", "scratch", "feature_extractor"]) == 0
    said = capsys.readouterr().out
    assert "split per class 70/15/15%" in said
    result = json.loads((out / "transfer_own.quick.subset.json").read_text())
    assert [r["name"] for r in result["rows"]] == ["scratch", "feature_extractor"]
