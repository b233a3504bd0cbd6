"""The package's layer rules and the absence of import cycles, read from the source (``ast``).

Layers, bottom up (README, "Layout"): ``core`` (the equations) imports nothing of ours; ``engines``
(rollout and training engines) never imports the algorithm (``prime``) or the run control
(``runs``); ``prime`` (the algorithm over tables) imports neither Kedro nor the run control nor the
rank launcher. Every import counts, also one inside a function: a lazy import is still a
dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = SRC / "eurus_prime"


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports (absolute names; ``from a import b`` yields ``a.b`` where that
    is a module of ours, else ``a``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
GRAPH = {name: {m for m in _imports(path) if m in MODULES and m != name} for name, path in MODULES.items()}
EXTERNAL = {name: _imports(path) for name, path in MODULES.items()}


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


RULES = [
    # (layer, forbidden prefixes, why)
    ("eurus_prime.core", ["eurus_prime"], "core holds the equations and imports nothing of ours"),
    (
        "eurus_prime.engines",
        ["eurus_prime.prime", "eurus_prime.runs", "eurus_prime.pipelines"],
        "engines know no algorithm",
    ),
    (
        "eurus_prime.prime",
        [
            "kedro",
            "eurus_prime.runs",
            "eurus_prime.engines.train.ranks",
            "eurus_prime.pipelines",
            "eurus_prime.reports",
        ],
        "the algorithm runs without Kedro, the run control or the rank launcher",
    ),
    ("eurus_prime.tasks", ["eurus_prime.prime", "eurus_prime.runs", "eurus_prime.pipelines"], "tasks are data"),
    ("eurus_prime.verifiers", ["eurus_prime.prime", "eurus_prime.runs", "eurus_prime.pipelines"], "verifiers are pure"),
]


@pytest.mark.parametrize("layer,forbidden,why", RULES, ids=[r[0] for r in RULES])
def test_layer_rules(layer, forbidden, why):
    broken = sorted(
        f"{name} imports {dep}"
        for name, deps in EXTERNAL.items()
        if _in(name, layer)
        for dep in deps
        if any(_in(dep, f) for f in forbidden) and not _in(dep, layer)
    )
    assert not broken, f"{why}:\n" + "\n".join(broken)


def _cycles() -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    return out


def _without_packages(graph_cycles: list[list[str]]) -> list[list[str]]:
    """A package's ``__init__`` importing its own modules (re-exports) is not a cycle of layers."""
    packages = {name for name, path in MODULES.items() if path.name == "__init__.py"}
    return [c for c in graph_cycles if not any(m in packages and all(_in(o, m) for o in c) for m in c)]


def test_no_import_cycles():
    cycles = _without_packages(_cycles())
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_the_checker_sees_a_cycle_and_a_broken_rule(monkeypatch):
    """The checks above can fail: a planted cycle and a planted forbidden import are caught."""
    graph = {k: set(v) for k, v in GRAPH.items()}
    graph["eurus_prime.core.masked"].add("eurus_prime.core.rewards")
    graph["eurus_prime.core.rewards"].add("eurus_prime.core.masked")
    monkeypatch.setitem(globals(), "GRAPH", graph)
    assert ["eurus_prime.core.masked", "eurus_prime.core.rewards"] in _without_packages(_cycles())
    external = {k: set(v) for k, v in EXTERNAL.items()}
    external["eurus_prime.prime.policy"].add("eurus_prime.runs.guard.monitor")
    monkeypatch.setitem(globals(), "EXTERNAL", external)
    with pytest.raises(AssertionError, match="prime.policy imports eurus_prime.runs.guard.monitor"):
        test_layer_rules(*RULES[2])
