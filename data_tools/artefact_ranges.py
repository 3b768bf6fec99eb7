"""Artefact-model parameters drawn from committed ranges: simulation without target calibration.

The fast artefact model's ``typical`` and ``harsh`` presets were FITTED to the mvs target's
statistics (experiments/results/rebar3d/fast_calibration.md), so source scenes simulated
with them carry target supervision. Here every parameter that sets the strength of an
artefact gets a range written from physical priors on stereo / MVS behaviour (each
``Range.why``), and ``draw_params`` draws one ``ArtefactParams`` per scene from them
(``data.simulated_source=randomised``, ``data_tools.target_dataset.simulate_source``).

How the ranges were set: ``PROCEDURE`` below (printed in the report too).
``fitted_positions`` reports where the fitted values fall in each range;
``python -m data_tools.artefact_ranges`` writes that report to
experiments/results/rebar3d/randomised_simulation.md.

Geometry behind the priors (data_tools.photogrammetry.RECONSTRUCTION_PRESETS): 960 x 720
images, f = 800 px, cameras 1.8-3.5 m away, stereo baselines 8-12 cm, so one image pixel
is 2-4 mm on the cage (3.1 mm at 2.5 m) and 8-40 mm bars are 2-18 px wide in the image.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from data_tools.artefact_model import (
    ARTEFACT_PRESETS,
    CALIBRATED_PRESETS,
    FITTED_FIELDS,
    ArtefactParams,
)

__all__ = ["BASE", "CENTRE_RULE", "PROCEDURE", "RANDOMISED", "RANGES", "REPORT", "SIMULATED_SOURCES",
           "UNTOUCHED", "Range", "centre_distance", "draw_params", "fitted_positions",
           "range_position", "ranges_record", "report_markdown"]

RANDOMISED = "randomised"  # the simulated-source name of per-scene draws from RANGES
SIMULATED_SOURCES = (*ARTEFACT_PRESETS, RANDOMISED)
CENTRE_RULE = 0.1  # a fitted value closer than this (range widths) to a centre: range moved
REPORT = Path("experiments/results/rebar3d/randomised_simulation.md")
PROCEDURE = (
    "The ranges were written from physical priors on stereo / MVS behaviour (below), broad, "
    "and committed before any model trained on them was evaluated on a target; no target-test "
    "metric was looked at. The fitted values entered in one place only: the issue (37) asks "
    "that no range be centred on them, so a draft range whose centre lay within "
    f"{CENTRE_RULE:g} range widths of a fitted typical or harsh value (on the range's own "
    "scale) was widened on a side its prior allows; the prior of each such range says so and "
    "gives the draft.")


@dataclass(frozen=True)
class Range:
    """Uniform on [lo, hi]; on log(lo)..log(hi) where `log` (the prior knows the order of
    magnitude, not the value); uniform over the integers lo..hi where `integer`."""

    lo: float
    hi: float
    why: str
    log: bool = False
    integer: bool = False

    def __post_init__(self) -> None:
        if not self.lo < self.hi or (self.log and self.lo <= 0):
            raise ValueError(f"need lo < hi (and lo > 0 when log), got {self.lo}, {self.hi}")

    def draw(self, rng: np.random.Generator) -> float | int:
        if self.integer:
            return int(rng.integers(int(self.lo), int(self.hi) + 1))
        if self.log:
            v = math.exp(rng.uniform(math.log(self.lo), math.log(self.hi)))
        else:
            v = float(rng.uniform(self.lo, self.hi))
        return min(max(v, self.lo), self.hi)  # exp(log(hi)) may round a hair above hi


# fmt: off
RANGES: dict[str, Range] = {
    # density / sampling
    "pixel_stride": Range(1, 4, integer=True, why=(
        "dense MVS depth maps at full to quarter image resolution per side (COLMAP max_image_size, "
        "OpenMVS resolution-level, Metashape ultra-high..medium quality): stride 1-4 at 960 px "
        "images (stride_ref_width_px = 960)")),
    # depth noise
    "disparity_noise_px": Range(0.05, 1.0, log=True, why=(
        "sub-pixel matching: ~0.05 px on strong texture (the sub-pixel limit of correlation) to "
        "~1 px on weak texture and thin bars before a point is rejected; draft 0.1-1 px put its "
        "centre on typical's fitted 0.315 px (position 0.50), lower end widened to 0.05 px")),
    "depth_noise_floor_m": Range(0.0005, 0.01, log=True, why=(
        "depth-independent error from pose and calibration error of SfM: 0.5 mm (calibrated "
        "rig, markers) to 1 cm (phone SfM; phone clouds vs laser: half the distances < 2 cm)")),
    # thickening
    "thicken_m": Range(0.0, 0.015, why=(
        "absolute outward bias of bar surfaces (rust scale, blur halo, fusion bias): none to "
        "1.5 cm, 'bars thickened by millimetres' up to about the radius of the thickest bars; "
        "draft 0-1 cm put its centre 0.09 widths from harsh's fitted 4.1 mm, upper end widened")),
    "thicken_px": Range(0.0, 3.0, why=(
        "foreground fattening of window matchers: up to half a matching window (5-7 px windows "
        "of SGM / patch match), none for pixel-wise or edge-aware matching")),
    "thicken_radius_frac": Range(0.0, 0.5, why=(
        "fattening that scales with the bar (specular halo, defocus of round bars): none to half "
        "a radius")),
    "thicken_spread_m": Range(0.0003, 0.005, log=True, why=(
        "scatter of the fattening along a bar: sub-mm (clean steel) to 5 mm (rust, mixed pixels)")),
    # completeness / holes
    "keep_main": Range(0.2, 1.0, why=(
        "share of a visible, well-resolved main bar that survives dense matching: thin metal "
        "against a changing background is MVS's known failure (Li et al. CVPR 2018), so from "
        "most lost to none lost; draft 0.5-1 put its centre 0.03 widths from harsh's fitted "
        "0.766, lower end widened (and keep_tie's with it, one prior for bars)")),
    "keep_tie": Range(0.2, 1.0, why=(
        "as keep_main (one prior for bars); ties' extra loss from thinness is width50_px's")),
    "keep_background": Range(0.7, 1.0, why=(
        "share of textured concrete / ground kept (textureless holes are hole_rate's): "
        "matchers recover most of a textured surface")),
    "width50_px": Range(0.5, 8.0, log=True, why=(
        "projected bar width at which half a bar is lost: ~0.5 px (many views, texture, "
        "sub-pixel structures still matched) to ~8 px (a wide matching window spans the bar); "
        "draft 1-8 px put its centre on typical's fitted 2.81 px (position 0.50), lower end "
        "widened")),
    "hole_rate": Range(0.0, 0.8, why=(
        "share of a textureless surface lost to holes: none (good light) to most of it, the "
        "classic failure of photo-consistency on uniform surfaces")),
    "hole_patch_m": Range(0.05, 0.5, log=True, why=(
        "hole size: a few cm (a specular spot) to half a metre (a uniform formwork panel)")),
    "dropout_patch_m": Range(0.02, 0.3, log=True, why=(
        "bar pieces lost together: a few bar diameters to a tie spacing")),
    # outliers
    "outlier_fraction": Range(0.0002, 0.05, log=True, why=(
        "floating points at silhouettes, share of points: 0.02% (strict multi-view filtering) "
        "to 5% (light filtering); draft 0.1-5% put its centre 0.02 widths from typical's "
        "fitted 0.66%, lower end widened")),
    "outlier_spread_m": Range(0.005, 0.1, log=True, why=(
        "spread of those points along the ray: mm-scale mixed pixels to 10 cm mismatches")),
    # blobs where bars cross or run close
    "blob_prob": Range(0.0, 0.5, why=(
        "chance a bar point near another bar spawns a bridging point: none to half of them")),
    "blob_gap_m": Range(0.01, 0.1, log=True, why=(
        "gaps bridged by the matching window: 1 cm (3 px at 2.5 m) to 10 cm (a window at 3.5 m "
        "plus fattening)")),
    "blob_size_m": Range(0.001, 0.02, log=True, why=(
        "jitter of the bridging points: 1 mm to 2 cm")),
    # colour
    "color_noise": Range(0.0, 0.1, why=(
        "sensor + JPEG noise: none to 10% of the range (phone images in dim light)")),
    "color_gain_std": Range(0.0, 0.15, why=(
        "per-view white balance / exposure drift of a phone: none to 15%")),
}
# fmt: on

# Every other field keeps the ArtefactParams default; why each one is not ranged.
UNTOUCHED: dict[str, str] = {
    "stride_ref_width_px": "set to 960, the capture presets' image width: a unit (the width "
                           "pixel_stride refers to), not an artefact; every preset uses it",
    "min_views": "MVS's definition of a point (two views agree), not a strength",
    "neighbour_views": "which views are checked for support: a fusion setting of the pipeline",
    "consistency_tol_m": "fusion tolerance of the pipeline (what counts as agreement)",
    "consistency_tol_rel": "fusion tolerance of the pipeline (what counts as agreement)",
    "min_incidence_cos": "visibility rule (grazing rays are not matched), geometry not strength",
    "max_depth_m": "the matcher's depth range covers every scene; ranging it changes nothing",
    "width_scale_px": "softness of the width50_px transition: no prior separates it from "
                      "width50_px, whose range already sets how thin bars are lost",
    "baseline_m": "the capture rig's geometry; it divides disparity_noise_px in sigma_z, so "
                  "ranging both would range one product twice",
    "outlier_range_m": "how far behind an edge mixed depths reach: set by the scene's depth "
                       "layout, not by the matcher",
    "silhouette_jump_rel": "the definition of a silhouette, not a strength",
    "voxel_m": "the merge grid of our pipeline (the dataset reader voxelises to 1 cm anyway)",
}

BASE = ArtefactParams(stride_ref_width_px=960)  # defaults + the stride unit (see UNTOUCHED)


def draw_params(rng: np.random.Generator, base: ArtefactParams = BASE) -> ArtefactParams:
    """`base` with every parameter of RANGES drawn from its range (in RANGES' order)."""
    return replace(base, **{name: r.draw(rng) for name, r in RANGES.items()})


def range_position(value: float, r: Range) -> float:
    """Where `value` lies in `r`: 0 at lo, 1 at hi (log scale for log ranges); outside
    [0, 1] when outside the range, -inf for a value <= 0 in a log range."""
    if r.log:
        if value <= 0:
            return -math.inf
        return math.log(value / r.lo) / math.log(r.hi / r.lo)
    return (value - r.lo) / (r.hi - r.lo)


def centre_distance(value: float, r: Range) -> float:
    """|range centre - value| in range widths, on the range's scale (0: centred)."""
    return abs(range_position(value, r) - 0.5)


def fitted_positions(presets: tuple[str, ...] = CALIBRATED_PRESETS,
                     ranges: dict[str, Range] | None = None) -> list[dict]:
    """One row per ranged parameter: each preset's value, its position in the range and
    the centre's distance from it, and whether the value was fitted to mvs."""
    rows = []
    for name, r in (RANGES if ranges is None else ranges).items():
        scale = "integer" if r.integer else "log" if r.log else "linear"
        row: dict = {"parameter": name, "lo": r.lo, "hi": r.hi, "scale": scale}
        for p in presets:
            v = getattr(ARTEFACT_PRESETS[p], name)
            row[p] = {"value": v, "position": range_position(v, r),
                      "centre_distance": centre_distance(v, r),
                      "fitted": p in CALIBRATED_PRESETS and name in FITTED_FIELDS}
        rows.append(row)
    return rows


def ranges_record() -> dict:
    """The committed table as plain data (what a simulated folder's manifest records)."""
    return {name: {k: v for k, v in asdict(r).items() if k != "why"} for name, r in RANGES.items()}


def _fmt(v: float) -> str:
    return f"{v:.3g}" if math.isfinite(v) else str(v)


def _centre_notes(presets: tuple[str, ...]) -> str:
    """The fitted value nearest to a range centre (the rule's margin), and the hand-set
    values nearer than the rule (not fitted, so the rule did not move their ranges)."""
    cells = [(row[p]["centre_distance"], row["parameter"], p, row[p]["fitted"])
             for row in fitted_positions(presets) for p in presets]
    d, name, p, _ = min(c for c in cells if c[3])
    near = ", ".join(f"{p} `{n}` {d_:.2f}" for d_, n, p, fitted in sorted(cells)
                     if not fitted and d_ < CENTRE_RULE)
    return (f"Closest fitted value to a range centre: {p} `{name}`, {d:.3f} range widths "
            f"(rule: >= {CENTRE_RULE:g}). Hand-set values nearer than that (not fitted to the "
            f"target, so not subject to the rule): {near or 'none'}.")


def report_markdown(presets: tuple[str, ...] = CALIBRATED_PRESETS) -> str:
    """The ranges, their priors and where the fitted presets fall in them, as markdown."""
    head = ["# Randomised simulation: artefact ranges without target calibration", "",
            "Command: `python -m data_tools.artefact_ranges` (writes this file from "
            "`data_tools/artefact_ranges.py`).", "",
            PROCEDURE, "",
            "Used by `data.simulated_source=randomised`: every simulated source scene draws its "
            "own parameters (rng seeded by the dataset seed and the scene index, "
            "`data_tools.target_dataset.scene_artefact_params`), recorded per scene in "
            "`simulated_source-fast-randomised/manifest.json`. It uses NO target "
            "calibration; `data.simulated_source=typical` / `harsh` do (**calibrated**: fitted "
            "to mvs statistics).", ""]
    table = ["## Ranges and where the fitted values fall", "",
             "position: 0 at lo, 1 at hi (log scale where log); distance: |range centre - "
             "value| in range widths. **fitted** = a field the fit to the mvs target set "
             "(calibrated); hand-set = not fitted (a default or hand-set value, not subject to "
             "the centre rule).", "", _centre_notes(presets), "",
             "| parameter | lo | hi | scale | " + " | ".join(
                 f"{p} value | {p} position | {p} distance" for p in presets) + " |",
             "|" + "---|" * (4 + 3 * len(presets))]
    for row in fitted_positions(presets):
        cells = [row["parameter"], _fmt(row["lo"]), _fmt(row["hi"]), row["scale"]]
        for p in presets:
            c = row[p]
            tag = " **fitted**" if c["fitted"] else " hand-set"
            cells += [f"{c['value']:.4g}{tag}", _fmt(c["position"]), _fmt(c["centre_distance"])]
        table.append("| " + " | ".join(cells) + " |")
    priors = ["", "## Physical priors", ""] + [f"- `{n}`: {r.why}." for n, r in RANGES.items()]
    untouched = ["", "## Not ranged (ArtefactParams defaults)", ""] + [
        f"- `{n}` = {getattr(BASE, n)}: {why}." for n, why in UNTOUCHED.items()]
    return "\n".join(head + table + priors + untouched) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="write the ranges' report (fitted-value distances)")
    ap.add_argument("--out", type=Path, default=REPORT, help=f"markdown file (default {REPORT})")
    args = ap.parse_args(argv)
    args.out.write_text(report_markdown())
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

