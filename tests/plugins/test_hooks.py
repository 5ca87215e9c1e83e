import json
import re
import textwrap

import click
import pytest
from click.testing import CliRunner
from sqlalchemy import select

from host import create_app
from host.cli import cli
from host.db import CatalogError, MiniApp, get_database
from host.plugins import get_plugins
from host.services import catalog, installations
from host.services import instance as instance_service

from ..conftest import FIXTURES, REPO, make_config

VALID = {"name": "from-plugin", "version": "1.0.0", "title": "From a plugin",
         "description": "Contributed by a plugin.", "categories": ["plugins"]}


def plugin(folder, name, body):
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.py").write_text(textwrap.dedent(body))
    return folder


@pytest.fixture
def make_app(tmp_path):
    apps = []

    def build(plugins_dir, **config):
        config.setdefault("PLUGINS_DIRS", [str(plugins_dir)])
        app = create_app(make_config(tmp_path, **config), instance_path=tmp_path)
        instance_service.migrate(app)
        apps.append(app)
        return app

    yield build
    for app in apps:
        get_database(app).engine.dispose()


def test_hook_miniapp_manifests(tmp_path, make_app):
    broken = dict(VALID, name="broken-plugin-app", title="")
    weather = str(FIXTURES / "miniapps" / "weather")
    folder = plugin(tmp_path / "plugins", "contributes", f"""
        from host.plugins import hookimpl

        @hookimpl
        def miniapp_manifests(config):
            return [{json.dumps(VALID)}, {json.dumps(broken)}, {weather!r}]
    """)
    app = make_app(folder, MINIAPPS_DIRS=[])
    report = catalog.sync(app)
    assert sorted(report.added) == ["from-plugin 1.0.0", "weather 1.0.0"]
    with get_database(app).sessions() as db:
        origins = {r.name: r.origin for r in db.scalars(select(MiniApp))}
        [error] = db.scalars(select(CatalogError)).all()
    assert origins == {"from-plugin": "plugin", "weather": "plugin"}
    assert error.origin == "plugin"
    assert error.problems == [{"file": "plugin manifest broken-plugin-app", "pointer": "/title",
                               "message": "'' should be non-empty"}]


def test_hook_register_blueprints(tmp_path, make_app):
    folder = plugin(tmp_path / "plugins", "pages", """
        from flask import Blueprint
        from host.plugins import hookimpl

        blueprint = Blueprint("pages_plugin", __name__)

        @blueprint.get("/-/hello")
        def hello():
            return "hello from a plugin"

        @hookimpl
        def register_blueprints(app):
            return [blueprint]
    """)
    client = make_app(folder).test_client()
    assert client.get("/-/hello").get_data(as_text=True) == "hello from a plugin"


def test_hook_register_commands(tmp_path, make_app):
    folder = plugin(tmp_path / "plugins", "commands", """
        import click
        from host.plugins import hookimpl

        @hookimpl
        def register_commands(cli):
            @cli.command()
            @click.argument("who")
            def greet(who):
                click.echo(f"hello {who}")
    """)
    app = make_app(folder)
    result = app.test_cli_runner().invoke(args=["greet", "ada"])
    assert result.output == "hello ada\n"
    assert isinstance(app.cli.get_command(click.Context(app.cli), "greet"), click.Command)


def test_disabled_plugins_do_not_load(tmp_path, make_app):
    folder = plugin(tmp_path / "plugins", "unwanted", """
        raise RuntimeError("must not be imported")
    """)
    app = make_app(folder, DISABLED_PLUGINS=["unwanted"])
    assert get_plugins(app).failures == []
    assert "unwanted" not in [p.name for p in get_plugins(app).loaded]


def test_a_plugin_that_fails_to_import_is_reported_not_fatal(tmp_path, make_app, caplog):
    folder = plugin(tmp_path / "plugins", "crashes", """
        raise RuntimeError("boom")
    """)
    plugin(folder, "fine", """
        __version__ = "2.0"
    """)
    app = make_app(folder)
    [failure] = get_plugins(app).failures
    assert (failure.name, failure.error) == ("crashes", "RuntimeError: boom")
    assert [(p.name, p.version) for p in get_plugins(app).loaded] == [("fine", "2.0")]
    assert "plugin crashes" in caplog.text


