"""The bundled audit_jsonl plugin, loaded from the repository's plugins/ folder
into a real host: what it writes, how it rotates, and how it fails."""

import json
import os
import threading

import pytest
from sqlalchemy import select

from host import audit
from host.audit import as_dict
from host.db import AuditEvent, get_database
from host.plugins import get_plugins, plugin_settings
from host.services.accounts import personal_workspace

from ..conftest import REPO, build_hosted


@pytest.fixture
def bundled(tmp_path, provider):
    """A host whose plugins are the repository's bundled ones, with ``config``."""
    built = []

    def build(**config):
        hosted = build_hosted(tmp_path, provider, PLUGINS_DIRS=[str(REPO / "plugins")], **config)
        built.append(hosted)
        return hosted

    yield build
    for hosted in built:
        get_database(hosted.app).engine.dispose()
        close = getattr(get_plugins(hosted.app).manager.get_plugin("audit_jsonl"), "close", None)
        if close is not None:  # not a stand-in for wrong settings
            close()  # the next test starts with no file open


def audit_rows(hosted):
    with get_database(hosted.app).sessions() as db:
        return {row.id: as_dict(row) for row in db.scalars(select(AuditEvent))}


def new_events(hosted, seen, act):
    """Do ``act``; the audit events it recorded, oldest first."""
    act()
    rows = audit_rows(hosted)
    fresh = [event for event_id, event in rows.items() if event_id not in seen]
    seen.update(rows)
    return sorted(fresh, key=lambda event: (event["at"], event["id"]))


