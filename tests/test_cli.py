import json
import os
from datetime import timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import text

from host.cli import cli
from host.db import Run, first_id_at, make_engine, utcnow
from host.manifest import manifest_schema

from .conftest import FIXTURES


@pytest.fixture
def run(tmp_path, monkeypatch):
    for name in list(os.environ):
        if name.startswith("MINIHOST_") and name != "MINIHOST_TEST_POSTGRES_URL":
            monkeypatch.delenv(name)
    monkeypatch.setenv("MINIHOST_MINIAPPS_DIRS", str(FIXTURES / "miniapps"))

    def invoke(*args, **env):
        runner = CliRunner()
        return runner.invoke(cli, list(args), env=env or None, catch_exceptions=False)

    return invoke


def test_validate_ok(run):
    result = run("validate", str(FIXTURES / "miniapps" / "weather"),
                 str(FIXTURES / "miniapps" / "chat" / "manifest.json"))
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [
        f"ok {FIXTURES / 'miniapps' / 'weather' / 'manifest.json'} (weather 1.0.0)",
        f"ok {FIXTURES / 'miniapps' / 'chat' / 'manifest.json'} (chat 2.3.0)",
        "2 manifest(s) valid",
    ]


def test_validate_reports_every_error_with_file_and_pointer(run, tmp_path):
    one = tmp_path / "one.json"
    one.write_text(json.dumps({"name": "one", "version": "1", "title": "One",
                               "description": "d", "actions": [
                                   {"name": "a", "title": "A", "requests": [
                                       {"url": "https://x.example/{{id}}", "method": "GET"}]}]}))
    two = tmp_path / "two.json"
    two.write_text("{not json")
    result = run("validate", str(one), str(two))
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"{one} /version: '1' is not a valid value: Semantic version such as 1.0.0.",
        f"{one} /actions/0/requests/0/url: placeholder {{{{id}}}} in action a is not a parameter "
        "of a (parameters: none), a value mapped by an earlier request, an auth.config key "
        "(none) or a system value (webhookUrl, subdomain, uid, installationId, hostUrl, "
        "idempotencyKey)",
        f"{one} /allowedHosts: allowedHosts is required when the manifest makes requests; list "
        'every host it calls, e.g. ["api.example.com"]',
        f"{two} /: not valid JSON: Expecting property name enclosed in double quotes at line 1 "
        "column 2",
        "Error: 4 problem(s) in 2 manifest(s)",
    ]


def test_validate_without_paths_is_a_usage_error(run):
    assert run("validate").exit_code == 2


def test_schema_prints_the_published_schema(run):
    result = run("schema")
    assert json.loads(result.stdout) == manifest_schema()


def test_init_is_idempotent(run, tmp_path):
    instance = tmp_path / "inst"
    first = run("--instance", str(instance), "init")
    assert first.exit_code == 0, first.output
    assert f"Generated {instance / 'secret_key'}" in first.stdout
    assert "Catalog: 4 added, 0 updated, 0 removed, 0 unchanged, 0 refused" in first.stdout
    keys = (instance / "vault_keys").read_text()
    assert oct((instance / "vault_keys").stat().st_mode & 0o777) == "0o600"
    second = run("--instance", str(instance), "init")
    assert second.exit_code == 0
    assert "Generated" not in second.stdout
    assert "Catalog: 0 added, 0 updated, 0 removed, 4 unchanged, 0 refused" in second.stdout
    assert (instance / "vault_keys").read_text() == keys
    listing = run("--instance", str(instance), "catalog", "list")
    assert listing.stdout.splitlines()[0].split() == [
        "chat", "2.3.0", "folder", str(FIXTURES / "miniapps" / "chat")]


def test_bad_config_stops_with_one_line_and_changes_nothing(run, tmp_path):
    instance = tmp_path / "inst"
    result = run("--instance", str(instance), "init", MINIHOST_SANDBOX="maybe")
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: SANDBOX='maybe' is not a boolean; use one of true, false, 1, 0, yes, no\n"
    )
    assert not instance.exists()


def test_unreachable_database_changes_nothing(run, tmp_path):
    instance = tmp_path / "inst"
    result = run("--instance", str(instance), "init",
                 MINIHOST_DATABASE_URL="postgresql+psycopg://nobody:pw@127.0.0.1:9/none")
    assert result.exit_code == 1
    line = result.stderr.strip()
    assert line.startswith("Error: cannot use the database "
                           "postgresql+psycopg://nobody:***@127.0.0.1:9/none: ")
    assert line.endswith("; check DATABASE_URL and that the database server is running")
    assert "\n" not in line
    assert not instance.exists()


def test_an_unusable_instance_folder(run, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = run("--instance", str(blocker / "inst"), "init")
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: the instance folder {blocker / 'inst'} is not a usable folder (Not a directory); "
        "choose another with --instance PATH or MINIHOST_INSTANCE_PATH\n"
    )


