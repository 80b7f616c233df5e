"""Promises about the code's shape: no import cycle in services/, serving code that needs nothing
outside services/, and a conversation engine that knows nothing of gRPC or WebSockets. (Function
length is ruff's PLR0915 in `make lint`: files have no length cap.)"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ROOT / "services"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The project modules `path` imports, anywhere in it (inside functions too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        found |= {name for name in names if name in modules}
    return found


def test_no_import_cycle_in_services() -> None:
    files = {module_name(p): p for p in SERVICES.rglob("*.py")}
    graph = {name: imports_of(path, set(files)) - {name} for name, path in files.items()}
    cycles: list[list[str]] = []
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, f"import cycles: {cycles}"


def test_serving_code_needs_nothing_outside_services() -> None:
    """The images ship services/ (and gen/) alone: model builders live in tools/models, clients in clients/."""
    outside = {"tools", "clients", "tests", "bench"}
    found = {}
    for path in SERVICES.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else [])
            if hits := {n for n in names if n.split(".")[0] in outside}:
                found[str(path.relative_to(ROOT))] = sorted(hits)
    assert not found


def test_the_engine_imports_no_transport() -> None:
    probe = ("import sys, services.gateway.engine.conversations; "
             "print(sorted(m for m in sys.modules if m.split('.')[0] in {'grpc', 'aiohttp', 'voice'}))")
    loaded = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]"
