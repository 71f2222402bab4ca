"""The package's structure: no import circles (imports inside functions count), and no task's inference path reaches
its training code — read statically from the import graph, and checked for real by loading each task's runs with
the training modules blocked."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from vlfuse.task import TASKS

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "vlfuse"
TASK_TRAINING = sorted(info.training.partition(":")[0] for info in TASKS.values())  # each task's training side
TRAINING_MODULES = [*TASK_TRAINING, "vlfuse.train.runner", "vlfuse.train.trainer"]  # … and the shared loop


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """module → the vlfuse modules it imports anywhere in its file (top level, functions, TYPE_CHECKING blocks).

    `from a.b import c` counts as importing `a.b.c` when that is a module, else `a.b`. The parent packages that Python
    initialises on the way (`vlfuse/__init__.py`, …) are not counted: they are not a file's own choice."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                edges |= {a.name for a in node.names if a.name in modules}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    edges.add(full if full in modules else node.module)
        graph[name] = {e for e in edges if e in modules and e != name}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
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
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in graph:
        if v not in index:
            visit(v)
    return found


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for w in graph[todo.pop()] - seen:
            seen.add(w)
            todo.append(w)
    return seen


def test_the_graph_is_read():
    graph = import_graph()
    assert "vlfuse.task" in graph["vlfuse.train.runner"]  # a top-level import
    assert "vlfuse.classify.robustness" in graph["vlfuse.cli.runs"]  # an import inside a function


def test_no_import_circles():
    assert circles(import_graph()) == []


@pytest.mark.parametrize("task", sorted(TASKS))
def test_the_inference_path_never_reaches_training_code(task):
    graph = import_graph()
    run_module = TASKS[task].run.partition(":")[0]
    assert not reachable(graph, run_module) & set(TRAINING_MODULES)
    assert TASKS[task].training.partition(":")[0] in graph  # the reference names a real module


def test_runs_load_with_the_training_code_blocked(trained_runs):
    """One fresh interpreter in which importing any task's training module fails loads a run of every task."""
    runs = {task: str(trained_runs(task)[1]) for task in sorted(TASKS)}
    script = (
        "import sys\n"
        f"for name in {TASK_TRAINING!r}: sys.modules[name] = None  # importing them now raises ImportError\n"
        "import vlfuse\n"
        f"for task, path in {runs!r}.items():\n"
        "    run = vlfuse.load_run(path)\n"
        "    assert run.task == task and run.metrics, task\n"
        "    print('loaded', type(run).__name__)\n"
        f"assert not set({TASK_TRAINING!r}) & {{m for m, v in sys.modules.items() if v is not None}}\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == [w for task in sorted(TASKS) for w in ("loaded", TASKS[task].run.partition(":")[2])]
