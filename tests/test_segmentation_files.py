"""Real 2D segmentation files: PNG-mask folders and COCO polygons / RLE, and their errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from data_tools.segmentation_files import read_coco, read_mask_folder, rle_decode
from data_tools.splits import DatasetFileError


def coco_rle_string(mask: np.ndarray) -> str:
    """COCO's compressed RLE, written from the format's description (column-major runs,
    deltas from the fourth run on, 5-bit groups) - independent of the reader."""
    flat = mask.T.ravel().astype(np.uint8)
    runs, value, n = [], 0, 0
    for v in flat:
        if v != value:
            runs.append(n)
            value, n = v, 0
        n += 1
    runs.append(n)
    out = []
    for i, x in enumerate(runs):
        if i > 2:
            x -= runs[i - 2]
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = (x != -1) if (c & 0x10) else (x != 0)
            if more:
                c |= 0x20
            out.append(chr(c + 48))
    return "".join(out)


def _folder(tmp_path, size=(20, 16), mask_size=None):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    rng = np.random.default_rng(0)
    raw = rng.choice([0, 7, 9], size=(size[1], size[0])).astype(np.uint8)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(tmp_path / "images/a.jpg")
    m = raw if mask_size is None else np.zeros((mask_size[1], mask_size[0]), np.uint8)
    Image.fromarray(m).save(tmp_path / "masks/a.png")
    return raw


def test_mask_folder_maps_categories_and_checks_sizes(tmp_path):
    (tmp_path / "ok").mkdir()
    raw = _folder(tmp_path / "ok")
    [(img, mask, name)] = read_mask_folder(tmp_path / "ok", {0: 0, 7: 1, 9: 2})
    assert name == "a" and img.shape == (16, 20, 3)
    assert np.array_equal(mask, np.select([raw == 7, raw == 9], [1, 2], 0))
    with pytest.raises(DatasetFileError, match=r"unknown category id\(s\) \[9\]"):
        read_mask_folder(tmp_path / "ok", {0: 0, 7: 1})
    (tmp_path / "bad").mkdir()
    _folder(tmp_path / "bad", mask_size=(10, 8))
    with pytest.raises(DatasetFileError, match=r"a\.png: mask is 10x8 but its image a\.jpg is 20x16"):
        read_mask_folder(tmp_path / "bad", {0: 0})
    (tmp_path / "ok/images/a.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    with pytest.raises(DatasetFileError, match="a.jpg: unreadable image"):
        read_mask_folder(tmp_path / "ok", {0: 0, 7: 1, 9: 2})


def test_rle_strings_and_lists_round_trip():
    rng = np.random.default_rng(1)
    for shape in ((7, 5), (40, 33), (1, 64)):
        mask = rng.random(shape) < 0.3
        mask[:, : shape[1] // 3] |= True  # long runs: multi-group values and negative deltas
        got = rle_decode({"size": list(shape), "counts": coco_rle_string(mask)}, "t")
        assert np.array_equal(got, mask)
    listed = rle_decode({"size": [2, 3], "counts": [1, 2, 3]}, "t")  # column-major, zeros first
    assert np.array_equal(listed, np.array([[0, 1, 0], [1, 0, 0]], bool))
    with pytest.raises(DatasetFileError, match="sum to 5, not 2 x 3"):
        rle_decode({"size": [2, 3], "counts": [1, 4]}, "t")
    with pytest.raises(DatasetFileError, match="truncated"):
        rle_decode({"size": [2, 3], "counts": "P"}, "t")  # "P" = 48 + 0x20: a continuation, then nothing


def _coco(tmp_path, anns, cats=None, width=30):
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "im.png")
    cats = cats or [{"id": 1, "name": "rebar"}, {"id": 2, "name": "tie_wire"}]
    path = tmp_path / "ann.json"
    path.write_text(json.dumps({"images": [{"id": 5, "file_name": "im.png", "width": width, "height": 20}],
                                "annotations": anns, "categories": cats}))
    return path


def test_coco_polygons_and_rle_paint_our_classes(tmp_path):
    tie = np.zeros((20, 30), bool)
    tie[12:15, 20:26] = True
    anns = [{"id": 1, "image_id": 5, "category_id": 1, "segmentation": [[2, 2, 12, 2, 12, 8, 2, 8]]},
            {"id": 2, "image_id": 5, "category_id": 2,
             "segmentation": {"size": [20, 30], "counts": coco_rle_string(tie)}}]
    [(img, mask, name)] = read_coco(_coco(tmp_path, anns), tmp_path, {"rebar": 1, "tie_wire": 2})
    assert name == "im" and img.shape == (20, 30, 3)
    assert (mask[3:8, 3:12] == 1).all() and mask[0, 0] == 0 and mask[10, 15] == 0
    assert np.array_equal(mask == 2, tie)


def test_coco_errors_name_the_file_and_the_problem(tmp_path):
    poly = [{"id": 1, "image_id": 5, "category_id": 1, "segmentation": [[2, 2, 12, 2, 12, 8]]}]
    with pytest.raises(DatasetFileError, match="unknown category 'tie_wire'"):
        read_coco(_coco(tmp_path, poly), tmp_path, {"rebar": 1})
    with pytest.raises(DatasetFileError, match="is 30x20 but the JSON says 31x20"):
        read_coco(_coco(tmp_path, poly, width=31), tmp_path, {"rebar": 1, "tie_wire": 2})
    bad = [{"id": 9, "image_id": 5, "category_id": 1, "segmentation": [[2, 2, 12]]}]
    with pytest.raises(DatasetFileError, match="annotation 9: a polygon needs"):
        read_coco(_coco(tmp_path, bad), tmp_path, {"rebar": 1, "tie_wire": 2})
    rle = [{"id": 3, "image_id": 5, "category_id": 2, "segmentation": {"size": [10, 10], "counts": [100]}}]
    with pytest.raises(DatasetFileError, match="annotation 3: RLE size"):
        read_coco(_coco(tmp_path, rle), tmp_path, {"rebar": 1, "tie_wire": 2})
    (tmp_path / "broken.json").write_text('{"images": [')
    with pytest.raises(DatasetFileError, match="broken.json: not a readable COCO JSON"):
        read_coco(tmp_path / "broken.json", tmp_path, {})
