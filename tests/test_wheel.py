"""The wheel, installed away from the checkout, is a whole Minihost: it carries the
bundled catalog and plugins, keeps its instance in the working directory and serves.

The wheel is built from a copy of the sources (so nothing of the checkout leaks in)
and installed without dependencies into a fresh environment that reads them from
this one's site-packages by a plain path line. A plain line adds the folder and
nothing else: this environment's editable install of Minihost (a ``.pth`` hook)
stays out, so every ``host`` import and every bundled file comes from the wheel.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
import zipfile
from pathlib import Path

import requests

from .conftest import REPO
from .test_serve import free_port

BUNDLED_MINIAPPS = sorted(path.name for path in (REPO / "miniapps").iterdir() if path.is_dir())
BUNDLED_PLUGINS = sorted(path.name for path in (REPO / "plugins").iterdir()
                         if (path / "__init__.py").is_file())


def build_wheel(tmp_path: Path) -> Path:
    source = tmp_path / "source"
    source.mkdir()
    for name in ("setup.py", "setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    for name in ("host", "miniapps", "plugins"):
        shutil.copytree(REPO / name, source / name)  # __pycache__ included: it must stay out
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--no-index", "-q", "-w", str(tmp_path / "dist"), str(source)],
        capture_output=True, text=True)
    assert built.returncode == 0, built.stdout + built.stderr
    [wheel] = (tmp_path / "dist").glob("minihost-*.whl")
    return wheel


def install_into_fresh_venv(tmp_path: Path, wheel: Path) -> Path:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; "
                              "print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    Path(purelib, "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
         "--no-index", "-q", str(wheel)], capture_output=True, text=True)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return Path(purelib)


def test_the_wheel_installs_and_serves_the_bundled_catalog_and_plugins(tmp_path):
    wheel = build_wheel(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    assert "host/py.typed" in names
    assert "minihost_bundled/miniapps/github/manifest.json" in names
    assert "minihost_bundled/plugins/demo_provider/demo-tasks/manifest.json" in names
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]

    site = install_into_fresh_venv(tmp_path, wheel)
    minihost = site.parents[2] / "bin" / "minihost"
    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MINIHOST_", "PIP_"))}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([str(minihost), *args], capture_output=True, text=True,
                              env=env, cwd=work)
        assert done.returncode == 0, done.stdout + done.stderr
        return done

    where = subprocess.run(
        [str(site.parents[2] / "bin" / "python"), "-c",
         "import host; from host.config import bundled_folder as b; "
         "print(host.__file__, b('miniapps'), b('plugins'), sep='\\n')"],
        capture_output=True, text=True, env=env, cwd=work, check=True).stdout.splitlines()
    bundled = site / "minihost_bundled"
    assert where == [str(site / "host" / "__init__.py"), str(bundled / "miniapps"),
                     str(bundled / "plugins")]

    initialised = run("init").stdout.splitlines()
    assert initialised[0] == f"Instance: {work / 'instance'}"
    assert initialised[-1] == (f"Catalog: {len(BUNDLED_MINIAPPS)} added, 0 updated, 0 removed, "
                               "0 unchanged, 0 refused")
    assert not (site / "instance").exists()

    plugins = json.loads(run("plugins", "list", "--json").stdout)
    assert plugins["notLoaded"] == []
    assert sorted((p["name"], p["origin"]) for p in plugins["plugins"]) == [
        (name, f"folder {bundled / 'plugins'}") for name in BUNDLED_PLUGINS]

    port = free_port()
    server = subprocess.Popen([str(minihost), "serve", "--port", str(port)], env=env, cwd=work,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                listed = requests.get(f"{base}/api/v1/miniapps?limit=200", timeout=5)
                break
            except requests.ConnectionError:
                assert server.poll() is None, server.stdout.read()
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.1)
        items = listed.json()["items"]
        assert sorted(item["name"] for item in items) == BUNDLED_MINIAPPS
        icon = requests.get(base + next(i["icon"] for i in items if i["name"] == "github"),
                            timeout=5)
        assert icon.status_code == 200
        assert icon.headers["Content-Type"] == "image/svg+xml; charset=utf-8"
        assert icon.content == (REPO / "miniapps" / "github" / "icon.svg").read_bytes()
    finally:
        server.terminate()
        output = server.communicate(timeout=10)[0]
    assert f"(instance {work / 'instance'})" in output
    assert len(BUNDLED_MINIAPPS) == 11 and len(BUNDLED_PLUGINS) == 6
