"""The structure is a contract: no import cycle anywhere in ``host/``, function-level
imports included (import-linter, run by CI, checks the layers of ARCHITECTURE.md;
it follows module-level imports only, so the cycles hidden inside functions are
caught here)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

HOST = Path(__file__).resolve().parent.parent / "host"


def _modules() -> dict[str, Path]:
    found = {}
    for path in HOST.rglob("*.py"):
        parts = list(path.relative_to(HOST.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def import_graph() -> dict[str, set[str]]:
    """Module → the host modules it imports anywhere in its body (``from x import y``
    counts as importing ``x.y`` when that is a module, else ``x``)."""
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    origin = ".".join(base + ([node.module] if node.module else []))
                else:
                    origin = node.module or ""
                for alias in node.names:
                    child = f"{origin}.{alias.name}"
                    targets.append(child if child in modules else origin)
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            graph[name].update(t for t in targets if t in modules and t != name)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
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

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles_in_the_host():
    assert cycles(import_graph()) == []


def test_the_cycle_finder_finds_a_cycle_through_a_function_level_import():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_layers_contract_holds():
    """``lint-imports`` with the repository's ``.importlinter`` (also run by CI)."""
    checked = subprocess.run([str(Path(sys.executable).with_name("lint-imports")),
                              "--config", str(HOST.parent / ".importlinter"), "--no-cache"],
                             capture_output=True, text=True, cwd=HOST.parent)
    assert checked.returncode == 0, checked.stdout + checked.stderr
