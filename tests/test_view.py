"""`da view`: colourings, ground truth beside a prediction, the headless screenshot path."""

import numpy as np
import pytest

from da.cli import main
from da.view import CORRECT, UNKNOWN, WRONG, colors_for, error_colors
from data_tools.io import PointCloud, write_cloud
from tests.test_viz import pixels_near, read_png, rgb255


def _prediction(tmp_path):
    """Two slabs of points: predicted 1 (main) everywhere; truth: left half 1, right half 2."""
    rng = np.random.default_rng(0)
    xyz = rng.uniform(-1, 1, size=(4000, 3)).astype(np.float32)
    pred = np.ones(len(xyz), np.int64)
    truth = np.where(xyz[:, 0] < 0, 1, 2).astype(np.uint8)
    truth[:100] = 255
    path = write_cloud(tmp_path / "target_test_0000.ply", PointCloud(xyz, labels=pred))
    np.save(tmp_path / "target_test_0000_labels.npy", truth)
    return path, pred, truth


def test_error_colours_mark_right_wrong_and_ignored():
    colors = error_colors(np.array([1, 1, 2]), np.array([1, 2, 255]))
    np.testing.assert_allclose(colors, [CORRECT, WRONG, UNKNOWN])


def test_error_colouring_finds_truth_beside_the_cloud(tmp_path):
    path, pred, truth = _prediction(tmp_path)
    from data_tools.io import read_cloud

    colors, text = colors_for(read_cloud(path), path, "error")
    scored = truth != 255
    expected = float((pred[scored] == truth[scored]).mean())
    assert f"accuracy {expected:.1%}" in text and "tie 0.0%" in text
    assert (np.abs(colors - WRONG).max(1) < 1e-6).sum() == ((pred != truth) & scored).sum()


def test_screenshot_shows_label_and_error_colours(tmp_path, capsys):
    path, _, _ = _prediction(tmp_path)
    assert main(["view", str(path), "--color", "pred", "--screenshot", str(tmp_path / "p.png")]) == 0
    assert pixels_near(read_png(tmp_path / "p.png"), rgb255(1)) > 1000  # all predicted main rebar
    assert main(["view", str(path), "--color", "error", "--screenshot", str(tmp_path / "e.png")]) == 0
    image = read_png(tmp_path / "e.png")
    for rgb in (CORRECT, WRONG):  # half right, half wrong: both colours are on screen
        assert pixels_near(image, np.round(np.array(rgb) * 255)) > 1000
    assert "accuracy" in capsys.readouterr().out


def test_missing_or_wrong_truth_is_a_clear_error(tmp_path, capsys):
    path, _, _ = _prediction(tmp_path)
    (tmp_path / "target_test_0000_labels.npy").unlink()
    assert main(["view", str(path), "--color", "error", "--screenshot", str(tmp_path / "e.png")]) == 2
    assert "needs ground truth" in capsys.readouterr().err
    bad = tmp_path / "short.npy"
    np.save(bad, np.zeros(5, np.uint8))
    with pytest.raises(ValueError, match="5"):
        from data_tools.io import read_cloud

        colors_for(read_cloud(path), path, "error", bad)
    assert main(["view", str(path), "--color", "rgb", "--screenshot", str(tmp_path / "r.png")]) == 2
    assert "no colours" in capsys.readouterr().err
