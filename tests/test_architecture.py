"""The folder listing is the architecture: layers that import only downward, and no cycles.

The layers contract lives in pyproject.toml ([tool.importlinter]); ``lint-imports`` checks it from
the command line and this test runs the same contract.  Two things a layers contract does not
see are checked here on the same import graph (grimp, import-linter's engine): a cycle between
two modules of one layer, and a module that reaches everything through the root package
(``import symgrad`` inside the package would hide an upward import behind the lazy loader).
"""

import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def graph():
    return grimp.build_graph("symgrad", include_external_packages=False)


def test_the_layers_contract_is_kept():
    lint = Path(sys.executable).with_name("lint-imports")
    proc = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "1 kept, 0 broken" in proc.stdout


def _cycles(graph):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, on_stack, stack, out, counter = {}, {}, set(), [], [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.find_modules_directly_imported_by(v):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph.modules):
        if v not in index:
            visit(v)
    return out


def test_no_two_modules_import_each_other_in_a_cycle(graph):
    assert _cycles(graph) == []


def test_the_cycle_check_finds_a_cycle(graph):
    graph.add_import(importer="symgrad.symbolic.derivation", imported="symgrad.symbolic.networks")
    assert any("symgrad.symbolic.networks" in c for c in _cycles(graph))
    graph.remove_import(importer="symgrad.symbolic.derivation", imported="symgrad.symbolic.networks")


def test_no_module_reaches_the_package_through_the_root(graph):
    importers = sorted(graph.find_modules_that_directly_import("symgrad") - {"symgrad.__main__"})
    assert importers == []


def test_the_layers_contract_rejects_an_upward_import(tmp_path):
    """The contract is not vacuous: a copy of the package with one upward import breaks it."""
    import shutil

    shutil.copytree(ROOT / "symgrad", tmp_path / "symgrad", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    bad = tmp_path / "symgrad" / "spec" / "losses.py"
    bad.write_text(bad.read_text() + "\nfrom symgrad.numeric import backprop as _upward  # noqa\n")
    lint = Path(sys.executable).with_name("lint-imports")
    proc = subprocess.run([str(lint), "--no-cache"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert proc.returncode != 0 and "BROKEN" in proc.stdout, proc.stdout[-2000:]
    assert "symgrad.spec.losses -> symgrad.numeric" in proc.stdout


def test_no_unbounded_cache_in_the_package():
    """Every functools cache has a maxsize (Hypothesis calls with many distinct arguments)."""
    import re

    found = [str(p.relative_to(ROOT)) for p in (ROOT / "symgrad").rglob("*.py")
             if re.search(r"lru_cache\(maxsize=None\)|@cache\b|functools\.cache\b|@lru_cache\s*\n", p.read_text(encoding="utf-8"))]
    assert found == []
