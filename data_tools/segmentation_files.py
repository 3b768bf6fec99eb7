"""Readers for real 2D segmentation data, in the forms public rebar image sets use.

- An image folder with PNG masks (ConRebSeg / DTU style): `images/NAME.jpg|png` and
  `masks/NAME.png` (same stem), each mask pixel a source category id.
- COCO instance annotations (several synthetic rebar sets): one JSON with `images`,
  `annotations` (polygon lists, or RLE - uncompressed `counts` lists or COCO's compressed
  strings) and `categories`; masks are painted per image in annotation order.

Both map their categories to our classes (0 background, 1 main rebar, 2 tie) through a
table: {source id or category name: our class}; unlisted ids / names are an error unless
the table maps them (use 255 = ignore for "don't care"). Each reader returns a list of
(image (H, W, 3) uint8, mask (H, W) uint8, name) and raises DatasetFileError naming the
file and the problem: unreadable image, mask of another size, unknown category,
malformed annotation.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from data_tools.splits import DatasetFileError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
IGNORE = 255


def read_rgb(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            return np.asarray(im.convert("RGB"))
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        raise DatasetFileError(f"{path}: unreadable image ({type(exc).__name__}: {exc})") from None


def map_classes(raw: np.ndarray, table: dict, where: Path) -> np.ndarray:
    """Source category ids -> our classes; an id the table lacks is an error naming it."""
    out = np.full(raw.shape, IGNORE, np.uint8)
    ids = np.unique(raw)
    unknown = [int(i) for i in ids if int(i) not in table]
    if unknown:
        raise DatasetFileError(f"{where}: unknown category id(s) {unknown[:8]}; the class table maps "
                               f"{sorted(table)} (add them, e.g. to 255 = ignore)")
    for i in ids:
        out[raw == i] = table[int(i)]
    return out


def image_files(folder: Path) -> list[Path]:
    images = sorted(p for p in folder.glob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise DatasetFileError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)})")
    return images


def read_image_folder(folder: str | Path) -> list[tuple[np.ndarray, None, str]]:
    """`folder/images/*` without masks (an unlabeled split)."""
    return [(read_rgb(p), None, p.stem) for p in image_files(Path(folder) / "images")]


def read_mask_folder(folder: str | Path, table: dict[int, int],
                     mask_dir: str | Path | None = None) -> list[tuple[np.ndarray, np.ndarray, str]]:
    """`folder/images/*` with `<mask_dir>/<stem>.png` (single-channel category ids;
    mask_dir defaults to `folder/masks`)."""
    from PIL import Image

    folder = Path(folder)
    masks = Path(mask_dir) if mask_dir is not None else folder / "masks"
    out = []
    for path in image_files(folder / "images"):
        mask_path = masks / f"{path.stem}.png"
        if not mask_path.is_file():
            raise DatasetFileError(f"{path}: no mask {mask_path}")
        img = read_rgb(path)
        try:
            with Image.open(mask_path) as m:
                m.load()
                raw = np.asarray(m)
        except (OSError, ValueError, SyntaxError) as exc:
            raise DatasetFileError(f"{mask_path}: unreadable mask ({type(exc).__name__}: {exc})") from None
        if raw.ndim == 3:  # an RGB-saved label image: its channels must agree
            if not (raw[..., :1] == raw[..., :3]).all():
                raise DatasetFileError(f"{mask_path}: a colour mask; expected one category id per pixel")
            raw = raw[..., 0]
        if raw.shape != img.shape[:2]:
            raise DatasetFileError(f"{mask_path}: mask is {raw.shape[1]}x{raw.shape[0]} but its image "
                                   f"{path.name} is {img.shape[1]}x{img.shape[0]}")
        out.append((img, map_classes(raw, table, mask_path), path.stem))
    return out


def rle_decode(rle: dict, where: str) -> np.ndarray:
    """COCO RLE (column-major; `counts` a list or COCO's compressed string) -> (H, W) bool."""
    try:
        h, w = (int(v) for v in rle["size"])
        counts = rle["counts"]
    except (KeyError, TypeError, ValueError):
        raise DatasetFileError(f"{where}: RLE needs 'size' [h, w] and 'counts'") from None
    if isinstance(counts, str):
        counts = _rle_string_counts(counts, where)
    counts = [int(c) for c in counts]
    if any(c < 0 for c in counts) or sum(counts) != h * w:
        raise DatasetFileError(f"{where}: RLE counts sum to {sum(counts)}, not {h} x {w} = {h * w}")
    flat = np.zeros(h * w, bool)
    pos = 0
    for k, c in enumerate(counts):
        if k % 2:  # runs alternate 0, 1, 0, ... starting with zeros
            flat[pos:pos + c] = True
        pos += c
    return flat.reshape(w, h).T


def _rle_string_counts(s: str, where: str) -> list[int]:
    """COCO's compressed counts: 5 bits per char (offset 48), continuation bit 0x20, sign
    bit 0x10 on the last char; from the third run on, each value is a delta to the run two
    before it (the format of the COCO API's rleToString)."""
    counts, i = [], 0
    while i < len(s):
        x, k, more = 0, 0, True
        while more:
            if i >= len(s):
                raise DatasetFileError(f"{where}: truncated compressed RLE string")
            c = ord(s[i]) - 48
            if c < 0 or c > 63:
                raise DatasetFileError(f"{where}: bad character {s[i]!r} in compressed RLE string")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            i += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def polygon_mask(polygons: list, h: int, w: int, where: str) -> np.ndarray:
    from PIL import Image, ImageDraw

    canvas = Image.new("1", (w, h), 0)
    draw = ImageDraw.Draw(canvas)
    for poly in polygons:
        if not isinstance(poly, list) or len(poly) < 6 or len(poly) % 2:
            raise DatasetFileError(f"{where}: a polygon needs >= 3 x,y pairs, got {str(poly)[:60]}")
        draw.polygon([(float(poly[k]), float(poly[k + 1])) for k in range(0, len(poly), 2)], fill=1)
    return np.asarray(canvas, bool)


def read_coco(annotations: str | Path, images_dir: str | Path,
              table: dict[str | int, int]) -> list[tuple[np.ndarray, np.ndarray, str]]:
    """COCO JSON + its image folder -> (image, mask, name) per image. `table` maps category
    names or ids to our classes; pixels no annotation covers are background (0)."""
    annotations, images_dir = Path(annotations), Path(images_dir)
    try:
        coco = json.loads(annotations.read_text())
        images, anns, cats = coco["images"], coco["annotations"], coco["categories"]
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetFileError(f"{annotations}: not a readable COCO JSON ({type(exc).__name__}: {exc})") from None
    except (KeyError, TypeError):
        raise DatasetFileError(f"{annotations}: a COCO file needs 'images', 'annotations' and 'categories'") from None
    for kind, entries in (("images", images), ("annotations", anns), ("categories", cats)):
        # Entries without an id, or not objects at all (found by tests/fuzzing.py).
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise DatasetFileError(f"{annotations}: '{kind}' must be a list of objects")
    missing_id = [c for c in cats if "id" not in c]
    if missing_id:
        raise DatasetFileError(f"{annotations}: a category without an 'id': {str(missing_id[0])[:80]}")
    ours = {}
    for c in cats:
        cls = table.get(c.get("name"), table.get(c.get("id")))
        if cls is None:
            raise DatasetFileError(f"{annotations}: unknown category {c.get('name')!r} (id {c.get('id')}); "
                                   f"the class table maps {sorted(map(str, table))}")
        ours[c["id"]] = int(cls)
    by_image: dict[int, list] = {}
    for a in anns:
        by_image.setdefault(a.get("image_id"), []).append(a)
    out = []
    for info in images:
        path = images_dir / str(info.get("file_name", ""))
        img = read_rgb(path)
        h, w = img.shape[:2]
        if (info.get("height"), info.get("width")) not in ((h, w), (None, None)):
            raise DatasetFileError(f"{annotations}: image {path.name} is {w}x{h} but the JSON says "
                                   f"{info.get('width')}x{info.get('height')}")
        mask = np.zeros((h, w), np.uint8)
        for a in by_image.get(info.get("id"), []):
            where = f"{annotations} annotation {a.get('id')}"
            if a.get("category_id") not in ours:
                raise DatasetFileError(f"{where}: category_id {a.get('category_id')} is not in 'categories'")
            seg = a.get("segmentation")
            if isinstance(seg, dict):
                region = rle_decode(seg, where)
                if region.shape != (h, w):
                    raise DatasetFileError(f"{where}: RLE size {list(region.shape)} but image {path.name} "
                                           f"is {h}x{w}")
            elif isinstance(seg, list):
                region = polygon_mask(seg, h, w, where)
            else:
                raise DatasetFileError(f"{where}: segmentation must be polygons or RLE")
            mask[region] = ours[a["category_id"]]
        out.append((img, mask, path.stem))
    return out
