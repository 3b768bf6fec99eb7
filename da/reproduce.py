"""`da reproduce TABLE`: run every row x seed of a table and write its result files.

A table YAML (experiments/tables/NAME.yaml):

    description: text
    configs: [experiments/configs/base.yaml]     # merged first, in order
    primary_metric: target_acc
    metrics: [target_acc, source_val_acc, pad]
    seeds: [0, 1, 2]
    rows:
      - name: dann
        role: adapted            # source_only | adapted | oracle (for the share of gap closed)
        baseline: source_only_bn # optional: the row this one's gap is measured from
        configs: [experiments/configs/extra.yaml]
        overrides: [algorithm.lambda_max=0.3]
        grid: {algorithm.lambda_max: [0.1, 0.3]}   # optional: a sweep, one row per combination
    profiles:
      quick: {overrides: [train.steps=300], seeds: [0, 1], rows: [source_only, dann*]}
      standard: {}
    figure: moons_boundaries     # optional, from da.figures

A profile's `rows` (fnmatch patterns, optional) restricts it to the matching rows.

Order of merging: table configs, row configs, profile overrides, row overrides, then
seed / name / run_dir. Runs already `done` are skipped, so an interrupted table resumes.
Reported numbers are those of the LAST checkpoint. The one column that depends on a
model chosen by labels (best.pt) uses source-validation labels only.
"""

from __future__ import annotations

import itertools
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from da.config import ConfigError, load_config
from da.logging import read_results
from da.provenance import git_state, machine_summary
from da.train import train

TABLE_KEYS = {"description", "configs", "primary_metric", "metrics", "seeds", "rows", "profiles", "figure"}
ROW_KEYS = {"name", "role", "configs", "overrides", "grid", "baseline"}
PROFILE_KEYS = {"overrides", "seeds", "rows"}
ROLES = {"source_only", "adapted", "oracle", None}
# Derived from results.jsonl: target accuracy at the evaluation with the best source-val
# accuracy, i.e. best.pt (selected without target labels).
BEST_SOURCE_VAL = "target_acc_at_best_source_val"


@dataclass
class Row:
    name: str
    role: str | None = None
    configs: list[str] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)
    baseline: str | None = None  # source-only row for the gap closed (default: role source_only)


@dataclass
class Table:
    name: str
    path: Path
    description: str
    configs: list[str]
    primary_metric: str
    metrics: list[str]
    seeds: list[int]
    rows: list[Row]
    profiles: dict[str, dict]
    figure: str | None = None


def _check(keys, valid: set, where: str) -> None:
    unknown = set(keys) - valid
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; valid: {sorted(valid)}")


def expand_grid(row: dict, where: str) -> list[Row]:
    """A row with `grid` becomes one row per combination of the listed values."""
    base = Row(row["name"], row.get("role"), list(row.get("configs", [])), list(row.get("overrides", [])),
               row.get("baseline"))
    if base.role not in ROLES:
        raise ConfigError(f"{where}: row '{base.name}' has role '{base.role}'; valid: source_only, adapted, oracle")
    grid = row.get("grid") or {}
    if not grid:
        return [base]
    keys = list(grid)
    rows = []
    for values in itertools.product(*(grid[k] for k in keys)):
        pairs = [f"{k}={v}" for k, v in zip(keys, values)]
        label = ",".join(f"{k.split('.')[-1]}={v}" for k, v in zip(keys, values))
        rows.append(Row(f"{base.name}[{label}]", base.role, base.configs, base.overrides + pairs, base.baseline))
    return rows


def load_table(name_or_path: str) -> Table:
    path = Path(name_or_path)
    if not path.suffix:
        path = Path("experiments/tables") / f"{name_or_path}.yaml"
    if not path.is_file():
        raise ConfigError(f"table not found: {path}")
    raw = OmegaConf.to_container(OmegaConf.load(path))
    where = str(path)
    _check(raw, TABLE_KEYS, where)
    rows = []
    for row in raw.get("rows", []):
        _check(row, ROW_KEYS, f"{where} row {row.get('name')}")
        rows.extend(expand_grid(row, where))
    if not rows:
        raise ConfigError(f"{where}: a table needs at least one row")
    names = {r.name for r in rows}
    for r in rows:
        if r.baseline and r.baseline not in names:
            raise ConfigError(f"{where}: row '{r.name}' has baseline '{r.baseline}', which is not a row")
    profiles = raw.get("profiles", {}) or {}
    for pname, prof in profiles.items():
        _check(prof or {}, PROFILE_KEYS, f"{where} profile {pname}")
    metrics = list(raw.get("metrics", ["target_acc"]))
    primary = raw.get("primary_metric", metrics[0])
    return Table(path.stem, path, raw.get("description", ""), list(raw.get("configs", [])), primary,
                 metrics, list(raw.get("seeds", [0, 1, 2])), rows, profiles, raw.get("figure"))


