"""No import cycle among the modules of `apps/`: neither at import time (module-level imports;
imports under `if TYPE_CHECKING:` are left out) nor counting every import, those made inside
functions and for type checking included (issue 10, part 5: the pipeline's 19 modules formed one
cycle through such imports). Walks the source with `ast`, no import executed.

What keeps it so: tasks are entry points published by name (apps/core/tasks.py), imported only
by their app's `AppConfig.ready`; apps/audit knows no domain (each app shapes its own rows); an
accept job is written by acceptjob.py, which neither bulk.py nor fanout.py needs back."""

from __future__ import annotations

import ast
from pathlib import Path

APPS = Path(__file__).resolve().parents[2] / "apps"


def _modules() -> dict[str, Path]:
    out = {}
    for path in APPS.rglob("*.py"):
        if "migrations" in path.parts:
            continue
        parts = path.relative_to(APPS.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def import_graph(*, deferred: bool = False) -> dict[str, set[str]]:
    """module → the modules of apps/ it imports (at module level, or anywhere if `deferred`)."""
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        tree = ast.parse(path.read_text())
        package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
        nodes = list(ast.walk(tree)) if deferred else list(tree.body)
        for node in nodes:
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parts, base] if base else parts)
                targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
            for target in targets:
                while target and target not in modules:
                    target = target.rsplit(".", 1)[0] if "." in target else ""
                if target and target != module:
                    graph[module].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def deferred_cycles() -> list[list[str]]:
    return cycles(import_graph(deferred=True))


def test_no_module_imports_itself_back_at_import_time() -> None:
    assert cycles(import_graph()) == []


def test_no_cycle_counting_imports_inside_functions_too() -> None:
    assert deferred_cycles() == []


def test_no_module_imports_a_task_module_but_its_apps_ready() -> None:
    graph = import_graph(deferred=True)
    task_modules = {m for m in graph if m.endswith(".tasks") and m != "apps.core.tasks"}
    importers = {m: sorted(t for t in targets if t in task_modules) for m, targets in graph.items()
                 if m.rsplit(".", 1)[-1] != "apps"}
    assert {m: t for m, t in importers.items() if t} == {}


def test_the_deferred_walk_sees_an_import_inside_a_function() -> None:
    # fanout.py imports bulk.py inside `_expand` only.
    assert "apps.notifications.bulk" not in import_graph()["apps.notifications.fanout"]
    assert "apps.notifications.bulk" in import_graph(deferred=True)["apps.notifications.fanout"]


def test_the_walker_finds_a_cycle_when_there_is_one() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
