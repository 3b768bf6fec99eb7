"""What a table says: mean ± std over seeds per row, the share of the gap each adapted row
closes, the model-selection reports, and the markdown of it all."""

from __future__ import annotations

import numpy as np

# Derived from results.jsonl: target accuracy at the evaluation with the best source-val
# accuracy, i.e. best.pt (selected without target labels).
BEST_SOURCE_VAL = "target_acc_at_best_source_val"


TARGET_PICK = "target labels"  # the selection no user can make; shown for comparison only


def summarise(values: list[float]) -> dict:
    arr = np.asarray(values, dtype=float)
    std = float(arr.std(ddof=1)) if len(arr) > 1 else 0.0
    return {"mean": float(arr.mean()), "std": std, "values": [float(v) for v in arr]}


def gap_closed(rows: list[dict], primary: str) -> None:
    """Adds `gap_closed` = (adapted - source_only) / (oracle - source_only) to adapted rows.

    The source-only value is the row's own `baseline` row if it names one (a like-for-like
    network), else the table's source_only-role row; the oracle likewise (`oracle`, else
    the first oracle-role row). Also `gap_spread_ratio` = gap / the baseline's seed std:
    the markdown shows gap closed only where it is >= 3 (below, the gap is seed noise).
    """
    by_name = {r["name"]: r for r in rows}
    default = next((r for r in rows if r["role"] == "source_only"), None)
    first_oracle = next((r for r in rows if r["role"] == "oracle"), None)
    for r in rows:
        if r["role"] != "adapted":
            continue
        base = by_name.get(r["baseline"]) if r.get("baseline") else default
        oracle = by_name.get(r["oracle"]) if r.get("oracle") else first_oracle
        if base is None or oracle is None:  # e.g. the baseline row was left out with --rows
            continue
        hi = oracle["metrics"][primary]["mean"]
        lo = base["metrics"][primary]["mean"]
        spread = base["metrics"][primary]["std"]
        if spread > 0:
            r["gap_spread_ratio"] = (hi - lo) / spread
        if hi > lo:  # otherwise there is no gap to close (e.g. an undertrained oracle)
            r["gap_closed"] = (r["metrics"][primary]["mean"] - lo) / (hi - lo)


def score_target_rank_correlation(rep: dict, validator: str) -> float | None:
    """Spearman correlation of a validator's score with the target metric over every trained
    (grid point, seed) run: +1 means the validator ranks runs as target labels would. It says
    whether a validator failed by noise (near 0) or by preferring the wrong runs (negative)."""
    scores = np.concatenate([g["scores"][validator]["values"] for g in rep["grid"]])
    target = np.concatenate([g["target"]["values"] for g in rep["grid"]])
    if len(scores) < 3 or np.ptp(scores) == 0 or np.ptp(target) == 0:
        return None
    return float(np.corrcoef(_ranks(scores), _ranks(target))[0, 1])


