"""The bundled plugins are optional: with any one of them disabled, the host still
starts and a user's everyday path works. And a plugin packaged as the guide shows
loads from its entry point once pip-installed into a real environment."""

import json
import os
import site
import subprocess
import sys
from pathlib import Path

import pytest

from host.db import get_database
from host.plugins import get_plugins
from host.principal import Principal
from host.services import installations
from host.services.accounts import personal_workspace
from host.services.runs import run_action

from ..conftest import REPO, build_hosted, csrf_from
from .test_docs import BUNDLED, EXAMPLE


@pytest.mark.parametrize("disabled", BUNDLED)
def test_the_host_works_with_any_bundled_plugin_disabled(tmp_path, provider, disabled):
    hosted = build_hosted(tmp_path, provider, PLUGINS_DIRS=[str(REPO / "plugins")],
                          DISABLED_PLUGINS=[disabled])
    try:
        loaded = {p.name for p in get_plugins(hosted.app).loaded}
        assert loaded == set(BUNDLED) - {disabled}
        assert get_plugins(hosted.app).failures == []
        client = hosted.app.test_client()
        assert client.get("/healthz").get_json() == {"status": "ok"}
        assert "Keyed Service" in client.get("/").get_data(as_text=True)
        hosted.login(client, "alice@example.com")
        page = client.get("/miniapps/keyed/connect").get_data(as_text=True)
        connected = client.post("/miniapps/keyed/connect", data={
            "apiKey": "key-good-123", "csrf_token": csrf_from(page)})
        assert connected.status_code == 302
        with get_database(hosted.app).sessions() as db:
            who = Principal(hosted.alice, personal_workspace(db, hosted.alice), "session:x")
            [installation], _ = installations.list_installations(db, who)
            run = run_action(hosted.app, db, who, installation, "echo", {"text": "still here"})
        assert (run.status, run.output) == ("succeeded", {"echo": "still here"})
        listed = hosted.api("GET", "/api/v1/installations", hosted.alice_token).get_json()
        assert [item["miniapp"] for item in listed["items"]] == ["keyed"]
        assert get_plugins(hosted.app).hook_failures == {}
    finally:
        get_database(hosted.app).engine.dispose()


def test_the_example_package_installs_and_loads_from_its_entry_point(tmp_path):
    """The guide's package, pip-installed (editable, as the guide says) into a fresh
    environment that sees this one's packages, is found through the ``minihost``
    entry-point group — no plugins folder involved."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)],
                   check=True, capture_output=True)
    python = venv / "bin" / "python"
    # A venv made from a venv does not see the first one's packages; point it at them.
    purelib = subprocess.run([str(python), "-c", "import sysconfig; "
                              "print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    Path(purelib, "outer-environment.pth").write_text(
        "".join(f"import site; site.addsitedir({path!r})\n" for path in site.getsitepackages()))
    package = tmp_path / "minihost-hello"
    package.mkdir()
    for name in ("minihost_hello.py", "setup.cfg", "pyproject.toml"):
        (package / name).write_text((EXAMPLE / name).read_text())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MINIHOST_", "PIP_"))}
    installed = subprocess.run(
        [str(python), "-m", "pip", "install", "--no-build-isolation", "--no-deps",
         "--no-index", "-e", str(package)], capture_output=True, text=True, env=env)
    assert installed.returncode == 0, installed.stdout + installed.stderr

    listed = subprocess.run(
        [str(python), "-c", "from host.cli import main; main()", "--instance",
         str(tmp_path / "instance"), "plugins", "list", "--json"],
        capture_output=True, text=True, env=env, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    hello = [p for p in json.loads(listed.stdout)["plugins"] if p["name"] == "hello"]
    assert hello == [{"name": "hello", "version": "1.0.0", "origin": "entry point minihost-hello",
                      "hooks": ["auth_types", "form_widgets", "register_blueprints"]}]

    served = subprocess.run([str(python), "-c", (
        "from host import create_app\n"
        f"app = create_app(instance_path={str(tmp_path / 'instance')!r})\n"
        "print(app.test_client().get('/hello/').get_json())\n"
        "print(sorted(app.extensions['minihost.auth_types']))\n")],
        capture_output=True, text=True, env=env, cwd=tmp_path)
    assert served.returncode == 0, served.stderr
    assert served.stdout.splitlines() == [
        "{'hello': 'world'}", "['apiKey', 'basic', 'jwt_bearer', 'none', 'oauth2', 'session']"]