def test_package_plugins_with_relative_imports(tmp_path, make_app):
    package = tmp_path / "plugins" / "pkg"
    package.mkdir(parents=True)
    (package / "helper.py").write_text("ANSWER = 42\n")
    (package / "__init__.py").write_text(textwrap.dedent("""
        from host.plugins import hookimpl
        from .helper import ANSWER

        @hookimpl
        def register_commands(cli):
            @cli.command()
            def answer():
                print(ANSWER)
    """))
    app = make_app(tmp_path / "plugins")
    assert app.test_cli_runner().invoke(args=["answer"]).output == "42\n"


def test_entry_point_plugins_load(tmp_path, make_app, monkeypatch):
    site = tmp_path / "site"
    dist = site / "ep_plugin-1.5.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ep-plugin\nVersion: 1.5\n")
    (dist / "entry_points.txt").write_text("[minihost]\nep = ep_plugin_module\n")
    (site / "ep_plugin_module.py").write_text(textwrap.dedent("""
        from host.plugins import hookimpl

        @hookimpl
        def miniapp_manifests(config):
            return []
    """))
    monkeypatch.syspath_prepend(str(site))
    app = make_app(tmp_path / "none")
    assert ("ep", "entry point ep-plugin", "1.5") in [
        (p.name, p.origin, p.version) for p in get_plugins(app).loaded
    ]


def test_hook_audit_event(tmp_path, make_app, caplog):
    folder = plugin(tmp_path / "plugins", "auditor", """
        from host.plugins import hookimpl

        SEEN = []

        @hookimpl
        def audit_event(event):
            SEEN.append((event["kind"], event["actor"], event["detail"]))
    """)
    plugin(folder, "broken_auditor", """
        from host.plugins import hookimpl

        @hookimpl
        def audit_event(event):
            raise RuntimeError("log store down")
    """)
    app = make_app(folder)
    from host.services import accounts

    with app.app_context(), get_database(app).transaction() as db:
        accounts.create_user(db, "audited@example.com", "password1", actor="cli")
    seen = get_plugins(app).manager.get_plugin("auditor").SEEN
    assert seen == [("user_created", "cli", {"email": "audited@example.com", "admin": False})]
    assert "plugin broken_auditor failed in audit_event" in caplog.text
    with get_database(app).sessions() as db:
        assert db.scalars(select(MiniApp)).all() == []  # the app still works


def test_hook_installation_changed(hosted, tmp_path):
    from host.plugins import get_plugins
    from host.principal import Principal
    from host.services import installations
    from host.services.accounts import personal_workspace

    seen = []

    from host.plugins import hookimpl

    class Watcher:
        @hookimpl
        def installation_changed(self, installation, change):
            seen.append((change, installation["miniapp"], installation["status"],
                         installation["credentialKeys"]))

    get_plugins(hosted.app).manager.register(Watcher(), name="watcher")
    with get_database(hosted.app).sessions() as db:
        who = Principal(hosted.alice, personal_workspace(db, hosted.alice), "session:x")
        keyed = installations.install(hosted.app, db, who, "keyed",
                                      credentials={"apiKey": "key-good-123"}).installation
        installations.connect(hosted.app, db, who, keyed, lambda: {"apiKey": "key-good-123"})
        installations.uninstall(hosted.app, db, who, keyed)
    assert seen == [("installed", "keyed", "active", ["apiKey", "hookId"]),
                    ("reconnected", "keyed", "active", ["apiKey", "hookId"]),
                    ("uninstalled", "keyed", "uninstalled", [])]


def test_hook_form_widgets(tmp_path, make_app):
    folder = plugin(tmp_path / "plugins", "stars", """
        from markupsafe import Markup, escape
        from host.plugins import hookimpl

        @hookimpl
        def form_widgets():
            def stars(field, name, value):
                return Markup(f'<input type="range" min="1" max="5" id="f-{escape(name)}" '
                              f'name="{escape(name)}" value="{escape(value or 3)}">')
            return {"stars": stars, "text": stars}
    """)
    app = make_app(folder, PLUGINS_DIRS=[str(folder), str(REPO / "plugins")])
    widgets = app.extensions["minihost.widgets"]
    assert set(widgets) >= {"stars", "date"} and "text" not in widgets
    from host.forms import build_form

    form = build_form({"type": "object", "properties": {
        "rating": {"type": "integer", "x-widget": "stars"},
        "due": {"type": "string", "x-widget": "date"},
        "other": {"type": "string", "x-widget": "no-such-widget"}}})
    with app.test_request_context():
        from flask import render_template_string

        html = render_template_string(
            '{% from "forms/_fields.html" import render_fields %}'
            '{{ render_fields(form.fields, {"due": "2026-12-31"}, {}) }}', form=form)
    assert '<input type="range" min="1" max="5" id="f-rating" name="rating" value="3">' in html
    assert '<input type="date" id="f-due" name="due" value="2026-12-31">' in html
    assert re.search(r'<input type="text" id="f-other" name="other"', html)


