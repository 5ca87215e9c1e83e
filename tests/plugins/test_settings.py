"""SETTINGS_SCHEMA: a plugin's PLUGIN_SETTINGS entry checked once at start-up, with
real plugin files on disk and the host's own reporting (log, /-/plugins, CLI)."""

import json
import logging
import re
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from host import create_app
from host.cli import cli
from host.db import get_database
from host.plugins import get_plugins
from host.services import accounts
from host.services import instance as instance_service

from ..conftest import make_config

DOCS = (Path(__file__).resolve().parents[2] / "docs" / "plugins.md").read_text()

NOTIFIER = """
    from host.plugins import hookimpl, plugin_settings

    SEEN = []
    SETTINGS_SCHEMA = {
        "type": "object",
        "required": ["channel", "token"],
        "additionalProperties": False,
        "properties": {
            "channel": {"type": "string", "pattern": "^#[a-z-]+$",
                        "description": 'write the channel to post to, such as "#ops"'},
            "token": {"type": "string", "pattern": "^xoxb-", "writeOnly": True,
                      "description": 'write the bot token, which starts with "xoxb-"'},
            "retries": {"type": "integer", "minimum": 0, "maximum": 5},
        },
    }

    @hookimpl
    def miniapp_manifests(config):
        return [{"name": plugin_settings(config, "notifier")["channel"]}]

    @hookimpl(trylast=True)
    def audit_event(event, config):
        SEEN.append((event["kind"], plugin_settings(config, "notifier")["channel"]))
"""
LEAKED = "sk_live_0123456789"


@pytest.fixture
def make_app(tmp_path):
    """``make_app(folder, **settings)``: an application loading ``folder`` with
    ``PLUGIN_SETTINGS`` = ``settings``."""
    apps = []

    def build(folder, **settings):
        app = create_app(make_config(tmp_path, PLUGINS_DIRS=[str(folder)],
                                     PLUGIN_SETTINGS=settings), instance_path=tmp_path)
        instance_service.migrate(app)
        apps.append(app)
        return app

    yield build
    for app in apps:
        get_database(app).engine.dispose()


def write(folder, name, body):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.py").write_text(textwrap.dedent(body))
    return folder


def audited(app, kind="settings_test"):
    from host import audit

    with app.app_context(), get_database(app).sessions() as db:
        audit.record(db, kind, actor="cli")
        db.commit()


def test_settings_that_match_reach_the_hooks(tmp_path, make_app):
    folder = write(tmp_path / "plugins", "notifier", NOTIFIER)
    app = make_app(folder, notifier={"channel": "#ops", "token": "xoxb-1", "retries": 2})
    plugins = get_plugins(app)
    assert plugins.failures == [] and [p.name for p in plugins.loaded] == ["notifier"]
    assert plugins.call_each("miniapp_manifests", config=app.config) == [
        ("notifier", [{"name": "#ops"}])]
    audited(app)
    assert plugins.manager.get_plugin("notifier").SEEN == [("settings_test", "#ops")]


def test_without_an_entry_the_plugin_loads_unchecked(tmp_path, make_app):
    folder = write(tmp_path / "plugins", "notifier", NOTIFIER)
    app = make_app(folder, other={"anything": 1})
    assert [p.name for p in get_plugins(app).loaded] == ["notifier"]
    assert get_plugins(app).failures == []


WRONG = {"channel": "ops", "token": LEAKED, "retries": True, "colour": "red"}
WRONG_MESSAGE = (
    "ValueError: "
    'PLUGIN_SETTINGS["notifier"] has unknown setting(s) \'colour\'; the settings are '
    "'channel' (required), 'token' (required) and 'retries'. "
    'PLUGIN_SETTINGS["notifier"]["channel"] is \'ops\'; write the channel to post to, such as '
    '"#ops". '
    'PLUGIN_SETTINGS["notifier"]["retries"] is of type bool (True is not of type \'integer\'). '
    'PLUGIN_SETTINGS["notifier"]["token"] is not accepted; write the bot token, which starts '
    'with "xoxb-"')


