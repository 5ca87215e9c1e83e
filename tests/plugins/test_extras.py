"""A bundled plugin whose extra is not installed is reported with the extra to
install, in one line, and the rest of the host runs.

Each test runs the real ``minihost`` command in a process where authlib and joserfc
cannot be imported (``None`` in ``sys.modules``, which makes Python raise
``ModuleNotFoundError`` for them exactly as a missing package does).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ..conftest import REPO

WITHOUT_EXTRAS = ("import sys; sys.modules.update(authlib=None, joserfc=None); "
                  "from host.cli import main; main()")
JWT = ("ModuleNotFoundError: jwt_bearer needs the jwt extra (authlib is not installed): "
       "pip install 'minihost[jwt]', or pip install -e '.[jwt]' in a checkout")
DEMO = ("ModuleNotFoundError: demo_provider needs the demo extra (authlib is not installed): "
        "pip install 'minihost[demo]', or pip install -e '.[demo]' in a checkout")


def minihost_without_extras(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINIHOST_")}
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_EXTRAS, "--instance", str(tmp_path / "instance"), *args],
        capture_output=True, text=True, env=env, cwd=tmp_path)


def test_plugins_list_names_the_extra_to_install(tmp_path):
    listed = minihost_without_extras(tmp_path, "plugins", "list")
    assert listed.returncode == 0, listed.stderr
    loaded = [line.split()[0] for line in listed.stdout.splitlines()
              if not line.startswith(" ")]
    assert loaded == ["audit_jsonl", "catalog_http", "date_widget", "hmac_signing"]
    not_loaded = [line for line in listed.stderr.splitlines() if line.startswith("Not loaded")]
    assert not_loaded == [f"Not loaded: demo_provider (folder {REPO / 'plugins'}): {DEMO}",
                          f"Not loaded: jwt_bearer (folder {REPO / 'plugins'}): {JWT}"]
    assert "Traceback" not in listed.stderr


def test_serve_demo_without_the_demo_extra_says_which_to_install(tmp_path):
    served = minihost_without_extras(tmp_path, "serve", "--demo")
    assert served.returncode == 1
    assert served.stderr.splitlines()[-1] == (
        f"Error: the demo provider plugin did not load: {DEMO}")
    assert "Traceback" not in served.stderr
    assert not (tmp_path / "instance").exists()
