"""How hooks are called: pluggy's order and ``firstresult``, each plugin on its own,
and hook wrappers refused when a plugin registers. Plugins are real files on disk."""

import json
import logging
import re
import textwrap

import pytest
from click.testing import CliRunner

from host import create_app
from host.cli import cli
from host.db import get_database
from host.engine import Outgoing, Response
from host.plugins import get_plugins
from host.services import accounts
from host.services import instance as instance_service

from ..conftest import make_config
from .test_request_hooks import run


def write(folder, name, body):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.py").write_text(textwrap.dedent(body))
    return folder


@pytest.fixture
def make_app(tmp_path):
    apps = []

    def build(folder):
        app = create_app(make_config(tmp_path, PLUGINS_DIRS=[str(folder)]),
                         instance_path=tmp_path)
        instance_service.migrate(app)
        apps.append(app)
        return app

    yield build
    for app in apps:
        get_database(app).engine.dispose()


def plugins_page(app):
    """``/-/plugins.json`` as an operator sees it."""
    with get_database(app).transaction() as db:
        accounts.create_user(db, "ops@example.com", "correct horse", admin=True)
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    client.post("/login", data={"email": "ops@example.com", "password": "correct horse",
                                "csrf_token": re.search(r'name="csrf_token" value="([^"]+)"',
                                                        page).group(1)})
    return client.get("/-/plugins.json").get_json()


WRAPPER_REFUSED = (
    "TypeError: hook wrappers are not supported ({hooks}): Minihost calls each plugin on its "
    "own, so that no plugin sees or hides another's answer or failure; write a plain "
    "@hookimpl, with tryfirst=True or trylast=True to run before or after the others")


def test_hook_wrappers_are_refused_when_a_plugin_registers(tmp_path, make_app, caplog):
    folder = write(tmp_path / "plugins", "wraps", """
        from host.plugins import hookimpl

        @hookimpl(wrapper=True)
        def miniapp_manifests(config):
            answers = yield
            return [*answers, [{"name": "smuggled"}]]

        @hookimpl(hookwrapper=True, specname="audit_event")
        def watch_audit(event, config):
            yield
    """)
    write(folder, "plain", """
        from host.plugins import hookimpl

        @hookimpl
        def miniapp_manifests(config):
            return [{"name": "plain"}]
    """)
    with caplog.at_level(logging.ERROR, "host.plugins"):
        app = make_app(folder)
    message = WRAPPER_REFUSED.format(hooks="audit_event, miniapp_manifests")
    plugins = get_plugins(app)
    assert [(f.name, f.error) for f in plugins.failures] == [("wraps", message)]
    assert [p.name for p in plugins.loaded] == ["plain"]
    assert plugins.manager.get_plugin("wraps") is None  # nothing of it was registered
    assert plugins.call_each("miniapp_manifests", config=app.config) == [
        ("plain", [{"name": "plain"}])]
    assert f"plugin wraps (folder {folder}) failed to load: {message}" in caplog.text
    listed = CliRunner().invoke(cli, ["--instance", str(tmp_path / "cli"), "--plugins-dir",
                                      str(folder), "plugins", "list", "--json"])
    assert {"name": "wraps", "origin": f"folder {folder}", "error": message} in \
        json.loads(listed.stdout)["notLoaded"]
    assert plugins_page(app)["notLoaded"] == [
        {"name": "wraps", "origin": f"folder {folder}", "error": message}]


# Five plugins answer sandbox_response; pluggy's order is tryfirst, then the one
# registered last first (folders register in name order), then trylast. Each notes
# in calls.txt that it was called.
ANSWERS = {
    "answers": ("", 'return Response(200, JSON, b\'{"text": "from answers"}\', 0.0)'),
    "broken": ("", 'raise RuntimeError("fixtures store offline")'),
    "declines": ("", "return None"),
    "early": ("tryfirst=True", "return None"),
    "late": ("trylast=True", 'return Response(200, JSON, b\'{"text": "from late"}\', 0.0)'),
}
SANDBOX = """
    from pathlib import Path

    from host.engine import Response
    from host.plugins import hookimpl

    JSON = [("Content-Type", "application/json")]

    @hookimpl({options})
    def sandbox_response(request, spec, config):
        with open(Path(__file__).with_name("calls.txt"), "a") as calls:
            calls.write("{name}\\n")
        {answer}
"""


@pytest.fixture
def answering(tmp_path):
    folder = tmp_path / "plugins"
    for name, (options, answer) in ANSWERS.items():
        write(folder, name, SANDBOX.format(name=name, options=options, answer=answer))
    return folder


def outgoing():
    return Outgoing(pointer="/actions/0/requests/0", method="GET",
                    url="https://api.example.com/x", headers=[], body=None, body_trace=None,
                    carries_secrets=False, secret_headers=frozenset(), timeout=None)


def calls(folder):
    path = folder / "calls.txt"
    called = path.read_text().split() if path.exists() else []
    path.unlink(missing_ok=True)
    return called


def test_firstresult_stops_at_the_first_answer_in_pluggys_order(answering, make_app):
    app = make_app(answering)
    plugins = get_plugins(app)
    request = outgoing()
    answers = plugins.call_each("sandbox_response", request=request, spec=None,
                                config=app.config)
    assert [(name, answer.body) for name, answer in answers] == [
        ("answers", b'{"text": "from answers"}')]
    assert calls(answering) == ["early", "declines", "broken", "answers"]  # never "late"
    assert plugins.hook_failures[("broken", "sandbox_response")].error == \
        "RuntimeError: fixtures store offline"
    # pluggy itself, without the plugin that raises (its relay would stop there),
    # gives the same answer after the same calls.
    relay = plugins.manager.subset_hook_caller(
        "sandbox_response", [plugins.manager.get_plugin("broken")])
    answer = relay(request=request, spec=None, config=app.config)
    assert isinstance(answer, Response) and answer.body == b'{"text": "from answers"}'
    assert calls(answering) == ["early", "declines", "answers"]


def test_firstresult_with_no_answer_calls_everyone_and_answers_nothing(answering, make_app):
    (answering / "answers.py").unlink()
    (answering / "late.py").unlink()
    app = make_app(answering)
    request = outgoing()
    assert get_plugins(app).call_each("sandbox_response", request=request, spec=None,
                                      config=app.config) == []
    assert calls(answering) == ["early", "declines", "broken"]


def test_a_sandbox_run_takes_the_first_answer(answering, hosted_with):
    hosted = hosted_with(PLUGINS_DIRS=[str(answering)])
    calls(answering)  # nothing is called while the host starts, but start clean
    done, _ = run(hosted, sandbox=True)
    assert (done.status, done.output) == ("succeeded", {"echo": "from answers"})
    assert calls(answering) == ["early", "declines", "broken", "answers"]


def test_collect_all_hooks_pass_defaulted_arguments_by_name(tmp_path, make_app):
    """As pluggy does: a parameter with a default is passed when the hook has it."""
    folder = write(tmp_path / "plugins", "defaults", """
        from host.plugins import hookimpl

        @hookimpl
        def miniapp_manifests(config=None, unknown="kept"):
            return [{"name": config["SECRET_KEY"] + "/" + unknown}]
    """)
    app = make_app(folder)
    assert get_plugins(app).call_each("miniapp_manifests", config=app.config) == [
        ("defaults", [{"name": "test-secret/kept"}])]
