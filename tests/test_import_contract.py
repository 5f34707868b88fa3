"""The import contract: layered packages, no cycle between modules.

Layers, lowest first: ``kgnlp`` (errors, files, cpu) < ``kg`` and ``models`` (independent of each
other) < ``retrieval`` < ``apps`` (the service, its three applications and the CLI). A module may
import only from its own package or a lower layer, and the module graph has no cycle. Imports inside
functions count: a lazy import is still a dependency, and a cycle hidden behind one is still a
cycle. Run by ``make test`` and ``make lint``.
"""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("kgnlp", "kg", "models", "retrieval", "apps")
MAY_IMPORT = {
    "kgnlp": set(),
    "kg": {"kgnlp"},
    "models": {"kgnlp"},
    "retrieval": {"kgnlp", "kg", "models"},
    "apps": {"kgnlp", "kg", "models", "retrieval"},
}


def _modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imported(module: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules ``module`` imports, anywhere in its body (``from a import b``: ``a.b`` if a module)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            names.add(base)
            names.update(f"{base}.{a.name}" for a in node.names)
    out = set()
    for name in names:
        while name and name not in known:  # ``kg.store.Entity`` -> ``kg.store``
            name = name.rpartition(".")[0]
        if name and name != module:
            out.add(name)
    return out


def _graph() -> dict[str, set[str]]:
    known = _modules()
    return {m: _imported(m, p, known) for m, p in known.items()}


def _layer(module: str) -> str:
    return module.split(".")[0]


def _breaches(graph: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{m} imports {d}"
        for m, deps in graph.items()
        for d in deps
        if _layer(d) != _layer(m) and _layer(d) not in MAY_IMPORT[_layer(m)]
    )


def test_every_package_imports_only_its_own_layer_or_lower() -> None:
    graph = _graph()
    assert len(graph) > 50 and any(graph.values())  # the walk found the code
    wrong = _breaches(graph)
    assert not wrong, "imports against the layers:\n" + "\n".join(wrong)


def test_the_module_graph_has_no_cycle() -> None:
    try:
        graphlib.TopologicalSorter(_graph()).prepare()
    except graphlib.CycleError as e:
        pytest.fail("import cycle: " + " -> ".join(e.args[1]))


def test_the_checks_catch_a_cycle_and_a_layer_breach(tmp_path: Path) -> None:
    """The contract's own machinery on a planted cycle and a planted upward import."""
    (tmp_path / "a.py").write_text("def f():\n    from b import g\n")
    (tmp_path / "b.py").write_text("from a import f\n")
    known = {"a": tmp_path / "a.py", "b": tmp_path / "b.py"}
    graph = {m: _imported(m, p, known) for m, p in known.items()}
    assert graph == {"a": {"b"}, "b": {"a"}}
    with pytest.raises(graphlib.CycleError):
        graphlib.TopologicalSorter(graph).prepare()
    assert _breaches({"kg.x": {"apps.y", "kgnlp.errors"}, "apps.y": {"kg.x"}}) == ["kg.x imports apps.y"]