def run_dir(runs_root: Path, table: Table, profile: str, row: Row, seed: int) -> Path:
    safe = row.name.replace("/", "_").replace("[", "_").replace("]", "").replace(",", "_").replace("=", "")
    return runs_root / "tables" / table.name / profile / safe / f"seed{seed}"


def row_config(table: Table, profile: str, row: Row, seed: int, runs_root: Path):
    prof = table.profiles.get(profile) or {}
    overrides = list(prof.get("overrides", [])) + row.overrides + [
        f"seed={seed}", f"name={table.name}-{row.name}",
        f"run_dir={run_dir(runs_root, table, profile, row, seed)}"]
    return load_config(table.configs + row.configs, overrides)


def run_metrics(path: Path) -> dict[str, float]:
    results = read_results(path)
    if not results:
        raise RuntimeError(f"{path}: no evaluations in results.jsonl")
    last = dict(results[-1])
    # best.pt keeps the EARLIEST evaluation among ties (the trainer saves on strict gains)
    best = max(results, key=lambda r: (r["source_val_acc"], -r["step"]))
    last[BEST_SOURCE_VAL] = best["target_acc"]
    return last


def run_commit(path: Path) -> str:
    """The code version a run was trained with (from its provenance), not today's."""
    try:
        git = json.loads((path / "provenance.json").read_text())["git"]
    except (OSError, KeyError, json.JSONDecodeError):
        return "unknown"
    return git["commit"][:12] + ("-dirty" if git.get("dirty") else "")


def summarise(values: list[float]) -> dict:
    arr = np.asarray(values, dtype=float)
    std = float(arr.std(ddof=1)) if len(arr) > 1 else 0.0
    return {"mean": float(arr.mean()), "std": std, "values": [float(v) for v in arr]}


def gap_closed(rows: list[dict], primary: str) -> None:
    """Adds `gap_closed` = (adapted - source_only) / (oracle - source_only) to adapted rows.

    The source-only value is the row's own `baseline` row if it names one (a like-for-like
    network), else the table's source_only-role row.
    """
    by_name = {r["name"]: r for r in rows}
    default = next((r for r in rows if r["role"] == "source_only"), None)
    oracle = next((r for r in rows if r["role"] == "oracle"), None)
    if oracle is None:
        return
    hi = oracle["metrics"][primary]["mean"]
    for r in rows:
        if r["role"] != "adapted":
            continue
        base = by_name.get(r["baseline"]) if r.get("baseline") else default
        if base is None:  # e.g. the baseline row was left out with --rows
            continue
        lo = base["metrics"][primary]["mean"]
        if hi > lo:  # otherwise there is no gap to close (e.g. an undertrained oracle)
            r["gap_closed"] = (r["metrics"][primary]["mean"] - lo) / (hi - lo)


