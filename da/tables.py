"""Table definitions: the schema of experiments/tables/NAME.yaml, and the config and run
folder of each (row, seed). `da reproduce` (da/reproduce.py) runs them; da/table_report.py
summarises and writes them.

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


Order of merging: table configs, row configs, profile overrides, row overrides, then
seed / name / run_dir.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf

from da.config import ConfigError, load_config

TABLE_KEYS = {"description", "study", "configs", "primary_metric", "metrics", "seeds", "rows", "profiles",
              "figure", "requires"}


ROW_KEYS = {"name", "role", "configs", "overrides", "grid", "baseline", "select", "init_from",
            "weights_from", "oracle"}


# weights_from: the pretrained network is ONE run (this seed) of the named row; the rows
# built on it vary their own seed only (head initialisation, batches, augmentation).
WEIGHTS_SEED = 0


PROFILE_KEYS = {"overrides", "seeds", "rows", "row_seeds", "description"}


ROLES = {"source_only", "adapted", "oracle", None}


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
    # keys every run needs from the command line (e.g. data.path of the user's own folder)
    requires: list[str] = field(default_factory=list)


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
                 str(raw.get("study", path.stem)), [str(k) for k in raw.get("requires", [])])


def run_dir(runs_root: Path, table: Table, profile: str, row: Row, seed: int) -> Path:
    safe = row.name.replace("/", "_").replace("[", "_").replace("]", "").replace(",", "_").replace("=", "")
    return runs_root / "tables" / table.name / profile / safe / f"seed{seed}"


def row_config(table: Table, profile: str, row: Row, seed: int, runs_root: Path, extra: list[str] = ()):
    """The run config of one row and seed; `extra`: the command line's key=value items for
    every row (after the profile's and the row's own)."""
    prof = table.profiles.get(profile) or {}
    init = []
    if row.init_from:  # the same seed's run of that row, in this profile
        start = Row(row.init_from)
        init = [f"train.init_from={run_dir(runs_root, table, profile, start, seed)}"]
    if row.weights_from:  # the one pretrained network (a run folder: its backbone is read)
        init.append(f"model.weights={run_dir(runs_root, table, profile, Row(row.weights_from), WEIGHTS_SEED)}")
    overrides = list(prof.get("overrides", [])) + row.overrides + list(extra) + init + [
        f"seed={seed}", f"name={table.name}-{row.name}",
        f"run_dir={run_dir(runs_root, table, profile, row, seed)}"]
    return load_config(table.configs + row.configs, overrides)
