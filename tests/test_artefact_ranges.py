"""Artefact parameters drawn from committed prior ranges (data_tools.artefact_ranges): draws
inside the ranges, log-uniform where said, deterministic; the fitted-value report."""

from __future__ import annotations

import math
from dataclasses import asdict, fields
from pathlib import Path

import numpy as np
import pytest

from data_tools.artefact_model import (
    ARTEFACT_PRESETS,
    CALIBRATED_PRESETS,
    FITTED_FIELDS,
    ArtefactParams,
)
from data_tools.artefact_ranges import (
    BASE,
    CENTRE_RULE,
    RANGES,
    REPORT,
    UNTOUCHED,
    Range,
    centre_distance,
    draw_params,
    fitted_positions,
    main,
    range_position,
    report_markdown,
)

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def draws() -> list[ArtefactParams]:
    rng = np.random.default_rng(0)
    return [draw_params(rng) for _ in range(2000)]


def test_every_field_is_ranged_or_untouched_with_a_reason():
    names = {f.name for f in fields(ArtefactParams)}
    assert names == set(RANGES) | set(UNTOUCHED) and not set(RANGES) & set(UNTOUCHED)
    assert all(r.why for r in RANGES.values()) and all(UNTOUCHED.values())
    # the groups are all ranged
    assert {"pixel_stride", "disparity_noise_px", "depth_noise_floor_m", "thicken_m", "thicken_px",
            "thicken_radius_frac", "thicken_spread_m", "keep_main", "keep_tie", "keep_background",
            "width50_px", "hole_rate", "hole_patch_m", "outlier_fraction", "outlier_spread_m",
            "blob_prob", "color_noise"} <= set(RANGES)


def test_draws_stay_inside_the_committed_ranges(draws):
    for p in draws:
        for name, r in RANGES.items():
            v = getattr(p, name)
            assert r.lo <= v <= r.hi, (name, v)
            if r.integer:
                assert isinstance(v, int)
        for name in UNTOUCHED:  # not ranged: the defaults (and the stride unit)
            assert getattr(p, name) == getattr(BASE, name)
    strides = {p.pixel_stride for p in draws}
    assert strides == set(range(int(RANGES["pixel_stride"].lo), int(RANGES["pixel_stride"].hi) + 1))


def test_log_uniform_ranges_spread_over_orders_of_magnitude(draws):
    for name, r in RANGES.items():
        if r.integer:  # evenly over lo..hi, checked below
            counts = np.bincount([getattr(p, name) for p in draws])[int(r.lo):]
            assert counts.min() > 0.8 * len(draws) / len(counts), name
            continue
        pos = np.array([range_position(getattr(p, name), r) for p in draws])
        # uniform on the range's own scale: deciles of the position near 0.1, ..., 0.9
        assert np.abs(np.quantile(pos, np.linspace(0.1, 0.9, 9)) - np.linspace(0.1, 0.9, 9)).max() < 0.05, name
        if r.log:  # a decade or more, each decade its share
            assert r.hi / r.lo >= 10, name
            values = np.array([getattr(p, name) for p in draws])
            share = (values < 10 * r.lo).mean()
            assert share == pytest.approx(min(1.0, 1 / math.log10(r.hi / r.lo)), abs=0.05), name
            # the lowest tenth of the span gets >= 28% (log10(1.9)), a linear draw 10%
            assert (values < r.lo + 0.1 * (r.hi - r.lo)).mean() > 0.25, name


def test_draws_are_deterministic_for_a_seed():
    a = draw_params(np.random.default_rng([7, 1000, 3]))
    b = draw_params(np.random.default_rng([7, 1000, 3]))
    c = draw_params(np.random.default_rng([7, 1000, 4]))
    assert a == b and asdict(a) != asdict(c)


def test_position_and_centre_distance_on_hand_made_ranges():
    log = Range(1.0, 100.0, "test", log=True)
    assert range_position(10.0, log) == pytest.approx(0.5) and centre_distance(10.0, log) == pytest.approx(0.0)
    assert range_position(1.0, log) == 0.0 and centre_distance(100.0, log) == pytest.approx(0.5)
    assert range_position(1000.0, log) == pytest.approx(1.5)  # outside: said, not clipped
    assert range_position(0.0, log) == -math.inf
    lin = Range(0.0, 4.0, "test")
    assert range_position(1.0, lin) == 0.25 and centre_distance(1.0, lin) == 0.25
    assert centre_distance(3.0, lin) == 0.25 and range_position(-2.0, lin) == -0.5
    ranges = {"keep_main": Range(0.0, 2.0, "test"), "thicken_px": Range(0.25, 4.0, "test", log=True)}
    rows = {r["parameter"]: r for r in fitted_positions(("typical", "harsh"), ranges)}
    assert set(rows) == set(ranges)
    km = rows["keep_main"]["harsh"]
    assert km["value"] == ARTEFACT_PRESETS["harsh"].keep_main and km["fitted"]
    assert km["position"] == pytest.approx(ARTEFACT_PRESETS["harsh"].keep_main / 2)
    tp = rows["thicken_px"]["typical"]  # typical's 0.5 px: 1 of the range's 4 doublings
    assert tp["position"] == pytest.approx(0.25) and tp["centre_distance"] == pytest.approx(0.25)
    assert not tp["fitted"] and rows["thicken_px"]["scale"] == "log"
    with pytest.raises(ValueError, match="lo < hi"):
        Range(0.0, 1.0, "test", log=True)


def test_no_range_is_centred_on_a_fitted_value():
    for row in fitted_positions(CALIBRATED_PRESETS):
        for p in CALIBRATED_PRESETS:
            if row["parameter"] in FITTED_FIELDS:
                assert row[p]["fitted"]
                assert row[p]["centre_distance"] >= CENTRE_RULE, (p, row["parameter"], row[p])


def test_committed_report_is_what_the_command_writes(tmp_path, capsys):
    out = tmp_path / "report.md"
    assert main(["--out", str(out)]) == 0 and str(out) in capsys.readouterr().out
    text = out.read_text()
    assert text == report_markdown()
    assert "python -m data_tools.artefact_ranges" in text and "**fitted**" in text
    assert all(f"| {name} |" in text for name in RANGES)
    assert (REPO / REPORT).read_text() == text  # regenerate it after editing the ranges
