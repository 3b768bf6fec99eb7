"""The split 3D dataset (data_tools.target_dataset, ``python -m data_tools rebar3d``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from da.config import ConfigError, load_config
from da.data import build_data
from data_tools.__main__ import main
from data_tools.artefact_model import ArtefactParams
from data_tools.artefact_ranges import RANDOMISED, RANGES, ranges_record
from data_tools.io import read_cloud
from data_tools.splits import DatasetFileError
from data_tools.target_dataset import (
    SPLITS,
    build_rebar3d,
    capture_ring,
    draw_split_scenes,
    randomised_is_current,
    scene_artefact_params,
    simulated_source_dir,
    simulation_record,
    split_sizes,
)
from tests.conftest import TINY_REBAR3D_CONFIGS as CONFIGS
from tests.conftest import tiny_rebar3d_overrides

SMALL = (320, 240)  # fast mode at small images: a scene in well under a second


def _ply_header(path: Path) -> str:
    data = path.read_bytes()
    return data[: data.index(b"end_header")].decode("ascii")


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.suffix in (".ply", ".npy")}


@pytest.fixture(scope="module")
def fast_ds(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("r3d") / "fast"
    return build_rebar3d(out, scenes=6, mode="fast", preset="typical", seed=3, density=5000,
                         progress=False, image_size=SMALL, n_views=6)


def test_split_sizes_rule():
    assert split_sizes(4) == {"source_train": 1, "source_val": 1, "target_train": 1, "target_test": 1}
    assert split_sizes(60) == {"source_train": 21, "source_val": 6, "target_train": 21, "target_test": 12}
    for n in range(4, 80):
        sizes = split_sizes(n)
        assert sum(sizes.values()) == n and min(sizes.values()) >= 1
        # the oracle trains on as many cages as the source rows (one fewer when odd)
        assert 0 <= sizes["source_train"] - sizes["target_train"] <= 1
    with pytest.raises(ValueError, match="scenes >= 4"):
        split_sizes(3)


def test_element_types_are_stratified_in_every_split():
    from data_tools.rebar.cages import ELEMENTS

    elements = list(ELEMENTS)
    for seed in range(5):
        drawn = draw_split_scenes(seed, split_sizes(60), elements)
        for split, scenes in drawn.items():
            counts = np.array([sum(e == el for e, _ in scenes) for el in elements])
            assert counts.max() - counts.min() <= 1, (seed, split, counts)
        assert all(el in {e for e, _ in drawn["source_val"]} for el in elements)
        seeds = [s for scenes in drawn.values() for _, s in scenes]
        assert len(set(seeds)) == len(seeds)  # no cage in two splits
    # other seeds, other orders: stratification does not fix the element of a slot
    firsts = {draw_split_scenes(seed, split_sizes(60), elements)["source_val"][0][0]
              for seed in range(12)}
    assert len(firsts) > 1


def test_capture_preset_moves_the_ring_or_only_the_light():
    from data_tools.photogrammetry import RECONSTRUCTION_PRESETS

    typical = RECONSTRUCTION_PRESETS["typical"]
    assert capture_ring(typical, "evening") == typical  # light only
    far = capture_ring(typical, "far_high")
    assert (far.distance, far.camera_height, far.n_views) == (4.0, 2.5, 18)
    assert far.sgbm == typical.sgbm and far.rotation_noise_deg == typical.rotation_noise_deg
    small = capture_ring(typical.at_size(480, 360), "far_high")  # same field of view
    assert small.focal_px == pytest.approx(1100.0 / 2)
    with pytest.raises(ValueError, match="unknown capture preset"):
        build_rebar3d("unused", scenes=4, mode="fast", preset="typical", seed=0, capture="dusk")
    with pytest.raises(ValueError, match="workers"):
        build_rebar3d("unused", scenes=4, mode="fast", preset="typical", seed=0, workers=0)


def test_layout_manifest_and_labels(fast_ds):
    manifest = json.loads((fast_ds / "manifest.json").read_text())
    assert manifest["split_sizes"] == split_sizes(6)
    assert manifest["mode"] == "fast" and manifest["preset"] == "typical"
    for split in SPLITS:
        plys = sorted((fast_ds / split).glob("*.ply"))
        assert len(plys) == manifest["split_sizes"][split] == len(manifest["splits"][split])
        for entry, ply in zip(manifest["splits"][split], plys):
            assert entry["file"] == ply.name
            cloud = read_cloud(ply)
            assert len(cloud) == entry["points"] > 100
            if split.startswith("source"):
                assert cloud.labels is not None and "property int label" in _ply_header(ply)
                assert set(np.unique(cloud.labels)) <= {0, 1, 2}
                assert {str(k): int(c) for k, c in zip(*np.unique(cloud.labels, return_counts=True))} \
                    == entry["label_counts"]
            else:  # target files carry no labels at all
                assert cloud.labels is None
                assert "label" not in _ply_header(ply)
                assert cloud.rgb is not None
                lo, hi = (np.array(b) for b in entry["bounds"])  # cropped to bounds + margin
                assert np.all(cloud.xyz >= lo - 0.3 - 1e-5) and np.all(cloud.xyz <= hi + 0.3 + 1e-5)
    assert not list((fast_ds / "target_train").glob("*labels*"))
    assert "label_counts" not in manifest["splits"]["target_train"][0]
    for entry in manifest["splits"]["target_train"]:  # the oracle's labels live apart
        oracle = np.load(fast_ds / "oracle_labels" / f"scene_{entry['index']:04d}_labels.npy")
        assert len(oracle) == entry["points"] and set(np.unique(oracle)) <= {0, 1, 2, 255}
    for entry in manifest["splits"]["target_test"]:
        labels = np.load(fast_ds / "target_test" / entry["labels_file"])
        assert len(labels) == entry["points"]
        assert set(np.unique(labels)) <= {0, 1, 2, 255}
        assert np.isin(labels, (1, 2)).sum() > 50  # the cage's bars were reconstructed
        assert sum(entry["label_counts"].values()) == len(labels)


def test_splits_use_different_cages(fast_ds):
    manifest = json.loads((fast_ds / "manifest.json").read_text())
    seeds = [e["scene_seed"] for split in SPLITS for e in manifest["splits"][split]]
    assert len(seeds) == 6 and len(set(seeds)) == len(seeds)


def _entries_without_times(folder: Path) -> dict:
    splits = json.loads((folder / "manifest.json").read_text())["splits"]
    return {split: [{k: v for k, v in e.items() if not k.endswith("seconds")} for e in entries]
            for split, entries in splits.items()}


def test_same_arguments_same_files_other_seed_other_files(fast_ds, tmp_path):
    # built again in two processes: the same files and manifest entries as the one-process build
    again = build_rebar3d(tmp_path / "again", scenes=6, mode="fast", preset="typical", seed=3,
                          density=5000, progress=False, image_size=SMALL, n_views=6, workers=2)
    a, b = _files(fast_ds), _files(again)
    assert len(a) == 9 and a.keys() == b.keys()  # 6 clouds, 2 oracle + 1 test label files
    assert all(a[k] == b[k] for k in a)
    assert _entries_without_times(fast_ds) == _entries_without_times(again)
    other = _files(build_rebar3d(tmp_path / "other", scenes=6, mode="fast", preset="typical",
                                 seed=4, density=5000, progress=False, image_size=SMALL, n_views=6))
    assert all(a[k] != other[k] for k in a if k.endswith(".ply"))
    assert not list(tmp_path.glob(".*tmp*"))  # the temp folder was renamed, none left over


def test_similarity_is_recorded_and_invertible(fast_ds, tmp_path):
    out = build_rebar3d(tmp_path / "sim", scenes=6, mode="fast", preset="typical", seed=3,
                        density=5000, progress=False, image_size=SMALL, n_views=6, similarity=True)
    entry = json.loads((out / "manifest.json").read_text())["splits"]["target_test"][0]
    sim = entry["similarity"]
    moved = read_cloud(out / "target_test" / entry["file"]).xyz.astype(np.float64)
    plain = read_cloud(fast_ds / "target_test" / entry["file"]).xyz.astype(np.float64)
    undone = ((moved - sim["translation"]) @ np.array(sim["rotation"])) / sim["scale"]
    assert np.abs(moved - plain).max() > 0.1
    assert np.abs(undone - plain).max() < 1e-3 * max(1.0, 1 / sim["scale"])
    # labels are computed in the true frame: identical with and without the transform
    assert (np.load(out / "target_test" / entry["labels_file"])
            == np.load(fast_ds / "target_test" / entry["labels_file"])).all()


def test_mvs_mode_small(tmp_path):
    out = build_rebar3d(tmp_path / "mvs", scenes=4, mode="mvs", preset="typical", seed=0,
                        density=2000, progress=False, image_size=(320, 240), n_views=3,
                        elements=["slab"])
    manifest = json.loads((out / "manifest.json").read_text())
    for split in ("target_train", "target_test"):
        entry = manifest["splits"][split][0]
        cloud = read_cloud(out / split / entry["file"])
        assert cloud.labels is None and len(cloud) > 1000
        assert entry["matching_seconds"] > 0
    labels = np.load(out / "target_test" / "scene_0000_labels.npy")
    assert len(labels) == len(read_cloud(out / "target_test" / "scene_0000.ply"))
    assert (labels != 255).mean() > 0.5  # mostly on a surface: the matcher worked


def test_cli_in_process(tmp_path, capsys):
    out = tmp_path / "cli"
    rc = main(["rebar3d", "--out", str(out), "--scenes", "4", "--mode", "fast", "--preset", "mild",
               "--seed", "1", "--density", "3000", "--image-size", "96", "72", "--views", "4",
               "--no-progress"])
    assert rc == 0
    assert "source_train 1, source_val 1, target_train 1, target_test 1" in capsys.readouterr().out
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["preset"] == "mild" and manifest["image_size"] == [96, 72]
    assert manifest["command"].startswith("python -m data_tools rebar3d --out")
    assert manifest["capture"] == "noon"
    # --capture far_high moves the camera ring (the fast model's colours are the materials',
    # so light-only presets change mvs clouds but not fast ones): 18 views from 4 m
    far = tmp_path / "far"
    assert main(["rebar3d", "--out", str(far), "--scenes", "4", "--mode", "fast",
                 "--preset", "mild", "--capture", "far_high", "--seed", "1", "--density", "3000",
                 "--image-size", "96", "72", "--no-progress"]) == 0
    far_manifest = json.loads((far / "manifest.json").read_text())
    assert far_manifest["capture"] == "far_high" and far_manifest["n_views"] == 18
    assert far_manifest["reconstruction_preset"]["distance"] == 4.0
    assert "--capture far_high" in far_manifest["command"]
    near_cloud = read_cloud(out / "target_test" / "scene_0000.ply")
    far_cloud = read_cloud(far / "target_test" / "scene_0000.ply")
    assert len(near_cloud) != len(far_cloud)


def test_simulated_source_manifests_mark_the_calibrated_presets():
    assert simulation_record("typical")["target_calibrated"] is True
    assert "CALIBRATED" in simulation_record("harsh")["what"]
    assert simulation_record("mild")["target_calibrated"] is False  # hand-set
    assert simulation_record(RANDOMISED)["target_calibrated"] is False


def test_randomised_simulation_draws_each_scene_its_own_parameters(fast_ds, tmp_path):
    ds = tmp_path / "ds"
    shutil.copytree(fast_ds, ds)  # fast_ds is shared, and other tests list its files
    data = build_data(load_config(CONFIGS, tiny_rebar3d_overrides(ds, tmp_path, "b", "data.simulated_source=randomised")).data)
    sim = simulated_source_dir(ds, RANDOMISED)
    assert sim.name == "simulated_source-fast-randomised"
    manifest = json.loads((sim / "manifest.json").read_text())
    assert manifest["target_calibrated"] is False and manifest["artefact_ranges"] == ranges_record()
    assert "NO target-domain calibration" in manifest["what"]
    dataset = json.loads((ds / "manifest.json").read_text())
    entries = manifest["splits"][sim.name]
    assert [e["scene_seed"] for e in entries] == [e["scene_seed"] for e in dataset["splits"]["source_train"]]
    assert len(entries) == 2
    for e in entries:
        drawn = e["artefact_params"]  # the whole parameter set, per scene
        assert all(r.lo <= drawn[name] <= r.hi for name, r in RANGES.items())
        assert ArtefactParams(**drawn) == scene_artefact_params(RANDOMISED, dataset["seed"], e["index"])
        cloud = read_cloud(sim / e["file"])
        assert len(cloud) == e["points"] > 100 and set(np.unique(cloud.labels)) <= {0, 1, 2, 255}
    a, b = (e["artefact_params"] for e in entries)
    assert all(a[n] != b[n] for n, r in RANGES.items() if not r.integer)  # scenes differ
    assert len(data.source_train.scenes) == 2 * len(entries)  # source_train + simulated
    assert randomised_is_current(ds)
    # scenes drawn from other ranges are refused, not used unnoticed
    manifest["artefact_ranges"]["keep_main"]["hi"] = 0.9
    (sim / "manifest.json").write_text(json.dumps(manifest))
    assert not randomised_is_current(ds)
    with pytest.raises(DatasetFileError, match="other ranges"):
        build_data(load_config(CONFIGS, tiny_rebar3d_overrides(ds, tmp_path, "c", "data.simulated_source=randomised")).data)
    with pytest.raises(ConfigError, match="simulated_source"):
        load_config(CONFIGS, tiny_rebar3d_overrides(ds, tmp_path, "d", "data.simulated_source=randomised",
                                    "data.target_labeled=true"))


@pytest.mark.parametrize("args, message", [
    (["--preset", "extreme"], "unknown preset 'extreme'"),
    (["--scenes", "3"], "scenes >= 4"),
    (["--mode", "colmap"], "unknown mode 'colmap'"),
    (["--views", "1"], "at least 2 views"),
])
def test_cli_bad_arguments(tmp_path, capsys, args, message):
    out = tmp_path / "bad"
    rc = main(["rebar3d", "--out", str(out), "--no-progress", *args])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and message in err
    assert not out.exists() and not list(tmp_path.glob(".*"))
