"""No class or module of the package, its tests or benchmarks defines the same function twice:
the later definition silently replaces the earlier one (an edit once left the display with two
destroy_node methods, the first never run; a test defined twice is never collected). Properties
with setters and typing overloads are legitimate."""
from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("avatar_forcing_ros", "test", "bench", "scripts", "launch")


def _shadowed(body: list[ast.stmt]) -> list[str]:
    seen, found = set(), []
    for node in body:
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        decorators = {ast.unparse(d) for d in node.decorator_list}
        if any(d.endswith((".setter", ".deleter")) or d in ("overload", "typing.overload") for d in decorators):
            continue
        if node.name in seen:
            found.append(f"{node.name} (line {node.lineno})")
        seen.add(node.name)
    return found


def test_no_function_or_method_is_defined_twice_in_one_scope():
    problems = []
    for path in sorted(p for folder in SOURCES for p in (REPO / folder).rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        scopes = [("module", tree.body)] + [(n.name, n.body) for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]
        for scope, body in scopes:
            problems += [f"{path.relative_to(REPO)}: {scope}.{name}" for name in _shadowed(body)]
    assert not problems, problems
