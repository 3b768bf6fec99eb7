"""The 3D rebar experiment's data, evaluation, DANN levels, training and `da predict`."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from da.algorithms import build_algorithm
from da.cli import main as da_main
from da.config import load_config
from da.config_schema import ConfigError
from da.data import build_data
from da.data.blocks import SceneDataset, prepare_scene
from da.models import build_model
from da.predict import predict_file
from da.tasks import TASKS
from da.train import train
from data_tools.io import PointCloud, read_cloud, write_cloud
from data_tools.prepare import rotation_to_z
from data_tools.splits import DatasetFileError
from data_tools.target_dataset import build_rebar3d
from data_tools.viz import label_colors

REPO = Path(__file__).resolve().parent.parent
CONFIGS = [REPO / "experiments/configs/rebar3d.yaml", REPO / "experiments/configs/rebar3d_pointnet.yaml"]
DANN = [REPO / "experiments/configs/rebar3d_dann.yaml"]


@pytest.fixture(scope="module")
def r3d(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("rebar3d") / "ds"
    return build_rebar3d(out, scenes=5, mode="fast", preset="typical", seed=1, density=4000,
                         progress=False, image_size=(256, 192), n_views=5, elements=["column", "beam"])


def _small(folder: Path, tmp: Path, *extra: str) -> list[str]:
    return [f"data.path={folder}", f"data.root={tmp}", "data.num_points=256", "data.voxel=0.02",
            "model.local=[16,32]", "model.global_width=32", "model.fuse=[32,16]",
            "model.head_hidden=[16]", "train.progress_bar=false",
            "train.embedding_samples=0", f"run_dir={tmp / 'run'}", *extra]


def test_blocks_shapes_and_unlabeled_target(r3d, tmp_path):
    cfg = load_config(CONFIGS, _small(r3d, tmp_path))
    data = build_data(cfg.data)
    keys = [(i, 5) for i in range(4)]
    src, tgt = data.source_train.__getitems__(keys), data.target_train.__getitems__(keys)
    # the default inputs: xyz + 7 local-shape features at each of 4 radii
    assert src["coord"].shape == (4, 256, 3) and src["feat"].shape == (4, 256, 28)
    assert data.input_shape == (31,) and torch.isfinite(src["feat"]).all()
    assert set(torch.unique(src["label"]).tolist()) <= {0, 1, 2, 255}
    assert "label" not in tgt  # target_train has no labels, not even placeholders
    again = data.source_train.__getitems__(keys)  # same batch seed -> same batch (resume)
    assert torch.equal(again["coord"], src["coord"]) and torch.equal(again["label"], src["label"])
    other = data.source_train.__getitems__([(i, 6) for i in range(4)])
    assert not torch.equal(other["coord"], src["coord"])
    # xy centred on the column, z absolute: |x|, |y| <= ~0.5 * (1 + scale) + rotation
    assert src["coord"][..., :2].abs().max() <= 0.5 * 1.1 * 2**0.5 + 0.01
    w = data.class_weights  # inverse sqrt frequency: rarer class, larger weight
    labels = np.concatenate([sc.labels for sc in data.source_train.scenes])
    counts = np.bincount(labels[labels != 255], minlength=3)
    assert (np.argsort(-w.numpy()) == np.argsort(counts)).all() and w.min() > 0
    colour = build_data(load_config(CONFIGS, _small(r3d, tmp_path, "data.colour=true")).data)
    batch = colour.target_train.__getitems__(keys)
    assert batch["feat"].shape == (4, 256, 31) and batch["feat"][..., :3].abs().max() <= 0.5


def test_oracle_reads_target_train_labels_from_oracle_folder(r3d, tmp_path):
    data = build_data(load_config(CONFIGS, _small(r3d, tmp_path, "data.target_labeled=true")).data)
    assert "oracle_labels" not in str(data.source_train.scenes[0].name)
    assert "target_train" in data.source_train.scenes[0].name
    assert "label" in data.source_train.__getitems__([(0, 0)])


def test_bad_label_file_names_the_file(r3d, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(r3d, broken, ignore=shutil.ignore_patterns("prepared-*"))
    labels = broken / "target_test" / "scene_0000_labels.npy"
    np.save(labels, np.zeros(3, np.uint8))
    with pytest.raises(DatasetFileError, match="scene_0000_labels.npy"):
        build_data(load_config(CONFIGS, _small(broken, tmp_path)).data)
    labels.unlink()
    with pytest.raises(DatasetFileError, match="label file missing"):
        build_data(load_config(CONFIGS, _small(broken, tmp_path)).data)


class _HeightRule(torch.nn.Module):
    """A fake algorithm: class 1 above z = 0.5 block units, else 0 (no learning)."""

    num_features = 1

    def features(self, batch):
        return batch["coord"][..., 2:3].transpose(1, 2)

    def head(self, f):  # Algorithm.head: where every evaluation path takes logits from
        return torch.cat([torch.zeros_like(f), (f - 0.5) * 100, torch.full_like(f, -1e3)], dim=1)


def test_whole_scene_voting_reaches_every_original_point():
    rng = np.random.default_rng(0)
    xyz = rng.uniform([0, 0, 0], [2.5, 1.5, 1.0], (6000, 3)).astype(np.float32)
    truth = (xyz[:, 2] > 0.5).astype(np.int64)
    truth[:100] = 255  # ignored points are never counted
    scene = prepare_scene("synthetic", PointCloud(xyz, labels=truth), voxel=0.05)
    data = SceneDataset([scene], block_size=1.0, num_points=128, colour=False, num_classes=3)
    task = TASKS["segmentation3d"]
    pred = task.evaluate(_HeightRule(), data, torch.device("cpu"))
    cm = pred.confusion
    assert int(cm.sum()) == 5900  # every labeled ORIGINAL point, not the voxels
    assert np.isclose(pred.confusion.trace().item() / 5900, 1.0, atol=0.02)  # voxel-boundary points only
    flipped = task.evaluate(_HeightRule(), SceneDataset(
        [prepare_scene("s", PointCloud(xyz, labels=1 - np.clip(truth, 0, 1)), 0.05)], 1.0, 128, False, 3),
        torch.device("cpu"))
    assert flipped.confusion.trace().item() / flipped.confusion.sum().item() < 0.05


@pytest.mark.parametrize("level", ["dense", "global", "both"])
def test_dann_levels_on_points(level, r3d, tmp_path):
    cfg = load_config(CONFIGS + DANN, _small(r3d, tmp_path, f"algorithm.domain_level={level}",
                                             "algorithm.domain_rows=100", "algorithm.disc_hidden=[16]"))
    data = build_data(cfg.data)
    parts = build_model(cfg.model, data)
    alg = build_algorithm(cfg.algorithm, parts.feature_extractor, parts.task_head)
    keys = [(i, 0) for i in range(3)]
    losses = alg.losses(data.source_train.__getitems__(keys), data.target_train.__getitems__(keys), 0.5)
    assert ("domain_dense" in losses) == (level in ("dense", "both"))
    assert ("domain_global" in losses) == (level in ("global", "both"))
    losses["total"].backward()
    for adversary in (alg.domain_loss, alg.global_domain_loss):
        if adversary is not None:  # every configured classifier learns
            assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in adversary.parameters())


def test_train_resume_predict_end_to_end(r3d, tmp_path):
    over = _small(r3d, tmp_path, "train.steps=6", "train.batch_size=2", "train.eval_every=3", "train.checkpoint_every=3",
                  "train.log_every=3", "algorithm.domain_level=both", "algorithm.domain_rows=64",
                  "algorithm.disc_hidden=[16]")
    cfg = load_config(CONFIGS + DANN, over)
    from da.train import Trainer

    Trainer(cfg).fit(stop_after=4)  # killed after step 4: resumes from the step-3 checkpoint
    run_dir = train(cfg)
    assert (run_dir / "done").exists()
    assert (run_dir / "predictions" / "target_test_0000.ply").is_file()
    truth = np.load(run_dir / "predictions" / "target_test_0000_labels.npy")  # what `da view --color error` reads
    assert len(truth) == len(read_cloud(run_dir / "predictions" / "target_test_0000.ply"))
    assert list((run_dir / "tb" / "plugins" / "Open3D").rglob("*"))  # the Open3D TensorBoard tab
    assert {"target_miou", "target_iou_2", "source_val_miou"} <= set(
        __import__("json").loads((run_dir / "done").read_text()))

    # A user's cloud: other scale (x 0.5) and +X up. --scale 2 --up x undoes both exactly.
    original = read_cloud(r3d / "target_test" / "scene_0000.ply")
    r = rotation_to_z(np.array([1.0, 0.0, 0.0]))
    moved = PointCloud((original.xyz.astype(np.float64) @ r * 0.5).astype(np.float32), original.rgb)
    write_cloud(tmp_path / "user.xyz", moved)
    counts = predict_file(run_dir, tmp_path / "user.xyz", tmp_path / "pred.ply", scale=2.0, up="x")
    ref = predict_file(run_dir, r3d / "target_test" / "scene_0000.ply", tmp_path / "ref.ply", up="z")
    out, expect = read_cloud(tmp_path / "pred.ply"), read_cloud(tmp_path / "ref.ply")
    assert len(out) == len(original) == sum(counts.values())  # every original point labelled
    np.testing.assert_allclose(out.xyz, moved.xyz, atol=1e-6)  # written in the user's frame
    np.testing.assert_allclose(out.rgb, label_colors(out.labels), atol=1 / 255)
    assert (out.labels == expect.labels).mean() > 0.98  # same prediction up to float rounding
    assert sum(ref.values()) == len(original)

    assert da_main(["predict", str(run_dir), str(tmp_path / "user.xyz"), "--out",
                    str(tmp_path / "cli.ply"), "--scale", "2", "--up", "x"]) == 0
    assert np.array_equal(read_cloud(tmp_path / "cli.ply").labels, out.labels)
    nan = tmp_path / "nan.xyz"
    nan.write_text("0 0 0\nnan 1 2\n")
    assert da_main(["predict", str(run_dir), str(nan), "--out", str(tmp_path / "x.ply")]) == 2


def test_to_training_frame_scale_reference_and_up():
    from da.predict import to_training_frame

    rng = np.random.default_rng(1)
    ground = np.c_[rng.uniform(0, 4, (3000, 2)), np.zeros(3000)]
    post = np.c_[np.full((500, 2), 2.0) + rng.normal(0, 0.01, (500, 2)), rng.uniform(0, 1.5, 500)]
    xyz = np.vstack([ground, post])  # metres, z up, ground at 0
    r = rotation_to_z(np.array([0.0, 1.0, 0.0]))
    user = PointCloud((xyz @ r * 0.25 + [5.0, -3.0, 7.0]).astype(np.float64))  # +Y up, 1/4 scale
    p1, p2 = user.xyz[0], user.xyz[1]
    true_length = float(np.linalg.norm(xyz[0] - xyz[1]))
    for kwargs in ({"scale": 4.0, "up": "y"}, {"reference": (p1, p2, true_length), "up": "auto"}):
        out = to_training_frame(user, **kwargs).xyz
        assert np.ptp(out[:3000, 2]) < 1e-4 and abs(np.percentile(out[:, 2], 1)) < 1e-3  # ground at 0
        assert np.isclose(out[3000:, 2].max(), xyz[3000:, 2].max(), atol=1e-3)  # post height in metres
    with pytest.raises(ValueError, match="either a scale or a reference"):
        to_training_frame(user, scale=2.0, reference=(p1, p2, 1.0))


def test_unreadable_shape_cache_is_computed_again(r3d, tmp_path):
    cfg = load_config(CONFIGS, _small(r3d, tmp_path)).data
    first = build_data(cfg).source_val.scenes[0].shape
    caches = sorted((r3d / "prepared-0.02" / "source_val").glob("*-shape-*.npy"))
    assert caches
    caches[0].write_bytes(caches[0].read_bytes()[:40])  # truncated, as by a full disk
    again = build_data(cfg).source_val.scenes[0].shape
    assert np.array_equal(first, again)
    assert np.array_equal(np.load(caches[0]), first)  # and the cache is whole again


def test_sfm_modes_reach_the_builder_with_their_walk_and_leave_other_folders_unchanged(tmp_path, monkeypatch):
    import data_tools.target_dataset as target_dataset
    from da.data.rebar3d import dataset_dir

    calls = []

    def fake_build(folder, **params):  # records what the trainer asks for; writes a manifest
        calls.append(params)
        folder.mkdir(parents=True)
        (folder / "manifest.json").write_text("{}")
        return folder

    monkeypatch.setattr(target_dataset, "build_rebar3d", fake_build)

    def folder(*overrides):
        cfg = load_config([REPO / "experiments/configs/rebar3d.yaml"], [f"data.root={tmp_path}", *overrides])
        return dataset_dir(cfg.data)

    ring, walk = folder("data.mode=sfm"), folder("data.mode=sfm", "data.walk=walk_around_two_heights")
    control = folder("data.mode=sfm_true_poses")
    assert [c["mode"] for c in calls] == ["sfm", "sfm", "sfm_true_poses"]
    assert [c["walk"] for c in calls] == ["walk_around", "walk_around_two_heights", "walk_around"]
    assert len({ring, walk, control}) == 3 and ring.name.startswith("rebar3d-sfm-")
    # mvs / fast parameters carry no walk key, so existing dataset folders keep their names
    folder("data.mode=mvs", "data.walk=walk_around_two_heights")
    assert "walk" not in calls[-1]
    with pytest.raises(ConfigError, match="walk must be one of"):
        folder("data.mode=sfm", "data.walk=jog")