def _ranks(values: np.ndarray) -> np.ndarray:
    """Ranks with ties given their mean rank (as Spearman's coefficient needs)."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(len(values), dtype=float)
    for v in np.unique(values):
        tied = values == v
        ranks[tied] = ranks[tied].mean()
    return ranks


def selection_markdown(reports: list[dict], primary: str) -> list[str]:
    lines = []
    for rep in reports:
        vs = rep["validators"]
        lines += ["", f"## Model selection: `{rep['family']}` (validators {', '.join(vs)}; "
                  f"`{vs[0]}` is the one the table stands behind)", "",
                  f"Every grid point below was trained for seeds {rep['seeds']}. Per seed, each validator "
                  "picks the grid point it scores best, reading no target label (reverse: accuracy of the "
                  "reverse run on source_val; dev: minus the importance-weighted source-val risk; "
                  "source_val: source-validation accuracy). The `<- target labels` row picks by "
                  f"target-test {primary}: no user can do that; it is here only to measure the validators.", "",
                  "| grid point | " + " | ".join(f"{v} score" for v in vs) + f" | target {primary} |",
                  "|" + "---|" * (len(vs) + 2)]
        for g in rep["grid"]:
            cells = [f"{g['scores'][v]['mean']:.4f}" for v in vs] + [
                f"{g['target']['mean']:.4f} ± {g['target']['std']:.4f}"]
            lines.append(f"| {g['name']} | " + " | ".join(cells) + " |")
        n = len(rep["seeds"])
        lines += [""] + [f"- `{v}`: agreed with the target-label pick on {rep['agreement'][v]} of {n} seeds; "
                         f"its picks are {100 * rep['below_target_pick'][v]:.1f} points below the "
                         "target-label picks on the mean; picks by seed: "
                         + ", ".join(f"{s}: {p.split('[', 1)[-1].rstrip(']')}" for s, p in rep["picks"][v].items())
                         for v in vs]
        lines.append("- target labels would pick: " + ", ".join(
            f"{s}: {p.split('[', 1)[-1].rstrip(']')}" for s, p in rep["picks"][TARGET_PICK].items()))
        runs = sum(len(g["target"]["values"]) for g in rep["grid"])
        rhos = {v: score_target_rank_correlation(rep, v) for v in vs}
        lines.append(f"- rank correlation (Spearman) of each validator's score with target {primary} over "
                     f"the {runs} runs: " + ", ".join(
                         f"{v} {'n/a' if r is None else f'{r:+.2f}'}" for v, r in rhos.items()))
    return lines


def to_markdown(result: dict, metrics: list[str]) -> str:
    lines = [f"# {result['table']} ({result['profile']} profile)", "",
             result.get("description", "").strip(), "",
             *([f"**This profile ({result['profile']}):** {result['profile_description']}", ""]
               if result.get("profile_description") else []),
             f"Command: `{result['command']}`  ",
             f"Commit: `{result['git_commit']}` (table written); runs trained at: "
             + ", ".join(f"`{c}`" for c in sorted({c for r in result["rows"] for c in r["run_commits"]}))
             + "  ",
             f"Machine: {result['machine']}  ",
             f"Seeds: {result['seeds']}; numbers are mean ± std (sample std) over seeds, "
             "taken at the LAST checkpoint.", ""]
    per_row = len({len(r["seeds"]) for r in result["rows"]}) > 1
    header = ["row", "algorithm"] + (["seeds"] if per_row else []) + metrics
    has_gap = any("gap_closed" in r for r in result["rows"])
    if has_gap:
        header.append("gap closed")
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in result["rows"]:
        name = r["name"] + (" (target-calibrated)" if r.get("target_calibrated") else "")
        cells = [name, r["algorithm"]] + ([",".join(map(str, r["seeds"]))] if per_row else [])
        for m in metrics:
            s = r["metrics"][m]
            # one seed has no spread: print the value alone rather than a fake "± 0"
            cells.append(f"{s['mean']:.4f} ± {s['std']:.4f}" if len(s["values"]) > 1 else f"{s['mean']:.4f}")
        if has_gap:
            gap = f"{100 * r['gap_closed']:.0f}%" if "gap_closed" in r else ""
            if gap and r.get("gap_spread_ratio", 3.0) < 3.0:  # the rule: gap >= 3x seed spread
                gap = f"({gap}: gap < 3x seed spread)"
            if gap and r.get("baseline"):
                gap += f" (vs {r['baseline']})"
            cells.append(gap)
        lines.append("| " + " | ".join(cells) + " |")
    if any(r.get("target_calibrated") for r in result["rows"]):
        lines += ["", "**(target-calibrated)**: the row's source includes simulated photogrammetry from an "
                  "artefact preset FITTED to the target's statistics (data_tools.artefact_model."
                  "CALIBRATED_PRESETS) - target-domain supervision, though no target label."]
    if result.get("dirty_runs"):
        lines += ["", "**Trained partly from uncommitted code** (a run commit ends in `-dirty` or is "
                  "unknown): these numbers cannot be reproduced from any commit."]
    if result.get("carried_runs"):
        c = result["carried_runs"]
        lines += ["", f"**Carried runs** (`--carry {c['from']}`): trained earlier, their run "
                  "folders not on this disk; their per-seed metrics (and validator scores) are read "
                  "from that file: " + ", ".join(c["runs"]) + "."]
    if result.get("missing_runs"):
        lines += ["", "**Partial table** (`--finished-only`): not run: " + ", ".join(result["missing_runs"]) + "."]
    adapted = any(r["role"] == "adapted" for r in result["rows"])
    if not has_gap and adapted and any(r["role"] == "oracle" for r in result["rows"]):
        lines += ["", "No gap closed is given: the train-on-target row does not beat the "
                  "source-only row on the primary metric, so there is no gap to close."]
    lines += selection_markdown(result.get("selection", []), result["primary_metric"])
    if BEST_SOURCE_VAL in metrics:
        lines += ["", f"`{BEST_SOURCE_VAL}`: target accuracy of best.pt, the checkpoint with the best "
                  "source-validation accuracy (no target label is used to select it)."]
    return "\n".join(lines + [""])
