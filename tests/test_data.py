"""Data files: splits are disjoint and unlabeled where they must be; bad files fail clearly."""

import numpy as np
import pytest
import torch

from da.config import load_config
from da.data import build_data
from da.data.loader import EndlessLoader
from data_tools.digits import build_digits
from data_tools.moons import build_moons
from data_tools.splits import DatasetFileError, read_split


@pytest.fixture(scope="module")
def moons_dir(tmp_path_factory):
    return build_moons(tmp_path_factory.mktemp("m") / "moons", seed=3)


def test_moons_splits(moons_dir):
    x, y = read_split(moons_dir, "source_train", with_labels=True)
    assert x.shape == (300, 2) and np.bincount(y).tolist() == [150, 150]
    xt, yt = read_split(moons_dir, "target_train", with_labels=False)
    assert xt.shape == (300, 2) and yt is None
    with np.load(moons_dir / "target_train.npz") as f:
        assert set(f.keys()) == {"x"}  # no labels in the unlabeled file
    # the target is rotated: its principal direction differs from the source's by ~35 deg
    def angle(a):
        a = a - a.mean(0)
        v = np.linalg.svd(a, full_matrices=False)[2][0]
        return np.degrees(np.arctan2(v[1], v[0])) % 180
    xtest, _ = read_split(moons_dir, "target_test", with_labels=True)
    assert abs((angle(xtest) - angle(x)) % 180 - 35) < 6


def test_digits_are_disjoint_and_blended(tmp_path):
    folder = build_digits(tmp_path / "d", source_train=200, source_val=50, target_train=300,
                          target_test_blends=2, seed=1)
    xs, ys = read_split(folder, "source_train", True)
    xt, yt = read_split(folder, "target_test", True)
    assert xs.shape == (200, 3, 28, 28) and xs.dtype == np.uint8
    assert len(xt) == 2 * (1797 - 550)
    assert np.array_equal(xs[:, 0], xs[:, 1])  # grey source
    assert not np.array_equal(xt[:, 0], xt[:, 1])  # colour target
    assert set(np.unique(ys)) == set(range(10)) and set(np.unique(yt)) == set(range(10))


def test_truncated_file_names_the_file(tmp_path, moons_dir):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(moons_dir, broken)
    data = (broken / "source_train.npz").read_bytes()
    (broken / "source_train.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetFileError, match="source_train.npz.*corrupt or truncated"):
        read_split(broken, "source_train", True)


def test_missing_labels_and_nan_inputs(tmp_path, moons_dir):
    import shutil

    broken = tmp_path / "b2"
    shutil.copytree(moons_dir, broken)
    (broken / "target_test_labels.npz").unlink()
    with pytest.raises(DatasetFileError, match="target_test_labels.npz: missing"):
        read_split(broken, "target_test", True)
    x, y = read_split(broken, "source_val", True)
    x[3, 1] = np.nan
    np.savez(broken / "source_val.npz", x=x, y=y)
    with pytest.raises(DatasetFileError, match="source_val.npz: inputs contain NaN"):
        read_split(broken, "source_val", True)
    np.savez(broken / "source_val.npz", x=np.nan_to_num(x), y=y[:-5])
    with pytest.raises(DatasetFileError, match="labels for"):
        read_split(broken, "source_val", True)


def test_loader_resumes_mid_epoch(data_root):
    cfg = load_config(None, [f"data.root={data_root}", "data.augment=true"])
    ds = build_data(cfg.data).source_train
    a = EndlessLoader(ds, 64, seed=5)
    batches = [next(a) for _ in range(11)]  # 4 per epoch: crosses two epoch boundaries
    b = EndlessLoader(ds, 64, seed=5)
    for _ in range(6):
        next(b)
    state = b.state_dict()
    c = EndlessLoader(ds, 64, seed=5)
    c.load_state_dict(state)
    for want in batches[6:]:
        got = next(c)
        assert torch.equal(got["x"], want["x"]) and torch.equal(got["label"], want["label"])
    # augmentation really changes the inputs, and epochs reshuffle
    assert not torch.equal(batches[0]["x"], ds.x[: 64])
    assert not torch.equal(batches[0]["label"], batches[4]["label"])