def test_hook_run_finished(hosted):
    from host.plugins import get_plugins, hookimpl
    from host.principal import Principal
    from host.services.accounts import personal_workspace
    from host.services.runs import run_action

    seen = []

    class Counter:
        @hookimpl
        def run_finished(self, run):
            seen.append((run["action"], run["status"], run["output"],
                         len(run["trace"]["requests"])))

    get_plugins(hosted.app).manager.register(Counter(), name="counter")
    with get_database(hosted.app).sessions() as db:
        who = Principal(hosted.alice, personal_workspace(db, hosted.alice), "session:x")
        installation = installations.install(hosted.app, db, who, "open").installation
        run_action(hosted.app, db, who, installation, "ping", {})
    assert seen == [("ping", "succeeded", {}, 1)]


def test_a_plugin_needing_another_host_version_is_not_loaded(tmp_path, make_app):
    folder = plugin(tmp_path / "plugins", "future", """
        MINIHOST_REQUIRES = ">=99"
    """)
    plugin(folder, "current", """
        MINIHOST_REQUIRES = ">=0.1,<99"
    """)
    plugin(folder, "garbled", """
        MINIHOST_REQUIRES = "soon"
    """)
    app = make_app(folder)
    assert [p.name for p in get_plugins(app).loaded] == ["current"]
    assert {(f.name, f.error) for f in get_plugins(app).failures} == {
        ("future", "RuntimeError: needs Minihost >=99; this host is 0.1.0"),
        ("garbled", "ValueError: MINIHOST_REQUIRES = 'soon' is not a version specifier such "
                    "as '>=0.1'"),
    }


def test_plugins_list_and_the_plugins_page(tmp_path, make_app):
    from host.services import accounts

    folder = plugin(tmp_path / "plugins", "observer", """
        from host.plugins import hookimpl

        __version__ = "3.1"

        @hookimpl
        def run_finished(run):
            pass

        @hookimpl
        def audit_event(event):
            raise RuntimeError("log shipper down")
    """)
    plugin(folder, "broken", """
        import no_such_module
    """)
    app = make_app(folder)

    def minihost(*args):
        return CliRunner().invoke(cli, ["--instance", str(tmp_path / "cli"), "--plugins-dir",
                                        str(folder), "plugins", "list", *args])

    result = minihost()
    assert result.exit_code == 0, result.output
    assert (f"observer             3.1        folder {folder}\n"
            "  hooks: audit_event, run_finished\n") in result.output
    assert "date_widget" in result.output  # the bundled plugins too
    assert ("Not loaded: broken (folder " in result.output
            and "ModuleNotFoundError: No module named 'no_such_module'" in result.output)
    listed = json.loads(minihost("--json").stdout)  # the log (stderr) holds the failure
    assert {"name": "observer", "version": "3.1", "origin": f"folder {folder}",
            "hooks": ["audit_event", "run_finished"]} in listed["plugins"]

    with get_database(app).transaction() as db:
        accounts.create_user(db, "ops@example.com", "correct horse", admin=True)
        accounts.create_user(db, "user@example.com", "correct horse")
    client = app.test_client()

    def sign_in(email):
        page = client.get("/login").get_data(as_text=True)
        client.post("/login", data={"email": email, "password": "correct horse",
                                    "csrf_token": re.search(r'name="csrf_token" value="([^"]+)"',
                                                            page).group(1)})

    sign_in("user@example.com")
    assert client.get("/-/plugins").status_code == 403
    client.post("/logout", data={"csrf_token": re.search(
        r'name="csrf_token" value="([^"]+)"', client.get("/account").get_data(as_text=True)
    ).group(1)})
    sign_in("ops@example.com")
    page = client.get("/-/plugins").get_data(as_text=True)
    assert ("<tr><td><strong>observer</strong></td><td>3.1</td>"
            f"<td>folder {folder}</td>") in page
    assert "<code>audit_event</code>, <code>run_finished</code>" in page
    assert "ModuleNotFoundError: No module named &#39;no_such_module&#39;" in page
    # Signing in was audited, so the failing observer has been called by now.
    assert "<td>observer</td><td><code>audit_event</code></td>" in page
    data = client.get("/-/plugins.json").get_json()
    assert data["hookFailures"][0]["error"] == "RuntimeError: log shipper down"


