"""`da reproduce TABLE`: run every row x seed of a table and write its result files.

A table YAML (experiments/tables/NAME.yaml):

    description: text
    study: rebar2d                               # results folder: experiments/results/rebar2d/
    configs: [experiments/configs/base.yaml]     # merged first, in order
    primary_metric: target_acc
    metrics: [target_acc, source_val_acc, pad]
    seeds: [0, 1, 2]
    rows:
      - name: dann
        role: adapted            # source_only | adapted | oracle (for the share of gap closed)
        baseline: source_only_bn # optional: the row this one's gap is measured from
        oracle: train_on_target_x # optional: the oracle row of that gap (default: the first)
        configs: [experiments/configs/extra.yaml]
        overrides: [algorithm.lambda_max=0.3]
        grid: {algorithm.lambda_max: [0.1, 0.3]}   # optional: a sweep, one row per combination
        select: [reverse, dev, source_val]        # optional, with grid: unsupervised model selection
        init_from: source_only   # optional: start from that row's run of the same seed
                                 # (trained first if missing; e.g. AdaBN, self-training)
        weights_from: pretrain   # optional: model.weights = that row's seed-0 run folder
                                 # (one pretrained backbone for every seed; trained first)
    profiles:
      quick: {overrides: [train.steps=300], seeds: [0, 1], rows: [source_only, dann*]}
      standard: {}
    figure: moons_boundaries     # optional, from da.figures

A profile's `rows` (fnmatch patterns, optional) restricts it to the matching rows, and its
`row_seeds` (optional, {row: [seeds]}) gives some rows fewer of its seeds (the table's
seeds column then says which).

`select` (da.validation) scores every grid point of a row, seed by seed, with each listed
validator only; per seed the best-scored grid point is picked, and the table gains one row
per validator, "NAME <- VALIDATOR", holding the picked runs (mean ± std over seeds). For
comparison only, the row "NAME <- target labels" picks by target-test accuracy: that
is what no real user can do, and the markdown says so. The first validator is the one
the table stands behind.

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
from da.results_index import study_folder, write_index
from da.train import train

TABLE_KEYS = {"description", "study", "configs", "primary_metric", "metrics", "seeds", "rows", "profiles",
              "figure"}
ROW_KEYS = {"name", "role", "configs", "overrides", "grid", "baseline", "select", "init_from",
            "weights_from", "oracle"}
# weights_from: the pretrained network is ONE run (this seed) of the named row; the rows
# built on it vary their own seed only (head initialisation, batches, augmentation).
WEIGHTS_SEED = 0
PROFILE_KEYS = {"overrides", "seeds", "rows", "row_seeds"}
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
    family: str | None = None  # the grid row this one was expanded from
    select: list[str] = field(default_factory=list)  # validators choosing among the family
    init_from: str | None = None  # a row whose run of the same seed gives the initial weights
    weights_from: str | None = None  # a row whose WEIGHTS_SEED run is the pretrained backbone
    oracle: str | None = None  # the oracle row for the gap closed (default: the first oracle row)


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
    study: str = ""  # its results folder: experiments/results/<study>/ (da.results_index)


def _check(keys, valid: set, where: str) -> None:
    unknown = set(keys) - valid
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; valid: {sorted(valid)}")


def expand_grid(row: dict, where: str) -> list[Row]:
    """A row with `grid` becomes one row per combination of the listed values."""
    from da.validation import VALIDATORS

    select = list(row.get("select") or [])
    base = Row(row["name"], row.get("role"), list(row.get("configs", [])), list(row.get("overrides", [])),
               row.get("baseline"), row["name"], select, row.get("init_from"), row.get("weights_from"),
               row.get("oracle"))
    if base.role not in ROLES:
        raise ConfigError(f"{where}: row '{base.name}' has role '{base.role}'; valid: source_only, adapted, oracle")
    unknown = [v for v in select if v not in VALIDATORS]
    if unknown:
        raise ConfigError(f"{where}: row '{base.name}' selects with unknown validator(s) {unknown}; "
                          f"registered: {', '.join(sorted(VALIDATORS))}")
    grid = row.get("grid") or {}
    if select and not grid:
        raise ConfigError(f"{where}: row '{base.name}' has `select` but no `grid` to select from")
    if not grid:
        return [base]
    keys = list(grid)
    rows = []
    for values in itertools.product(*(grid[k] for k in keys)):
        pairs = [f"{k}={v}" for k, v in zip(keys, values)]
        label = ",".join(f"{k.split('.')[-1]}={v}" for k, v in zip(keys, values))
        rows.append(Row(f"{base.name}[{label}]", base.role, base.configs, base.overrides + pairs,
                        base.baseline, base.name, select, base.init_from, base.weights_from, base.oracle))
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
        if r.oracle and r.oracle not in names:
            raise ConfigError(f"{where}: row '{r.name}' has oracle '{r.oracle}', which is not a row")
        for key in ("init_from", "weights_from"):
            other = getattr(r, key)
            if other and (other not in names or other == r.name):
                raise ConfigError(f"{where}: row '{r.name}' has {key} '{other}', which is not another row")
    profiles = raw.get("profiles", {}) or {}
    for pname, prof in profiles.items():
        _check(prof or {}, PROFILE_KEYS, f"{where} profile {pname}")
    metrics = list(raw.get("metrics", ["target_acc"]))
    primary = raw.get("primary_metric", metrics[0])
    return Table(path.stem, path, raw.get("description", ""), list(raw.get("configs", [])), primary,
                 metrics, list(raw.get("seeds", [0, 1, 2])), rows, profiles, raw.get("figure"),
                 str(raw.get("study", path.stem)))


def run_dir(runs_root: Path, table: Table, profile: str, row: Row, seed: int) -> Path:
    safe = row.name.replace("/", "_").replace("[", "_").replace("]", "").replace(",", "_").replace("=", "")
    return runs_root / "tables" / table.name / profile / safe / f"seed{seed}"


def row_config(table: Table, profile: str, row: Row, seed: int, runs_root: Path):
    prof = table.profiles.get(profile) or {}
    init = []
    if row.init_from:  # the same seed's run of that row, in this profile
        start = Row(row.init_from)
        init = [f"train.init_from={run_dir(runs_root, table, profile, start, seed)}"]
    if row.weights_from:  # the one pretrained network (a run folder: its backbone is read)
        init.append(f"model.weights={run_dir(runs_root, table, profile, Row(row.weights_from), WEIGHTS_SEED)}")
    overrides = list(prof.get("overrides", [])) + row.overrides + init + [
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


TARGET_PICK = "target labels"  # the selection no user can make; shown for comparison only


def _picked_row(family: str, by: str, members: list[dict], picks: dict[int, str], metrics: list[str]) -> dict:
    """A table row made of, for each seed, the run of the grid point picked for that seed."""
    by_name = {m["name"]: m for m in members}
    seeds = sorted(picks)
    values = {k: [by_name[picks[s]]["per_seed"][s][k] for s in seeds] for k in metrics}
    first = members[0]
    return {"name": f"{family} <- {by}", "algorithm": first["algorithm"], "role": first["role"],
            "baseline": first["baseline"], "oracle": first.get("oracle"), "seeds": seeds, "selected_by": by,
            "picks": {str(s): picks[s] for s in seeds},
            "run_dirs": [by_name[picks[s]]["run_dirs"][by_name[picks[s]]["seeds"].index(s)] for s in seeds],
            "run_commits": sorted({c for s in seeds for c in by_name[picks[s]]["run_commits"]}),
            "metrics": {k: summarise(v) for k, v in values.items()}}


def load_carry(path: Path) -> tuple[dict[str, dict], dict[tuple[str, int, str], float]]:
    """(plain rows by name, validator scores by (grid point, seed, validator)) of a results JSON."""
    try:
        old = json.loads(Path(path).read_text())
        rows = {r["name"]: r for r in old["rows"] if "selected_by" not in r}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"--carry {path}: not a results JSON of da reproduce ({type(exc).__name__}: {exc})") from None
    scores = {}
    for rep in old.get("selection", []):
        for g in rep["grid"]:
            for v, summary in g["scores"].items():
                for s, value in zip(rep["seeds"], summary["values"]):
                    scores[(g["name"], int(s), v)] = value
    return rows, scores


def select_rows(table: Table, rows: list[dict], device: str = "cpu", cached_only: bool = False,
                carried_scores: dict | None = None) -> tuple[list[dict], list[dict]]:
    """Unsupervised model selection over each grid row that declares `select`.

    cached_only (--finished-only): use scores already computed, train no reverse run;
    seeds lacking a score for some grid point are left out of the selection.
    Returns (picked rows, one report per family). Every grid point is scored per seed by
    each validator (da.validation; no target label is read); the target-label pick is
    computed beside them only to say how far each validator lands from it."""
    from da.validation import validate_run

    picked, reports = [], []
    families: dict[str, list[Row]] = {}
    for r in table.rows:
        if r.select:
            families.setdefault(r.family, []).append(r)
    by_name = {r["name"]: r for r in rows}
    for family, members in families.items():
        done = [by_name[m.name] for m in members if m.name in by_name]
        if not done:
            continue
        seeds = sorted(set.intersection(*(set(m["seeds"]) for m in done)))
        validators = members[0].select
        scores = {v: {m["name"]: {} for m in done} for v in validators}
        for m in done:
            for s in seeds:
                path = Path(m["run_dirs"][m["seeds"].index(s)])
                for v in validators:
                    if not path.exists():  # a carried run: its score comes with it (or is missing)
                        scores[v][m["name"]][s] = (carried_scores or {}).get((m["name"], s, v))
                        continue
                    got = validate_run(path, v, device, cached_only)
                    scores[v][m["name"]][s] = None if got is None else got["score"]
        seeds = [s for s in seeds if all(scores[v][m["name"]][s] is not None for v in validators for m in done)]
        if not seeds:
            continue
        target = {m["name"]: {s: m["per_seed"][s][table.primary_metric] for s in seeds} for m in done}
        choices = {v: {s: max(done, key=lambda m, v=v, s=s: scores[v][m["name"]][s])["name"] for s in seeds}
                   for v in validators}
        choices[TARGET_PICK] = {s: max(done, key=lambda m, s=s: target[m["name"]][s])["name"] for s in seeds}
        for by, picks in choices.items():
            picked.append(_picked_row(family, by, done, picks, table.metrics))
        best_mean = float(np.mean([target[choices[TARGET_PICK][s]][s] for s in seeds]))
        reports.append({
            "family": family, "validators": validators, "seeds": seeds,
            "grid": [{"name": m["name"],
                      "scores": {v: summarise([scores[v][m["name"]][s] for s in seeds]) for v in validators},
                      "target": summarise([target[m["name"]][s] for s in seeds])} for m in done],
            "agreement": {v: sum(choices[v][s] == choices[TARGET_PICK][s] for s in seeds) for v in validators},
            "below_target_pick": {v: best_mean - float(np.mean([target[choices[v][s]][s] for s in seeds]))
                                  for v in validators},
            "picks": {by: {str(s): p for s, p in picks.items()} for by, picks in choices.items()}})
    return picked, reports


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
    return lines


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
            if gap and r.get("gap_spread_ratio", 3.0) < 3.0:  # the rule: gap >= 3x seed spread
                gap = f"({gap}: gap < 3x seed spread)"
            if gap and r.get("baseline"):
                gap += f" (vs {r['baseline']})"
            cells.append(gap)
        lines.append("| " + " | ".join(cells) + " |")
    if result.get("dirty_runs"):
        lines += ["", "**Trained partly from uncommitted code** (a run commit ends in `-dirty` or is "
                  "unknown): these numbers cannot be reproduced from any commit."]
    if result.get("carried_runs"):
        c = result["carried_runs"]
        lines += ["", f"**Carried runs** (`--carry {c['from']}`): trained in an earlier session whose run "
                  "folders are not on this disk; their per-seed metrics (and validator scores) are read "
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


def reproduce(name: str, profile: str = "standard", seeds: list[int] | None = None,
              out_dir: Path | None = None, runs_root: Path = Path("runs"),
              command: str | None = None, only_rows: list[str] | None = None,
              finished_only: bool = False, allow_dirty: bool = False,
              carry: Path | None = None, stem_name: str | None = None) -> dict:
    """out_dir: where the table goes; None = its study's folder, experiments/results/<study>/,
    and the results index (INDEX.md) is rewritten.
    stem_name: the files' name without suffix (default TABLE.PROFILE[.subset][.partial]), for
    a subset kept beside the full table, e.g. rebar2d_long_six_seeds.
    only_rows: fnmatch patterns; only matching rows run (e.g. to split a table over processes).
    finished_only: train nothing; tabulate the runs already done (a row keeps the seeds
    it has, rows with none are listed as missing) into NAME.PROFILE.partial.* when any
    run is missing.
    allow_dirty: train a non-quick profile from a tree with uncommitted changes anyway;
    the table says so. Without it such a table is refused: its numbers would come from
    code nobody can check out.
    carry (with finished_only): a results JSON written earlier (e.g. by another session,
    whose runs/ folder is gone); a row's seed with no finished run here takes that file's
    per-seed metrics (and validator scores, for model selection), and the table lists
    every carried run with the commit it came from."""
    from fnmatch import fnmatch

    table = load_table(name)
    if carry is not None and not finished_only:
        raise ConfigError("--carry only tabulates (it needs --finished-only): runs it carries are not retrained")
    if profile not in table.profiles:
        raise ConfigError(f"{table.path}: no profile '{profile}'; profiles: {', '.join(table.profiles)}")
    git = git_state()
    if git["dirty"] and profile != "quick" and not finished_only and not allow_dirty:
        raise ConfigError(f"the working tree has uncommitted changes (git status); commit them before "
                          f"training the '{profile}' profile of {table.name}, or pass --allow-dirty "
                          "(the table is then marked as trained from uncommitted code)")
    prof = table.profiles.get(profile) or {}
    all_rows = {r.name: r for r in table.rows}
    for patterns, what in ((prof.get("rows"), f"profile {profile}'s rows"), (only_rows, "--rows")):
        if patterns:
            table.rows = [r for r in table.rows if any(fnmatch(r.name, p) for p in patterns)]
            if not table.rows:
                raise ConfigError(f"{table.path}: no row matches {what} {patterns}")
    seeds = list(seeds if seeds is not None else prof.get("seeds", table.seeds))
    own_seeds = {k: [int(x) for x in v] for k, v in (prof.get("row_seeds") or {}).items()}
    unknown = sorted(set(own_seeds) - set(all_rows))
    if unknown:
        raise ConfigError(f"{table.path}: profile {profile}'s row_seeds names unknown rows {unknown}")
    configs = {(row.name, s): row_config(table, profile, row, s, runs_root) for row in table.rows for s in seeds
               if s in own_seeds.get(row.name, seeds)}
    old_rows, old_scores = load_carry(carry) if carry else ({}, {})
    carried: list[str] = []
    rows, missing = [], []
    for row in table.rows:
        values: dict[str, list[float]] = {m: [] for m in table.metrics}
        commits = set()
        wanted = [s for s in seeds if s in own_seeds.get(row.name, seeds)]
        on_disk = {s for s in wanted if (run_dir(runs_root, table, profile, row, s) / "done").exists()}
        old = old_rows.get(row.name, {}).get("per_seed", {})
        from_carry = {s for s in wanted if finished_only and s not in on_disk and str(s) in old}
        row_seeds = [s for s in wanted if not finished_only or s in on_disk or s in from_carry]
        missing += [f"{row.name} seed {s}" for s in wanted if s not in row_seeds]
        if not row_seeds:
            continue
        per_seed = {}
        run_dirs = []
        for seed in row_seeds:
            if seed in from_carry:
                per_seed[seed] = {m: old[str(seed)][m] for m in table.metrics}
                for m in table.metrics:
                    values[m].append(old[str(seed)][m])
                commits.update(old_rows[row.name]["run_commits"])
                run_dirs.append(f"carried from {carry}")
                carried.append(f"{row.name} seed {seed}")
                continue
            run_dirs.append(str(run_dir(runs_root, table, profile, row, seed)))
            cfg = configs[(row.name, seed)]
            if row.init_from and not finished_only:  # its starting point first (skipped if done)
                train(row_config(table, profile, all_rows[row.init_from], seed, runs_root))
            if row.weights_from and not finished_only:
                train(row_config(table, profile, all_rows[row.weights_from], WEIGHTS_SEED, runs_root))
            path = train(cfg)
            commits.add(run_commit(path))
            final = run_metrics(path)
            for m in table.metrics:
                if m not in final:
                    raise ConfigError(f"{table.path}: metric '{m}' not logged; logged: {sorted(final)}")
                values[m].append(final[m])
            per_seed[seed] = {m: final[m] for m in table.metrics}
        algorithm = configs[(row.name, row_seeds[0])].algorithm.name
        rows.append({"name": row.name, "algorithm": algorithm, "role": row.role, "baseline": row.baseline,
                     "oracle": row.oracle,
                     "seeds": row_seeds,
                     "run_dirs": run_dirs,
                     "run_commits": sorted(commits), "per_seed": per_seed,
                     "metrics": {m: summarise(v) for m, v in values.items()}})
    picked, selection = select_rows(table, rows, cached_only=finished_only, carried_scores=old_scores)
    rows += picked
    gap_closed(rows, table.primary_metric)
    result = {
        "table": table.name, "profile": profile, "description": table.description,
        "command": command or f"da reproduce {table.name} --profile {profile}",
        "git_commit": git["commit"] + ("-dirty" if git["dirty"] else ""),
        "machine": machine_summary(), "primary_metric": table.primary_metric, "seeds": seeds,
        "rows": rows,
    }
    if selection:
        result["selection"] = selection
    if missing:
        result["missing_runs"] = missing
    if carried:
        result["carried_runs"] = {"from": str(carry), "runs": carried}
    if any(c.endswith("-dirty") or c == "unknown" for r in rows for c in r["run_commits"]):
        result["dirty_runs"] = True
    in_results = out_dir is None
    out_dir = study_folder(table.study) if out_dir is None else out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    # A subset (--rows, or other seeds than the profile's) must not overwrite the full table.
    subset = bool(only_rows) or seeds != list(prof.get("seeds", table.seeds))
    default = f"{table.name}.{profile}{'.subset' if subset else ''}{'.partial' if missing else ''}"
    stem = out_dir / (stem_name or default)
    if table.figure:
        from da.figures import make_figure

        fig = make_figure(table.figure, result, Path(f"{stem}.png"))
        result["figure"] = fig.name
    Path(f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    md = to_markdown(result, table.metrics)
    if "figure" in result:
        md += f"\n![{table.figure}]({result['figure']})\n"
    Path(f"{stem}.md").write_text(md)
    if in_results:
        write_index()
    print(md, flush=True)
    return result


def command_line() -> str:
    return "da " + " ".join(sys.argv[1:])
