"""Label colour table and headless snapshots (Open3D OffscreenRenderer, matplotlib fallback)."""

from __future__ import annotations

import itertools
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data_tools import viz
from data_tools.__main__ import main
from data_tools.io import PointCloud, write_cloud
from data_tools.viz import LABELS, label_colors, snapshot

W, H = 160, 120


def rgb255(label: int) -> np.ndarray:
    return np.round(np.array(LABELS[label].color) * 255)


def pixels_near(image: np.ndarray, rgb: np.ndarray, tol: float = 6) -> int:
    return int((np.abs(image.astype(float) - rgb).max(axis=-1) <= tol).sum())


def read_png(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        assert im.format == "PNG"
        return np.asarray(im.convert("RGB"))


def clusters(n: int = 300, labels=(0, 1, 2)) -> PointCloud:
    """One blob per label, side by side along x, so every label is visible from any view."""
    rng = np.random.default_rng(0)
    xyz = np.concatenate([rng.normal(size=(n, 3)) * 0.3 + [3.0 * i, 0, 0] for i in range(len(labels))])
    return PointCloud(xyz=xyz, labels=np.repeat(np.array(labels, dtype=np.int64), n))


@pytest.fixture
def no_fallback():
    """Fail if the matplotlib fallback runs: here the OffscreenRenderer path is under test."""
    assert viz._offscreen_problem() is None, viz._offscreen_problem()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    assert not [w for w in caught if "OffscreenRenderer" in str(w.message)], caught


def test_label_table_is_pinned_and_distinct():
    assert {k: lab.name for k, lab in LABELS.items()} == {
        0: "background", 1: "main rebar", 2: "tie", 255: "ignore"}
    assert LABELS[1].color == (0.93, 0.35, 0.05)  # pictures in reports depend on these
    colors = np.array([lab.color for lab in LABELS.values()])
    for a, b in itertools.combinations(range(len(colors)), 2):
        assert np.abs(colors[a] - colors[b]).max() > 0.3
    assert np.abs(colors - 1.0).max(axis=1).min() > 0.25  # none vanishes on the white background
    with pytest.raises(TypeError):
        LABELS[3] = viz.Label("new", (0, 0, 0))  # read-only


def test_label_colors_maps_and_rejects_unknown():
    out = label_colors(np.array([2, 0, 255, 1, 1], dtype=np.int32))
    assert out.dtype == np.float32 and out.shape == (5, 3)
    np.testing.assert_allclose(out[3], LABELS[1].color, rtol=1e-6)
    np.testing.assert_allclose(out[2], LABELS[255].color, rtol=1e-6)
    with pytest.raises(ValueError, match=r"labels 3, 300 are not in the label table"):
        label_colors(np.array([0, 300, 3, 1]))
    with pytest.raises(ValueError, match="integer"):
        label_colors(np.array([0.0, 1.0]))


def test_snapshot_shows_label_colours_on_white(tmp_path, no_fallback):
    out = snapshot(clusters(), tmp_path / "labels.png", width=W, height=H, point_size=6)
    image = read_png(out)
    assert image.shape == (H, W, 3)
    assert pixels_near(image, np.array([255, 255, 255]), tol=0) > 0.3 * W * H
    for corner in (image[0, 0], image[0, -1], image[-1, 0], image[-1, -1]):
        assert tuple(corner) == (255, 255, 255)
    for label in (0, 1, 2):
        assert pixels_near(image, rgb255(label)) > 200, LABELS[label].name


def test_snapshot_rgb_views_and_sizes_in_one_process(tmp_path, no_fallback):
    cloud = clusters(labels=(1,))
    cloud.rgb = np.tile(np.float32([0.2, 0.8, 0.4]), (len(cloud), 1))
    shots = [("a.png", "rgb", "top", 96, 64), ("b.png", "label", "front", 64, 96),
             ("c.png", "label", "iso", 64, 96)]
    for name, color, view, w, h in shots:
        image = read_png(snapshot(cloud, tmp_path / name, color=color, view=view, width=w,
                                  height=h, point_size=5))
        assert image.shape == (h, w, 3)
        want = np.array([51, 204, 102]) if color == "rgb" else rgb255(1)
        assert pixels_near(image, want) > 100, name
    # Filament's engine is bound to the thread that starts it: a worker thread must work too.
    done = []
    worker = threading.Thread(target=lambda: done.append(snapshot(cloud, tmp_path / "t.png",
                                                                  width=W, height=H)))
    worker.start()
    worker.join()
    assert done and read_png(done[0]).shape == (H, W, 3)


def test_snapshot_asks_for_what_the_cloud_lacks(tmp_path):
    bare = PointCloud(xyz=np.zeros((3, 3)))
    with pytest.raises(ValueError, match="no labels"):
        snapshot(bare, tmp_path / "x.png")
    with pytest.raises(ValueError, match="no colours"):
        snapshot(bare, tmp_path / "x.png", color="rgb")
    with pytest.raises(ValueError, match="view"):
        snapshot(clusters(), tmp_path / "x.png", view="side")
    assert not list(tmp_path.iterdir())


def test_fallback_draws_a_real_png(tmp_path, monkeypatch):
    monkeypatch.setattr(viz, "_offscreen_problem", lambda: "no Vulkan (simulated)")
    with pytest.warns(RuntimeWarning, match="no Vulkan.*matplotlib"):
        out = snapshot(clusters(), tmp_path / "mpl.png", width=W, height=H, point_size=6)
    image = read_png(out)
    assert image.shape == (H, W, 3)
    assert tuple(image[0, 0]) == (255, 255, 255)
    for label in (0, 1, 2):
        assert pixels_near(image, rgb255(label)) > 100, LABELS[label].name


def test_cli_snapshot(tmp_path, capsys, no_fallback):
    ply = write_cloud(tmp_path / "scan.ply", clusters())
    png = tmp_path / "pics" / "scan.png"
    code = main(["snapshot", str(ply), "--out", str(png), "--width", str(W), "--height", str(H),
                 "--view", "top", "--point-size", "4"])
    assert code == 0, capsys.readouterr().err
    assert read_png(png).shape == (H, W, 3)
    assert "main rebar" in capsys.readouterr().out  # the legend


@pytest.mark.parametrize("content", [None, b"ply\nformat nonsense\n", b"\x00garbage" * 10])
def test_cli_bad_cloud_exits_2_naming_the_file(tmp_path, capsys, content):
    ply = tmp_path / "broken_scan.ply"
    if content is not None:
        ply.write_bytes(content)
    code = main(["snapshot", str(ply), "--out", str(tmp_path / "x.png")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and "broken_scan.ply" in err
    assert not (tmp_path / "x.png").exists()


def test_cli_missing_labels_exits_2(tmp_path, capsys):
    ply = write_cloud(tmp_path / "plain.ply", PointCloud(xyz=np.zeros((4, 3))))
    assert main(["snapshot", str(ply), "--out", str(tmp_path / "x.png")]) == 2
    assert "no labels" in capsys.readouterr().err