def test_audit_events_reach_plugins_only_once_committed(tmp_path, make_app):
    from host import audit

    folder = plugin(tmp_path / "plugins", "collector", """
        from host.plugins import hookimpl

        SEEN = []

        @hookimpl
        def audit_event(event, config):
            SEEN.append((event["kind"], config["TESTING"]))
    """)
    app = make_app(folder)
    seen = get_plugins(app).manager.get_plugin("collector").SEEN
    with app.app_context():
        with get_database(app).sessions() as db:
            audit.record(db, "first", actor="cli")
            assert seen == []  # not committed yet
            db.commit()
            assert seen == [("first", True)]
            audit.record(db, "rolled_back", actor="cli")
            db.rollback()
            audit.record(db, "second", actor="cli")
            db.commit()
    assert seen == [("first", True), ("second", True)]


def test_answers_of_the_wrong_shape_are_reported_not_fatal(tmp_path, make_app):
    folder = plugin(tmp_path / "plugins", "sloppy", """
        from flask import Blueprint
        from host.plugins import AuthType, hookimpl

        @hookimpl
        def register_blueprints(app):
            return Blueprint("sloppy", __name__)

        @hookimpl
        def auth_types(config):
            return AuthType("x", "X", form=dict, connect=dict, credentials=list)

        @hookimpl
        def form_widgets():
            return ["stars"]

        @hookimpl
        def system_values(config):
            return "tenant"
    """)
    app = make_app(folder)
    assert app.test_client().get("/healthz").status_code == 200
    errors = {hook: f.error for (name, hook), f in get_plugins(app).hook_failures.items()
              if name == "sloppy"}
    assert errors == {
        "register_blueprints": "TypeError: returned Blueprint, not a list of blueprints; "
                               "nothing it returned was used",
        "auth_types": "TypeError: returned AuthType, not a list of AuthType; nothing it "
                      "returned was used",
        "form_widgets": "TypeError: returned list, not a mapping; nothing it returned was used",
        "system_values": "TypeError: returned str, not a mapping; nothing it returned was used",
    }


def test_a_widget_that_fails_renders_a_text_input(tmp_path, make_app):
    folder = plugin(tmp_path / "plugins", "fragile", """
        from host.plugins import hookimpl

        def broken(field, name, value):
            raise RuntimeError("template missing")

        @hookimpl
        def form_widgets():
            return {"fragile": broken}
    """)
    app = make_app(folder)
    from flask import render_template_string

    from host.forms import build_form

    form = build_form({"type": "object", "properties": {
        "due": {"type": "string", "x-widget": "fragile"}}})
    with app.test_request_context():
        html = render_template_string(
            '{% from "forms/_fields.html" import render_fields %}'
            '{{ render_fields(form.fields, {"due": "soon"}, {}) }}', form=form)
    assert re.search(r'<input type="text" id="f-due" name="due"[^>]* value="soon">', html)
    assert get_plugins(app).hook_failures[("fragile", "form_widgets")].error == (
        "RuntimeError: template missing")


def test_audit_plugins_are_told_after_the_write_lock_is_released(tmp_path, make_app):
    from host.services import accounts

    folder = plugin(tmp_path / "plugins", "slow_shipper", """
        from host.plugins import hookimpl

        SEEN = []

        @hookimpl
        def audit_event(event):
            import flask
            from host.db import get_database
            lock = get_database(flask.current_app).write_lock
            SEEN.append((event["kind"], lock.held()))
    """)
    app = make_app(folder)
    with app.app_context(), get_database(app).transaction() as db:
        accounts.create_user(db, "lock@example.com", "password1", actor="cli")
    assert get_plugins(app).manager.get_plugin("slow_shipper").SEEN == [("user_created", False)]


def test_a_plugin_cannot_offer_versions_of_a_folder_miniapp(tmp_path, make_app):
    takeover = dict(VALID, name="weather", version="9.9.9")
    folder = plugin(tmp_path / "plugins", "impostor", f"""
        from host.plugins import hookimpl

        @hookimpl
        def miniapp_manifests(config):
            return [{json.dumps(takeover)}]
    """)
    app = make_app(folder, MINIAPPS_DIRS=[str(FIXTURES / "miniapps")])
    report = catalog.sync(app)
    assert "weather 9.9.9" not in report.added
    [refused] = [r for r in report.refused if r.origin == "plugin"]
    assert [(p.pointer, p.message) for p in refused.problems] == [(
        "/name", "weather is a mini-app from this host's folders; a plugin cannot offer "
        "versions of it. Give the plugin's mini-app another name")]
