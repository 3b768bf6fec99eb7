"""Margins of the suite's order-type assertions when the random draw changes.

Another CPU changes the last bits of float work (Embree ray casting, BLAS), which for a
test behaves like a small perturbation of its data. A test is robust if its assertion
still holds when the perturbation is far LARGER: a new seed for the whole random draw.
This script re-runs the fixtures of the fragile-looking tests with other seeds and prints
how much room each assertion has:

- tests/test_photogrammetry.py::test_presets_are_ordered_by_severity (mvs: StereoSGBM
  on rendered photos): completeness mild >= typical >= harsh (main, tie) and median error
  mild <= typical <= harsh, for capture seeds 0-3 (the test uses 0);
- tests/test_artefact_model.py::test_presets_are_ordered_by_severity (fast model): the
  strict orders it asserts, for seeds 0-4 (the test uses 0);
- tests/test_prepare.py::test_fit_ground_plane_orientation_and_determinism (RANSAC,
  numpy, seeded): normal angle < 0.2 deg, for RANSAC seeds 0-9 (the test uses 1).

    python experiments/test_margins.py        # -> experiments/results/reliability/test_margins.md
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def mvs_severity(seed: int) -> dict:
    from tests.test_photogrammetry import column_by_preset_for_seed

    out = {name: stats for name, (stats, _, _) in column_by_preset_for_seed(seed)[1].items()}
    # room of each >= / <= assertion (positive = holds)
    room = {}
    for c, cls in ((1, "main"), (2, "tie")):
        room[f"completeness {cls} mild-typical"] = out["mild"].completeness[c] - out["typical"].completeness[c]
        room[f"completeness {cls} typical-harsh"] = out["typical"].completeness[c] - out["harsh"].completeness[c]
    room["median error typical-mild (mm)"] = 1e3 * (out["typical"].accuracy_median - out["mild"].accuracy_median)
    room["median error harsh-typical (mm)"] = 1e3 * (out["harsh"].accuracy_median - out["typical"].accuracy_median)
    return room


def fast_severity(seed: int) -> dict:
    from data_tools.artefact_model import ARTEFACT_PRESETS
    from tests.test_artefact_model import _case_stats, _column_case, _run

    mesh, cams = _column_case()
    st = {n: _case_stats(mesh, _run(mesh, cams, ARTEFACT_PRESETS[n], seed=seed)[0])
          for n in ("mild", "typical", "harsh")}
    m, t, h = st["mild"], st["typical"], st["harsh"]
    room = {"error typical-mild (mm)": 1e3 * (t["err"] - m["err"]),
            "error harsh-typical (mm)": 1e3 * (h["err"] - t["err"])}
    for k, cls in ((0, "main"), (1, "tie")):
        room[f"thickening {cls} typical-mild (mm)"] = 1e3 * (t["thick"][k] - m["thick"][k])
        room[f"thickening {cls} harsh-typical (mm)"] = 1e3 * (h["thick"][k] - t["thick"][k])
    room["outliers typical-mild"] = t["outliers"] - m["outliers"]
    room["outliers harsh-typical"] = h["outliers"] - t["outliers"]
    for k, cls in ((0, "bg"), (1, "main"), (2, "tie")):
        room[f"completeness {cls} min(mild,typical)-harsh"] = min(m["comp"][k], t["comp"][k]) - h["comp"][k]
    room["tie completeness gap - 0.1"] = min(m["comp"][2], t["comp"][2]) - h["comp"][2] - 0.1
    return room


def ransac(seed: int) -> dict:
    from data_tools.prepare import fit_ground_plane
    from tests.test_prepare import Z, angle_deg, make_scene

    level, is_ground = make_scene(np.random.default_rng(6))
    normal, d, inliers = fit_ground_plane(level, 0.01, seed=seed)
    return {"0.2 deg - normal angle": 0.2 - angle_deg(normal, Z), "0.002 m - |d|": 0.002 - abs(d),
            "ground inliers - 0.99": inliers[is_ground].mean() - 0.99,
            "0.02 - off-ground inliers": 0.02 - inliers[~is_ground].mean()}


def table(title: str, rooms: dict[int, dict]) -> list[str]:
    seeds = sorted(rooms)
    keys = list(rooms[seeds[0]])
    lines = [f"## {title}", "", "| assertion room | " + " | ".join(f"seed {s}" for s in seeds) + " | min |",
             "|" + "---|" * (len(seeds) + 2)]
    for k in keys:
        vals = [rooms[s][k] for s in seeds]
        lines.append(f"| {k} | " + " | ".join(f"{v:+.4f}" for v in vals) + f" | **{min(vals):+.4f}** |")
    return lines + [""]


def main() -> None:
    from da.provenance import git_state, machine_summary

    git = git_state()
    lines = ["# Room left by the suite's order-type assertions under other random draws", "",
             "Command: `python experiments/test_margins.py`  ",
             f"Commit: `{git['commit'][:12]}{'-dirty' if git['dirty'] else ''}`  ",
             f"Machine: {machine_summary()}  ",
             "Each cell is how far the value is on the passing side of the test's bound (negative = the "
             "assertion would fail for that seed). The test itself uses one seed; another CPU perturbs far "
             "less than a new seed does.", ""]
    lines += table("fast artefact model, severity order (test seed 0)", {s: fast_severity(s) for s in range(5)})
    print("\n".join(lines), flush=True)
    lines += table("RANSAC ground plane (test seed 1)", {s: ransac(s) for s in range(10)})
    lines += table("mvs (StereoSGBM) severity order (test seed 0)", {s: mvs_severity(s) for s in range(4)})
    out = REPO / "experiments/results/reliability/test_margins.md"
    out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