def to_markdown(result: dict, metrics: list[str]) -> str:
    lines = [f"# {result['table']} ({result['profile']} profile)", "",
             result.get("description", "").strip(), "",
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
        cells = [r["name"], r["algorithm"]] + ([",".join(map(str, r["seeds"]))] if per_row else [])
        for m in metrics:
            s = r["metrics"][m]
            # one seed has no spread: print the value alone rather than a fake "± 0"
            cells.append(f"{s['mean']:.4f} ± {s['std']:.4f}" if len(s["values"]) > 1 else f"{s['mean']:.4f}")
        if has_gap:
            gap = f"{100 * r['gap_closed']:.0f}%" if "gap_closed" in r else ""
            if gap and r.get("baseline"):
                gap += f" (vs {r['baseline']})"
            cells.append(gap)
        lines.append("| " + " | ".join(cells) + " |")
    if result.get("missing_runs"):
        lines += ["", "**Partial table** (`--finished-only`): not run: " + ", ".join(result["missing_runs"]) + "."]
    if not has_gap and any(r["role"] == "oracle" for r in result["rows"]):
        lines += ["", "No gap closed is given: the train-on-target row does not beat the "
                  "source-only row on the primary metric, so there is no gap to close."]
    if BEST_SOURCE_VAL in metrics:
        lines += ["", f"`{BEST_SOURCE_VAL}`: target accuracy of best.pt, the checkpoint with the best "
                  "source-validation accuracy (no target label is used to select it)."]
    return "\n".join(lines + [""])


def reproduce(name: str, profile: str = "standard", seeds: list[int] | None = None,
              out_dir: Path = Path("experiments/results"), runs_root: Path = Path("runs"),
              command: str | None = None, only_rows: list[str] | None = None,
              finished_only: bool = False) -> dict:
    """only_rows: fnmatch patterns; only matching rows run (e.g. to split a table over processes).
    finished_only: train nothing; tabulate the runs already done (a row keeps the seeds
    it has, rows with none are listed as missing) into NAME.PROFILE.partial.* when any
    run is missing."""
    from fnmatch import fnmatch

    table = load_table(name)
    if profile not in table.profiles:
        raise ConfigError(f"{table.path}: no profile '{profile}'; profiles: {', '.join(table.profiles)}")
    prof = table.profiles.get(profile) or {}
    for patterns, what in ((prof.get("rows"), f"profile {profile}'s rows"), (only_rows, "--rows")):
        if patterns:
            table.rows = [r for r in table.rows if any(fnmatch(r.name, p) for p in patterns)]
            if not table.rows:
                raise ConfigError(f"{table.path}: no row matches {what} {patterns}")
    seeds = list(seeds if seeds is not None else prof.get("seeds", table.seeds))
    configs = {(row.name, s): row_config(table, profile, row, s, runs_root) for row in table.rows for s in seeds}
    rows, missing = [], []
    for row in table.rows:
        values: dict[str, list[float]] = {m: [] for m in table.metrics}
        commits = set()
        row_seeds = [s for s in seeds if not finished_only
                     or (run_dir(runs_root, table, profile, row, s) / "done").exists()]
        missing += [f"{row.name} seed {s}" for s in seeds if s not in row_seeds]
        if not row_seeds:
            continue
        for seed in row_seeds:
            cfg = configs[(row.name, seed)]
            path = train(cfg)
            commits.add(run_commit(path))
            final = run_metrics(path)
            for m in table.metrics:
                if m not in final:
                    raise ConfigError(f"{table.path}: metric '{m}' not logged; logged: {sorted(final)}")
                values[m].append(final[m])
        algorithm = configs[(row.name, row_seeds[0])].algorithm.name
        rows.append({"name": row.name, "algorithm": algorithm, "role": row.role, "baseline": row.baseline,
                     "seeds": row_seeds,
                     "run_dirs": [str(run_dir(runs_root, table, profile, row, s)) for s in row_seeds],
                     "run_commits": sorted(commits),
                     "metrics": {m: summarise(v) for m, v in values.items()}})
    gap_closed(rows, table.primary_metric)
    git = git_state()
    result = {
        "table": table.name, "profile": profile, "description": table.description,
        "command": command or f"da reproduce {table.name} --profile {profile}",
        "git_commit": git["commit"] + ("-dirty" if git["dirty"] else ""),
        "machine": machine_summary(), "primary_metric": table.primary_metric, "seeds": seeds,
        "rows": rows,
    }
    if missing:
        result["missing_runs"] = missing
    out_dir.mkdir(parents=True, exist_ok=True)
    # A subset (--rows, or other seeds than the profile's) must not overwrite the full table.
    subset = bool(only_rows) or seeds != list(prof.get("seeds", table.seeds))
    stem = out_dir / f"{table.name}.{profile}{'.subset' if subset else ''}{'.partial' if missing else ''}"
    if table.figure:
        from da.figures import make_figure

        fig = make_figure(table.figure, result, Path(f"{stem}.png"))
        result["figure"] = fig.name
    Path(f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    md = to_markdown(result, table.metrics)
    if "figure" in result:
        md += f"\n![{table.figure}]({result['figure']})\n"
    Path(f"{stem}.md").write_text(md)
    print(md, flush=True)
    return result


def command_line() -> str:
    return "da " + " ".join(sys.argv[1:])
