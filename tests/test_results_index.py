"""Results a reader can find: study folders, INDEX.md kept current, links that resolve."""

from __future__ import annotations

import json
import re

from da.cli import main
from da.results_index import RESULTS_ROOT, render_index
from tests.conftest import REPO

LINK = re.compile(r"\]\(([^)#]+)\)")


def test_committed_index_is_current():
    committed = (REPO / RESULTS_ROOT / "INDEX.md").read_text()
    assert render_index(REPO / RESULTS_ROOT) == committed, "experiments/results/INDEX.md is stale: run `da index`"


def test_every_results_file_is_two_clicks_from_the_index_and_every_link_resolves():
    root = REPO / RESULTS_ROOT
    index = (root / "INDEX.md").read_text()
    linked = {(root / link).resolve() for link in LINK.findall(index)}
    second = {(doc.parent / link).resolve() for doc in linked if doc.suffix == ".md" and doc.exists()
              for link in LINK.findall(doc.read_text())}  # e.g. a table's figure, embedded in its .md
    for path in root.rglob("*"):
        if path.is_file() and path.name != "INDEX.md" and root / "archive" not in path.parents:
            assert path.resolve() in linked | second, f"{path} is not within two clicks of INDEX.md"
    for doc in [root / "INDEX.md", *root.glob("*/README.md")]:
        for link in LINK.findall(doc.read_text()):
            if not link.startswith("http"):
                assert (doc.parent / link).exists(), f"{doc}: broken link {link}"


def test_reproduce_writes_into_the_study_folder_and_updates_the_index(tmp_path, monkeypatch, data_root):
    (tmp_path / "experiments/tables").mkdir(parents=True)
    (tmp_path / "experiments/tables/toy.yaml").write_text(f"""
description: a toy
study: toys
configs: [{REPO}/experiments/configs/moons.yaml]
primary_metric: target_acc
metrics: [target_acc]
rows:
  - name: source_only
    role: source_only
profiles:
  quick:
    seeds: [0]
    overrides: [train.steps=5, train.eval_every=5, train.checkpoint_every=5, 'data.root={data_root}']
""")
    (tmp_path / "experiments/results/toys").mkdir(parents=True)
    (tmp_path / "experiments/results/toys/README.md").write_text("# Toys\n\nDo toys train?\n")
    monkeypatch.chdir(tmp_path)
    assert main(["reproduce", "toy", "--profile", "quick", "--name", "toy_named"]) == 0
    out = tmp_path / "experiments/results/toys"
    recorded = json.loads((out / "toy_named.json").read_text())
    assert recorded["table"] == "toy" and (out / "toy_named.md").exists()
    assert not (tmp_path / "experiments/results/toy.quick.md").exists()  # the study folder, not the root
    index = (tmp_path / "experiments/results/INDEX.md").read_text()
    assert "Do toys train?" in index and "[toy_named.md](toys/toy_named.md) ([json](toys/toy_named.json))" in index
    assert f"`{recorded['command']}`" in index
