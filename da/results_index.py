"""Where results live: one folder per study under experiments/results/, and INDEX.md over them.

    experiments/results/
      INDEX.md            study -> question -> table -> command -> commit -> machine (CPU model)
      moons/ digits/ transfer/ rebar2d/ rebar3d/ reliability/ benchmarks/
        README.md         the study's question, its current table, how it was made
        NAME.PROFILE.md / .json    tables written by `da reproduce` (a table's `study` key)
        ...               what the study's scripts under experiments/ write
      archive/            superseded files, each listed in archive/README.md with what replaced it

`da reproduce` writes a table into its study's folder and rewrites INDEX.md; `da index`
rewrites it by hand (after a script under experiments/ wrote a file). A study's question is
the first paragraph of its README.md after the title. A table is any JSON with a "table"
key (what `da reproduce` writes); every other file of the folder is listed under it.
"""

from __future__ import annotations

import json
from pathlib import Path

RESULTS_ROOT = Path("experiments/results")
# The order the index lists them in; a folder not named here comes after, alphabetically.
STUDIES = ["moons", "digits", "transfer", "rebar2d", "rebar3d", "reliability", "benchmarks"]
ARCHIVE = "archive"
INDEX = "INDEX.md"


def study_folder(study: str, root: Path = RESULTS_ROOT) -> Path:
    return root / study


def question(folder: Path) -> str:
    """The first paragraph after the README's title, on one line."""
    readme = folder / "README.md"
    if not readme.exists():
        return "(no README.md)"
    paragraph: list[str] = []
    for line in readme.read_text().splitlines():
        if line.startswith("#"):
            if paragraph:
                break
            continue
        if not line.strip():
            if paragraph:
                break
            continue
        paragraph.append(line.strip())
    return " ".join(paragraph) or "(README.md has no paragraph)"


def table_line(path: Path, info: dict, folder: Path) -> str:
    md = path.with_suffix(".md")
    shown = md if md.exists() else path
    link = f"[{shown.relative_to(folder)}]({folder.name}/{shown.relative_to(folder)})"
    if md.exists():
        link += f" ([json]({folder.name}/{path.relative_to(folder)}))"
    commit = str(info.get("git_commit", "?"))[:12]
    return f"| {link} | `{info.get('command', '?')}` | `{commit}` | {info.get('machine', '?')} |"


def table_info(path: Path) -> dict | None:
    """What `da reproduce` recorded, if `path` is one of its table JSONs."""
    if path.suffix != ".json":
        return None
    try:
        info = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return info if isinstance(info, dict) and "table" in info else None


def study_section(folder: Path) -> list[str]:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != "README.md")
    tables = {p: info for p in files if (info := table_info(p)) is not None}
    table_files = {t for p in tables for t in (p, p.with_suffix(".md"), p.with_suffix(".png"))}
    others = [p for p in files if p not in table_files]
    lines = [f"## [{folder.name}]({folder.name}/README.md)", "", question(folder), ""]
    if tables:
        lines += ["| table | command | commit | machine |", "|---|---|---|---|"]
        lines += [table_line(p, info, folder) for p, info in tables.items()]
        lines.append("")
    if others:
        lines.append("Other files: " + ", ".join(
            f"[{p.relative_to(folder)}]({folder.name}/{p.relative_to(folder)})" for p in others) + ".")
        lines.append("")
    return lines


def render_index(root: Path = RESULTS_ROOT) -> str:
    folders = [p for p in root.iterdir() if p.is_dir() and p.name != ARCHIVE]
    order = {s: k for k, s in enumerate(STUDIES)}
    folders.sort(key=lambda p: (order.get(p.name, len(order)), p.name))
    lines = ["# Results index", "",
             "One folder per study; each README says the question, the current table and how it was made. "
             "Rewritten by `da reproduce` and `da index` (da/results_index.py): do not edit by hand. "
             "Machine = what the table recorded (the CPU model since tables began recording it).", ""]
    for folder in folders:
        lines += study_section(folder)
    if (root / ARCHIVE).is_dir():
        lines += [f"## [archive]({ARCHIVE}/README.md)", "", question(root / ARCHIVE), ""]
    return "\n".join(lines) + "\n"


def write_index(root: Path = RESULTS_ROOT) -> Path:
    path = root / INDEX
    path.write_text(render_index(root))
    return path