def test_wrong_settings_keep_the_plugin_out_and_fail_its_hooks(tmp_path, make_app, caplog):
    folder = write(tmp_path / "plugins", "notifier", NOTIFIER)
    with caplog.at_level(logging.ERROR, "host.plugins"):
        app = make_app(folder, notifier=WRONG)
    plugins = get_plugins(app)
    assert [(f.name, f.origin, f.error) for f in plugins.failures] == [
        ("notifier", f"folder {folder}", WRONG_MESSAGE)]
    assert plugins.loaded == []
    assert (f"plugin notifier (folder {folder}) is not loaded, its settings are wrong: "
            f"{WRONG_MESSAGE.removeprefix('ValueError: ')}; until they are fixed each of its "
            "hooks fails with this message") in caplog.text
    # Its hooks are held, in the same order, by a stand-in that refuses each call.
    assert plugins.hooks_of("notifier") == ["audit_event", "miniapp_manifests"]
    [impl] = plugins.hook.audit_event.get_hookimpls()
    assert impl.trylast
    assert plugins.call_each("miniapp_manifests", config=app.config) == []
    audited(app)
    assert {key: (f.error, f.count) for key, f in plugins.hook_failures.items()} == {
        ("notifier", "miniapp_manifests"): (WRONG_MESSAGE, 1),
        ("notifier", "audit_event"): (WRONG_MESSAGE, 1)}

    listed = CliRunner().invoke(cli, ["--instance", str(tmp_path / "cli"), "--plugins-dir",
                                      str(folder), "plugins", "list"],
                                env={"MINIHOST_PLUGIN_SETTINGS": json.dumps(
                                    {"notifier": WRONG})})
    assert f"Not loaded: notifier (folder {folder}): {WRONG_MESSAGE}\n" in listed.output
    with get_database(app).transaction() as db:
        accounts.create_user(db, "ops@example.com", "correct horse", admin=True)
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    client.post("/login", data={"email": "ops@example.com", "password": "correct horse",
                                "csrf_token": re.search(r'name="csrf_token" value="([^"]+)"',
                                                        page).group(1)})
    assert client.get("/-/plugins.json").get_json()["notLoaded"] == [
        {"name": "notifier", "origin": f"folder {folder}", "error": WRONG_MESSAGE}]
    assert LEAKED not in caplog.text and LEAKED not in listed.output
    assert LEAKED not in client.get("/-/plugins").get_data(as_text=True)


@pytest.mark.parametrize("schema, message", [
    ('{"type": "object", "properties": {"times": {"type": "whole number"}}}',
     "SETTINGS_SCHEMA at /properties/times/type: 'whole number' is not valid under any of "
     "the given schemas"),
    ('{"properties": {"x": {"$ref": "https://example.com/s.json"}}}',
     "SETTINGS_SCHEMA at /properties/x/$ref: $ref 'https://example.com/s.json' points outside "
     "the document; only references inside it (#/$defs/…) are allowed, so copy the schema it "
     "names into $defs"),
    ('{"properties": {"x": {"type": "string", "pattern": "^(a+)+$"}}}',
     "SETTINGS_SCHEMA at /properties/x/pattern: the pattern '^(a+)+$' repeats something that "
     "itself repeats (like (a+)+), which can take exponential time on some inputs; rewrite it "
     "without the nested repetition, e.g. (a+)+ as a+"),
    ('["object"]',
     "SETTINGS_SCHEMA is a list; write a JSON Schema object (a dict)"),
])
def test_a_wrong_schema_keeps_the_plugin_from_loading(tmp_path, make_app, schema, message):
    folder = write(tmp_path / "plugins", "sloppy", f"""
        from host.plugins import hookimpl

        SETTINGS_SCHEMA = {schema}

        @hookimpl
        def miniapp_manifests(config):
            return []
    """)
    app = make_app(folder)  # with or without settings: the schema is the plugin's bug
    plugins = get_plugins(app)
    assert [(f.name, f.error) for f in plugins.failures] == [("sloppy", f"ValueError: {message}")]
    assert plugins.manager.get_plugin("sloppy") is None


def _block_after(label: str, fence: str) -> str:
    after = DOCS[DOCS.index(label):]
    shown = after[after.index(f"```{fence}\n") + len(fence) + 4:]
    return shown[:shown.index("```")]


def test_the_guides_settings_example_behaves_as_documented(tmp_path, make_app):
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "greeter.py").write_text(_block_after("`greeter.py`, in a", "python"))
    shown = re.search(r"With `PLUGIN_SETTINGS = (\{.*?\})` the", DOCS, re.DOTALL).group(1)
    wrong = eval(shown.replace("\n", " "))  # noqa: S307 - the guide's own literal
    app = make_app(folder, **wrong)
    [failure] = get_plugins(app).failures
    assert failure.error + "\n" == _block_after("the plugin and says why:", "")

    right = make_app(folder, greeter={"greeting": "Hello", "times": 2})
    assert get_plugins(right).failures == []
    owner, value = right.extensions["minihost.system_values"]["greeting"]
    assert (owner, value({})) == ("greeter", "Hello Hello")
