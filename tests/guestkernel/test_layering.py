"""guestkernel's layers stack without import cycles (DESIGN.md: "Inside guestkernel, layers
stack without import cycles"; issue 14, House: fork.py and task.py imported each other).

Every `from .x import` inside guestkernel counts, at module level or inside a function
(a function-level import hides a cycle from Python, not from the design); imports under
`if TYPE_CHECKING:` are annotations only and do not count.
"""

from __future__ import annotations

import ast
import os
import pathlib
import subprocess
import sys

import pytest

import guestkernel

PKG = pathlib.Path(guestkernel.__file__).parent


def _imports(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text())
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for n in ast.walk(node))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1 and id(node) not in skip:
            if node.module:
                out.add(node.module.split(".")[0])
            else:
                out.update(a.name for a in node.names)
    return out


def _graph() -> dict[str, set[str]]:
    mods = {p.stem for p in PKG.glob("*.py")}
    return {p.stem: _imports(p) & mods for p in PKG.glob("*.py")}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(u: str):
        state[u] = 1
        stack.append(u)
        for v in sorted(graph[u]):
            if state.get(v) == 1:
                return stack[stack.index(v):] + [v]
            if v not in state:
                found = visit(v)
                if found:
                    return found
        stack.pop()
        state[u] = 2
        return None

    for u in sorted(graph):
        if u not in state:
            found = visit(u)
            if found:
                return found
    return None


def test_guestkernel_modules_import_each_other_without_a_cycle():
    # (readahead.py reaches filemap.add_to_page_cache through kernel.add_to_page_cache, the
    # hook init_address_spaces connects: filemap imports readahead, not the reverse)
    cycle = _cycle(_graph())
    assert cycle is None, " -> ".join(cycle)


@pytest.mark.parametrize("mod", ["fork", "task", "readahead", "filemap"])
def test_module_imports_alone(mod):
    """issue 14, House: `python -c "import guestkernel.fork"` (and task, and the
    readahead/filemap pair) in a fresh interpreter, nothing imported before it."""
    root = PKG.parent
    env = {**os.environ, "PYTHONPATH": str(root)}
    r = subprocess.run([sys.executable, "-c", f"import guestkernel.{mod}"], cwd=root, env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_fork_and_task_stack_task_above_fork():
    g = _graph()
    assert "task" not in g["fork"]  # fork builds an MMStruct from mm_types, not task
    assert "fork" in g["task"] and "mm_types" in g["fork"]


def test_the_cycle_finder_finds_a_cycle():
    # consistency check of the checker itself: a two-module cycle and a self-contained DAG
    assert _cycle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_guestkernel_imports_neither_hypervisor_nor_experiments():
    for p in PKG.glob("*.py"):
        tree = ast.parse(p.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                assert node.module.split(".")[0] not in ("hypervisor", "experiments"), p.name
            if isinstance(node, ast.Import):
                for a in node.names:
                    assert a.name.split(".")[0] not in ("hypervisor", "experiments"), p.name