def jsonl(event):
    return (json.dumps(event, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


def sign_in(hosted, email="alice@example.com", password="correct horse"):
    client = hosted.app.test_client()
    answer = hosted.login(client, email, password)
    return answer.status_code


def test_sign_ins_and_installs_are_appended_as_json_lines(bundled, tmp_path):
    path = tmp_path / "logs" / "audit" / "audit.jsonl"  # the folders do not exist yet
    hosted = bundled(PLUGIN_SETTINGS={"audit_jsonl": {"path": str(path)}})
    plugins = get_plugins(hosted.app)
    assert plugins.hooks_of("audit_jsonl") == ["audit_event"]
    before = path.read_bytes() if path.exists() else b""
    seen = set(audit_rows(hosted))
    with get_database(hosted.app).sessions() as db:
        workspace = personal_workspace(db, hosted.alice)

    [login] = new_events(hosted, seen, lambda: sign_in(hosted))
    assert {k: login[k] for k in ("actor", "workspace", "installation", "kind")} == {
        "actor": f"user:{hosted.alice.id}", "workspace": workspace, "installation": None,
        "kind": "login"}
    assert login["detail"] == {"session": login["detail"]["session"], "address": "127.0.0.1"}

    [failed] = new_events(hosted, seen, lambda: sign_in(hosted, "Zoë@Example.com", "wrong pw!"))
    assert failed == {"id": failed["id"], "at": failed["at"], "actor": "email:zoë@example.com",
                      "workspace": None, "installation": None, "kind": "login_failed",
                      "detail": {"address": "127.0.0.1"}}

    answer = {}

    def install():
        answer.update(hosted.api("POST", "/api/v1/installations", hosted.alice_token, json={
            "miniapp": "keyed", "credentials": {"apiKey": "key-good-123"}}).get_json())

    installed, registered = new_events(hosted, seen, install)
    installation = answer["id"]
    actor = installed["actor"]
    assert actor.startswith(f"user:{hosted.alice.id} via token:tok_")
    assert installed == {"id": installed["id"], "at": installed["at"], "actor": actor,
                         "workspace": workspace, "installation": installation,
                         "kind": "installed", "detail": {"miniapp": "keyed", "version": "1.0.0",
                                                         "credentialKeys": ["apiKey"]}}
    assert registered == {"id": registered["id"], "at": registered["at"], "actor": actor,
                          "workspace": workspace, "installation": installation,
                          "kind": "registered", "detail": {"credentialKeys": ["hookId"]}}

    written = path.read_bytes()
    assert written.startswith(before)
    new = written[len(before):]
    # compact JSON, keys in the event's order, UTF-8 rather than \u escapes, one per line
    assert new == b"".join(jsonl(e) for e in (login, failed, installed, registered))
    assert b'"actor":"email:zo\xc3\xab@example.com"' in new
    lines = new.decode("utf-8").splitlines()
    assert [json.loads(line) for line in lines] == [login, failed, installed, registered]
    assert list(json.loads(lines[0])) == ["id", "at", "actor", "workspace", "installation",
                                          "kind", "detail"]
    assert plugins.hook_failures == {}


def test_only_committed_events_are_written(bundled, tmp_path):
    path = tmp_path / "audit.jsonl"
    hosted = bundled(PLUGIN_SETTINGS={"audit_jsonl": {"path": str(path)}})
    before = path.read_bytes() if path.exists() else b""
    database = get_database(hosted.app)
    with hosted.app.app_context():
        with pytest.raises(RuntimeError), database.transaction() as db:
            audit.record(db, "test_rolled_back", actor="cli", detail={"n": 1})
            raise RuntimeError("undo")
        assert (path.read_bytes() if path.exists() else b"") == before
        with database.transaction() as db:
            event_id = audit.record(db, "test_committed", actor="cli", detail={"n": 2}).id
    [committed] = [e for e in audit_rows(hosted).values() if e["kind"].startswith("test_")]
    assert committed["id"] == event_id
    assert path.read_bytes() == before + jsonl(committed)


def expected_files(lines, max_bytes, backups):
    """What rotation must leave, newest file first: a file rolls over when the
    next line would take it past max_bytes and it is not empty."""
    files = [b""]
    for line in lines:
        if files[-1] and len(files[-1]) + len(line) > max_bytes:
            files.append(b"")
        files[-1] += line
    return list(reversed(files))[:backups + 1]


@pytest.mark.parametrize("max_bytes, backups", [
    (600, 3),    # two or so lines a file; the oldest files are dropped
    (600, 20),   # room for all: nothing is lost
    (200, 4),    # every line is longer than max_bytes: one line a file, no empty file
])
def test_rotation_keeps_lines_whole_and_the_newest_files(bundled, tmp_path, max_bytes, backups):
    hosted = bundled()
    path = tmp_path / "audit.jsonl"
    # Settings are read at each event: from here on, every event is written.
    hosted.app.config["PLUGIN_SETTINGS"] = {"audit_jsonl": {
        "path": str(path), "max_bytes": max_bytes, "backups": backups}}
    seen = set(audit_rows(hosted))
    events = []
    for _ in range(14):
        events += new_events(hosted, seen, lambda: sign_in(hosted))
    assert [e["kind"] for e in events] == ["login"] * 14
    lines = [jsonl(e) for e in events]
    assert all(len(line) > 200 for line in lines)

    expected = expected_files(lines, max_bytes, backups)
    names = [path.name] + [f"{path.name}.{n}" for n in range(1, len(expected))]
    assert sorted(p.name for p in tmp_path.glob("audit.jsonl*")) == sorted(names)
    assert [(tmp_path / name).read_bytes() for name in names] == expected
    for name in names:
        content = (tmp_path / name).read_bytes()
        assert content.endswith(b"\n")
        assert len(content) <= max_bytes or content.count(b"\n") == 1
    kept = b"".join(reversed(expected))
    assert lines[-1] in kept and kept == b"".join(lines)[-len(kept):]  # the newest, in order
    if backups == 20:
        assert kept == b"".join(lines) and len(expected) > 5
    else:
        assert len(expected) == backups + 1 and kept != b"".join(lines)
    assert get_plugins(hosted.app).hook_failures == {}


def test_threads_writing_at_once_lose_and_split_nothing(bundled, tmp_path):
    hosted = bundled()
    path = tmp_path / "audit.jsonl"
    config = {"PLUGIN_SETTINGS": {"audit_jsonl": {"path": str(path), "max_bytes": 3000,
                                                  "backups": 500}}}
    hook = get_plugins(hosted.app).manager.get_plugin("audit_jsonl").audit_event
    start = threading.Barrier(8)

    def write(thread):
        start.wait()
        for n in range(50):
            hook(event={"id": f"aud_{thread}_{n}", "kind": "test", "detail": {"n": n,
                                                                             "pad": "é" * 40}},
                 config=config)

    workers = [threading.Thread(target=write, args=(t,)) for t in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    files = sorted(tmp_path.glob("audit.jsonl*"))
    assert len(files) >= 15  # rotated many times while threads were writing
    assert all(f.stat().st_size <= 3000 for f in files)
    lines = [line for f in files for line in f.read_text("utf-8").splitlines()]
    assert sorted(json.loads(line)["id"] for line in lines) == sorted(
        f"aud_{t}_{n}" for t in range(8) for n in range(50))
    assert get_plugins(hosted.app).hook_failures == {}


def test_without_settings_nothing_is_written(bundled, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    hosted = bundled()
    assert plugin_settings(hosted.app.config, "audit_jsonl") == {}
    assert sign_in(hosted) == 302
    installed = hosted.api("POST", "/api/v1/installations", hosted.alice_token, json={
        "miniapp": "keyed", "credentials": {"apiKey": "key-good-123"}})
    assert installed.status_code == 201
    kinds = sorted(e["kind"] for e in audit_rows(hosted).values())
    assert {"login", "installed", "registered"} <= set(kinds)
    assert [p for p in tmp_path.rglob("*") if "jsonl" in p.name] == []
    assert get_plugins(hosted.app).manager.get_plugin("audit_jsonl")._loggers == {}
    assert get_plugins(hosted.app).hook_failures == {}


BAD_SETTINGS = [
    ({"path": "{tmp}/audit.jsonl", "max_bytes": "big"},
     'ValueError: PLUGIN_SETTINGS["audit_jsonl"]["max_bytes"] is of type str; write a whole '
     "number, at least 0, of bytes a file may reach before it is rotated (default 10485760, "
     "0 to never rotate)"),
    ({"path": "{tmp}/audit.jsonl", "max_bytes": True},
     'ValueError: PLUGIN_SETTINGS["audit_jsonl"]["max_bytes"] is of type bool; write a whole '
     "number, at least 0, of bytes a file may reach before it is rotated (default 10485760, "
     "0 to never rotate)"),
    ({"path": "{tmp}/audit.jsonl", "backups": 0},
     'ValueError: PLUGIN_SETTINGS["audit_jsonl"]["backups"] is 0; write a whole number, at '
     'least 1, of rotated files to keep (default 5); to never rotate write "max_bytes": 0'),
    ({"max_bytes": 1000},
     'ValueError: PLUGIN_SETTINGS["audit_jsonl"]["path"] is missing; write the file to append '
     'events to, as a string, for example "/var/log/minihost/audit.jsonl"'),
    ({"path": ["{tmp}/audit.jsonl"]},
     'ValueError: PLUGIN_SETTINGS["audit_jsonl"]["path"] is of type list; write the file to '
     'append events to, as a string, for example "/var/log/minihost/audit.jsonl"'),
    ({"path": " ", "backups": -1},
     'ValueError: PLUGIN_SETTINGS["audit_jsonl"]["backups"] is -1; write a whole number, at '
     'least 1, of rotated files to keep (default 5); to never rotate write "max_bytes": 0. '
     'PLUGIN_SETTINGS["audit_jsonl"]["path"] is \' \'; write the file to append events to, as '
     'a string, for example "/var/log/minihost/audit.jsonl"'),
    ({"path": "{tmp}/audit.jsonl", "max_size": 1000},
     'ValueError: PLUGIN_SETTINGS["audit_jsonl"] has unknown setting(s) \'max_size\'; the '
     "settings are 'path' (required), 'max_bytes' and 'backups'"),
    ({"path": "{tmp}"},
     "IsADirectoryError: [Errno 21] Is a directory: '{tmp}'"),
]


def _fill(value, tmp):
    if isinstance(value, str):
        return value.replace("{tmp}", str(tmp))
    if isinstance(value, list):
        return [_fill(v, tmp) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, tmp) for k, v in value.items()}
    return value


@pytest.mark.parametrize("settings, message", BAD_SETTINGS)
def test_bad_settings_are_reported_and_the_host_keeps_working(bundled, tmp_path, settings,
                                                             message):
    """Settings that miss SETTINGS_SCHEMA keep the plugin from loading, and fail each
    event with their message; a file that cannot be written fails each event too."""
    folder = tmp_path / "logs"
    folder.mkdir()
    hosted = bundled(PLUGIN_SETTINGS={"audit_jsonl": _fill(settings, folder)})
    message = _fill(message, folder)
    plugins = get_plugins(hosted.app)
    refused = message.startswith("ValueError: PLUGIN_SETTINGS")
    assert [(f.name, f.error) for f in plugins.failures] == (
        [("audit_jsonl", message)] if refused else [])
    assert ("audit_jsonl" in [p.name for p in plugins.loaded]) is not refused
    seen = set(audit_rows(hosted))
    [login] = new_events(hosted, seen, lambda: assert_signs_in(hosted))
    assert login["kind"] == "login"  # the audited action happened and is in the database
    failure = get_plugins(hosted.app).hook_failures[("audit_jsonl", "audit_event")]
    assert (failure.error, failure.count) == (message, 1)
    assert list(folder.iterdir()) == []  # nothing written anywhere it could have gone
    assert sign_in(hosted) == 302
    assert failure.count == 2
    client = hosted.app.test_client()
    hosted.login(client, "ops@example.com")
    page = client.get("/-/plugins")
    assert page.status_code == 200
    listed = {(f["plugin"], f["hook"]): f for f in
              client.get("/-/plugins.json").get_json()["hookFailures"]}
    assert listed[("audit_jsonl", "audit_event")]["error"] == message


def assert_signs_in(hosted):
    assert sign_in(hosted) == 302


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs Linux's /dev/full")
def test_a_file_that_cannot_be_written_is_reported_each_time(bundled):
    hosted = bundled(PLUGIN_SETTINGS={"audit_jsonl": {"path": "/dev/full"}})
    assert sign_in(hosted) == 302
    failure = get_plugins(hosted.app).hook_failures[("audit_jsonl", "audit_event")]
    assert (failure.error, failure.count) == ("OSError: [Errno 28] No space left on device", 1)
    assert sign_in(hosted) == 302
    assert failure.count == 2


def test_the_readme_documents_every_setting_and_message():
    readme = (REPO / "plugins" / "audit_jsonl" / "README.md").read_text()
    for setting in ("`path`", "`max_bytes`", "`backups`"):
        assert setting in readme
    for _, message in BAD_SETTINGS[0], BAD_SETTINGS[3], BAD_SETTINGS[6]:
        assert message in readme
    assert '"audit_jsonl": {\n        "path": "/var/log/minihost/audit.jsonl"' in readme

