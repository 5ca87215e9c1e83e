"""The engine stays pure: no Flask, no database, and only its transport imports requests."""

import ast
from pathlib import Path

import host.engine

ENGINE = Path(host.engine.__file__).parent
FORBIDDEN = ("flask", "sqlalchemy", "alembic", "werkzeug", "host.db", "host.web", "host.api",
             "host.services", "host.vault", "host.auth")


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = "host.engine" if node.level == 1 else "host"
                names.add(f"{base}.{node.module}" if node.module else base)
            else:
                names.add(node.module or "")
    return names


def test_engine_imports_neither_flask_nor_the_database():
    offenders = {}
    for path in ENGINE.rglob("*.py"):
        bad = {m for m in imported_modules(path) if m.startswith(FORBIDDEN)}
        if path.name != "transport.py":
            bad |= {m for m in imported_modules(path) if m.split(".")[0] in ("requests", "urllib3")}
        if bad:
            offenders[path.name] = sorted(bad)
    assert offenders == {}


def test_the_check_sees_imports():
    assert "flask" in imported_modules(Path(__file__).parents[2] / "host" / "problems.py")
