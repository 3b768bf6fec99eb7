"""The shape of the library: no import circle in da/, no module over 450 lines, and
neither the trainer nor the validators ask a dataset what it can do."""

from __future__ import annotations

import ast
from pathlib import Path

DA = Path(__file__).resolve().parent.parent / "da"
MAX_LINES = 450


def module_name(path: Path) -> str:
    parts = path.relative_to(DA.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """module -> the da modules it imports, at the top or inside functions alike."""
    modules = {module_name(p): p for p in DA.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # `from da.data import base` names the submodule; `from da.data import X` the package
                targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                           for a in node.names]
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_graph_sees_imports_inside_functions():
    graph = import_graph()
    assert "da.config" in graph["da.cli"]  # cli imports it inside its command functions only
    assert {"da.config_schema", "da.registry"} <= graph["da.algorithms.base"]
    assert "da.data.base" in graph["da.data.moons"]


def test_the_circle_finder_finds_a_circle():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_circle_in_da():
    assert circles(import_graph()) == []


def test_no_module_over_the_line_limit():
    long = {module_name(p): n for p in DA.rglob("*.py") if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_trainer_and_validators_ask_the_task_not_the_dataset():
    for name in ("train.py", "validation.py", "evaluation.py"):
        tree = ast.parse((DA / name).read_text())
        calls = [n.func.id for n in ast.walk(tree)
                 if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in ("hasattr", "isinstance")]
        assert calls == [], f"da/{name} dispatches with {calls}"
