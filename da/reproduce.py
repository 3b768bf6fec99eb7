"""`da reproduce TABLE`: run every row x seed of a table (da/tables.py) and write its result
files (da/table_report.py) into its study's folder (da/results_index.py).

`select` (da.validation) scores every grid point of a row, seed by seed, with each listed
validator only; per seed the best-scored grid point is picked, and the table gains one row
per validator, "NAME <- VALIDATOR", holding the picked runs (mean ± std over seeds). For
comparison only, the row "NAME <- target labels" picks by target-test accuracy: that
is what no real user can do, and the markdown says so. The first validator is the one
the table stands behind.

Runs already `done` are skipped, so an interrupted table resumes. Reported numbers are
those of the LAST checkpoint. The one column that depends on a model chosen by labels
(best.pt) uses source-validation labels only.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from da.config import ConfigError
from da.provenance import git_state, machine_summary
from da.results_index import study_folder, write_index
from da.run_log import read_results
from da.table_report import (
    BEST_SOURCE_VAL,
    TARGET_PICK,
    gap_closed,
    summarise,
    to_markdown,
)
from da.tables import WEIGHTS_SEED, Row, Table, load_table, row_config, run_dir
from da.train import train


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


def _picked_row(family: str, by: str, members: list[dict], picks: dict[int, str], metrics: list[str]) -> dict:
    """A table row made of, for each seed, the run of the grid point picked for that seed."""
    by_name = {m["name"]: m for m in members}
    seeds = sorted(picks)
    values = {k: [by_name[picks[s]]["per_seed"][s][k] for s in seeds] for k in metrics}
    first = members[0]
    return {"name": f"{family} <- {by}", "algorithm": first["algorithm"], "role": first["role"],
            "target_calibrated": any(by_name[picks[s]].get("target_calibrated") for s in seeds),
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


def target_calibrated(cfg) -> bool:
    """Whether a row's data carries target-domain calibration: simulated photogrammetry of
    the source from an artefact preset fitted to the target (data_tools.artefact_model)."""
    from data_tools.artefact_model import CALIBRATED_PRESETS

    return getattr(cfg.data, "simulated_source", "") in CALIBRATED_PRESETS


def reproduce(name: str, profile: str = "standard", seeds: list[int] | None = None,
              out_dir: Path | None = None, runs_root: Path = Path("runs"),
              command: str | None = None, only_rows: list[str] | None = None,
              finished_only: bool = False, allow_dirty: bool = False,
              carry: Path | None = None, stem_name: str | None = None, overrides: list[str] = ()) -> dict:
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
    carry (with finished_only): a results JSON written earlier (e.g. on another machine,
    whose runs/ folder is gone); a row's seed with no finished run here takes that file's
    per-seed metrics (and validator scores, for model selection), and the table lists
    every carried run with the commit it came from.
    overrides: key=value items for every row (a table's `requires`, e.g. data.path=PHOTOS)."""
    from fnmatch import fnmatch

    table = load_table(name)
    given = {o.split("=", 1)[0].strip() for o in overrides}
    missing_keys = [k for k in table.requires if k not in given]
    if missing_keys:
        raise ConfigError(f"{table.path} needs {', '.join(f'{k}=...' for k in missing_keys)} on the command line "
                          f"(e.g. da reproduce {name} {missing_keys[0]}=YOUR_VALUE)")
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
    configs = {(row.name, s): row_config(table, profile, row, s, runs_root, overrides) for row in table.rows for s in seeds
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
                train(row_config(table, profile, all_rows[row.init_from], seed, runs_root, overrides))
            if row.weights_from and not finished_only:
                train(row_config(table, profile, all_rows[row.weights_from], WEIGHTS_SEED, runs_root, overrides))
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
                     "target_calibrated": target_calibrated(configs[(row.name, row_seeds[0])]),
                     "seeds": row_seeds,
                     "run_dirs": run_dirs,
                     "run_commits": sorted(commits), "per_seed": per_seed,
                     "metrics": {m: summarise(v) for m, v in values.items()}})
    picked, selection = select_rows(table, rows, cached_only=finished_only, carried_scores=old_scores)
    rows += picked
    gap_closed(rows, table.primary_metric)
    result = {
        "table": table.name, "profile": profile, "description": table.description,
        "profile_description": str(prof.get("description") or "").strip(),
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