def test_catalog_sync_and_list_show_refused_manifests(run, tmp_path):
    apps = tmp_path / "apps"
    (apps / "bad").mkdir(parents=True)
    (apps / "bad" / "manifest.json").write_text('{"name": "bad", "version": "1.0.0"}')
    instance = tmp_path / "inst"
    result = run("--instance", str(instance), "catalog", "sync", MINIHOST_MINIAPPS_DIRS=str(apps))
    assert result.exit_code == 0
    assert "0 added, 0 updated, 0 removed, 0 unchanged, 1 refused" in result.stdout
    listing = run("--instance", str(instance), "catalog", "list", MINIHOST_MINIAPPS_DIRS=str(apps))
    assert listing.stdout.startswith("The catalog is empty")
    assert listing.stderr.splitlines() == [
        f"Refused folder {apps / 'bad'}:",
        f"  {apps / 'bad' / 'manifest.json'} /: missing required member 'title'",
        f"  {apps / 'bad' / 'manifest.json'} /: missing required member 'description'",
    ]


def test_plugins_dir_option_adds_plugins(run, tmp_path):
    folder = tmp_path / "more"
    folder.mkdir()
    (folder / "shout.py").write_text(
        "import click\nfrom host.plugins import hookimpl\n\n\n@hookimpl\n"
        "def register_commands(cli):\n    @cli.command()\n    def shout():\n"
        "        click.echo('HELLO')\n"
    )
    result = run("--instance", str(tmp_path / "i"), "--plugins-dir", str(folder), "shout")
    assert (result.exit_code, result.stdout) == (0, "HELLO\n")


def test_serve_demo_needs_the_default_address(run, tmp_path):
    result = run("--instance", str(tmp_path / "inst"), "serve", "--demo", "--port", "5001")
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: the demo runs at http://127.0.0.1:5000, the address the bundled demo-tasks "
        "mini-app calls; run `minihost serve --demo` without --host, --port or another "
        "PUBLIC_URL\n")
    assert not (tmp_path / "inst").exists()


def test_concurrent_inits_all_succeed(tmp_path, database_url):
    """Four `minihost init` at once on a fresh instance: each exits 0, one set of keys,
    one schema, each mini-app stored once (SQLite and PostgreSQL)."""
    import subprocess
    import sys
    from pathlib import Path

    from sqlalchemy import create_engine, text

    minihost = Path(sys.executable).parent / "minihost"
    instance = tmp_path / "inst"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINIHOST_")}
    env.update({"MINIHOST_MINIAPPS_DIRS": str(FIXTURES / "miniapps"),
                "MINIHOST_DATABASE_URL": database_url})
    processes = [subprocess.Popen([str(minihost), "--instance", str(instance), "init"], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(4)]
    results = [(p.wait(timeout=120), *p.communicate()) for p in processes]
    assert [code for code, _, _ in results] == [0, 0, 0, 0], [err for _, _, err in results]
    assert sum("Generated" in out for _, out, _ in results) == 1
    assert len((instance / "vault_keys").read_text().split()) == 1
    engine = create_engine(database_url)
    with engine.connect() as connection:
        names = connection.execute(text("SELECT name, version FROM miniapp")).all()
    engine.dispose()
    assert len(names) == len(set(names)) == 4


def test_runs_purge_deletes_the_runs_retention_no_longer_keeps(run, tmp_path):
    database = f"sqlite:///{tmp_path / 'minihost.db'}"
    assert run("--instance", str(tmp_path), "init").exit_code == 0
    assert run("--instance", str(tmp_path), "users", "create", "ada@example.com",
               "--password", "correct horse").exit_code == 0
    engine = make_engine(database)
    with engine.begin() as connection:
        workspace = connection.scalar(text("SELECT id FROM workspace"))
        for days in (100, 95, 10):
            started = utcnow() - timedelta(days=days)
            connection.execute(Run.__table__.insert(), {
                "id": first_id_at("run", started)[:-1] + "1", "workspace_id": workspace,
                "kind": "action", "name": "createNote", "status": "succeeded",
                "parameters": {}, "sandbox": False, "started_at": started})

    def count():
        with engine.connect() as connection:
            return connection.scalar(text("SELECT count(*) FROM run"))

    kept = run("--instance", str(tmp_path), "runs", "purge", MINIHOST_RUN_RETENTION_DAYS="0")
    assert kept.exit_code == 0 and count() == 3
    assert kept.output == "RUN_RETENTION_DAYS is 0: runs are kept for ever; nothing was purged.\n"
    before = utcnow() - timedelta(days=90)
    result = run("--instance", str(tmp_path), "runs", "purge")
    after = utcnow() - timedelta(days=90)
    assert result.exit_code == 0 and count() == 1
    assert result.output in {
        f"Purged 2 finished run(s) started before {cutoff:%Y-%m-%d %H:%M} UTC "
        "(RUN_RETENTION_DAYS=90).\n" for cutoff in (before, after)}
    engine.dispose()
