"""``python -m host`` is the ``minihost`` command, and Flask's ``routes`` and ``shell``
are on it (``run`` is not: ``serve`` replaces it). Real processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from host import __version__


def python_m_host(tmp_path: Path, *args: str, stdin: str | None = None
                  ) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINIHOST_")}
    done = subprocess.run([sys.executable, "-m", "host", *args], input=stdin,
                          capture_output=True, text=True, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def test_python_m_host_is_the_minihost_command(tmp_path):
    assert python_m_host(tmp_path, "--version").stdout == f"minihost, version {__version__}\n"
    usage = python_m_host(tmp_path, "--help").stdout.splitlines()
    assert usage[0] == "Usage: python -m host [OPTIONS] COMMAND [ARGS]..."
    commands = usage[usage.index("Commands:") + 1:]
    assert [line.split()[0] for line in commands] == [
        "catalog", "clients", "events", "flow-schema", "flows", "init", "plugins",
        "rotate-keys", "routes", "run-action", "runs", "schema", "serve", "shell", "tokens",
        "users", "validate", "worker", "workers"]
    initialised = python_m_host(tmp_path, "init").stdout.splitlines()
    assert initialised[0] == f"Instance: {tmp_path / 'instance'}"


def test_routes_lists_the_application_routes(tmp_path):
    rows = [line.split() for line in python_m_host(tmp_path, "routes").stdout.splitlines()]
    assert rows[0] == ["Endpoint", "Methods", "Rule"]
    assert ["api.list_miniapps", "GET", "/api/v1/miniapps"] in rows
    assert ["health.healthz", "GET", "/healthz"] in rows


def test_shell_runs_in_the_application_context(tmp_path):
    shell = python_m_host(tmp_path, "--instance", str(tmp_path / "inst"), "shell",
                          stdin="print(app.name, app.instance_path, sep='|')\n")
    assert shell.stdout == f">>> host|{tmp_path / 'inst'}\n>>> "  # the prompts go to stdout
