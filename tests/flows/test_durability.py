"""Durability with real processes: a host killed with ``kill -9`` in the middle of a run,
then another started — the run finishes and a task that had its effect is not sent
again; and two host processes on one database never run a task twice (SQLite and
PostgreSQL), counted at the upstream."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from werkzeug.wrappers import Response

from host import create_app
from host.db import get_database
from host.executor import broker
from host.services import accounts
from host.services import instance as instance_service

from ..conftest import REPO, make_config
from .manifests import mailer, tracker

WORKER = Path(__file__).with_name("host_process.py")


def host_process(config: dict, instance: Path) -> subprocess.Popen[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MINIHOST_")}
    settings = {"repo": str(REPO), "config": {**config, "FLOW_WORKERS": 4, "TESTING": False},
                "instance": str(instance)}
    process = subprocess.Popen([sys.executable, str(WORKER), json.dumps(settings)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=environment)
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line.strip() == "ready", process.stderr.read() if process.stderr else line
    return process


def stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.terminate()
    try:
        process.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()


@pytest.fixture(autouse=True)
def dispose_engines():
    """Every app a test here made lets go of its connections at the end."""
    made: list = []
    setup_host.made = made  # type: ignore[attr-defined]
    yield
    for app in made:
        get_database(app).engine.dispose()
        broker.close(app)


def setup_host(tmp_path: Path, upstream, database: str,
               tracker_extra: dict | None = None) -> tuple[dict, object, str]:
    apps = tmp_path / "apps"
    for name, doc in (("tracker", {**tracker(upstream.base), **(tracker_extra or {})}),
                      ("mailer", mailer(upstream.base))):
        (apps / name).mkdir(parents=True)
        (apps / name / "manifest.json").write_text(json.dumps(doc))
    upstream.route("/me", lambda r: Response("{}", mimetype="application/json"))
    config = make_config(tmp_path, MINIAPPS_DIRS=[str(apps)], EGRESS_ALLOW_PRIVATE=True,
                         DATABASE_URL=database, FLOW_WORKERS=0)
    app = create_app(config, instance_path=tmp_path)
    setup_host.made.append(app)  # type: ignore[attr-defined]
    instance_service.init(app)
    with get_database(app).transaction() as db:
        user = accounts.create_user(db, "alice@example.com", "correct horse")
        _, token = accounts.create_token(db, user, "t", "test")
    for miniapp, name in (("tracker", "linear"), ("mailer", "mail")):
        answer = app.test_client().post(
            "/api/v1/installations", json={"miniapp": miniapp, "name": name,
                                           "credentials": {"apiKey": "key"}},
            headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 201, answer.get_json()
    return config, app, token


def counted_upstream(upstream) -> None:
    """Issues numbered in the order they are created; mail answered alike."""
    counter = {"n": 0}
    lock = threading.Lock()

    def issue(request):
        with lock:
            counter["n"] += 1
            number = counter["n"]
        return Response(json.dumps({"id": f"ISS-{number}", "url": f"u{number}"}),
                        mimetype="application/json")

    upstream.route("/issues", issue)
    upstream.route("/mail", lambda r: Response('{"id": "m"}', mimetype="application/json"))


def start_then_kill(config, instance, client, headers, key, calls) -> str:
    """Start a run of ``key`` in a host process, and ``kill -9`` that process once the
    upstream has seen a call it holds open (``calls`` fills up)."""
    first = host_process(config, instance)
    try:
        run_id = client.post(f"/api/v1/flows/{key}/runs", json={},
                             headers=headers).get_json()["id"]
        deadline = time.monotonic() + 20
        while not calls and time.monotonic() < deadline:
            time.sleep(0.02)
        assert calls, "the task never reached the upstream"
        first.send_signal(signal.SIGKILL)
        first.wait()
    finally:
        stop(first)
    return run_id


def wait_all(app, token, run_ids, seconds=60):
    client = app.test_client()
    deadline = time.monotonic() + seconds
    runs = {}
    while time.monotonic() < deadline:
        runs = {run_id: client.get(f"/api/v1/flow-runs/{run_id}",
                                   headers={"Authorization": f"Bearer {token}"}).get_json()
                for run_id in run_ids}
        if all(run["status"] not in ("queued", "running") for run in runs.values()):
            return runs
        time.sleep(0.1)
    raise AssertionError({k: (v["status"], [(t["key"], t["status"]) for t in v["tasks"]])
                          for k, v in runs.items()})


def test_kill_9_mid_run_then_restart_finishes_without_repeating_an_effect(tmp_path, upstream):
    config, app, token = setup_host(tmp_path, upstream, f"sqlite:///{tmp_path / 'm.db'}")
    released = threading.Event()
    slow_calls = []

    def slow(request):
        slow_calls.append(time.monotonic())
        if len(slow_calls) == 1:
            released.wait(30)  # the first call hangs until its caller is dead
        return Response(json.dumps({"items": [{"id": "ISS-9", "title": "t"}]}),
                        mimetype="application/json")

    upstream.route("/issues", slow)
    upstream.route("/mail", lambda r: Response('{"id": "msg-1"}',
                                               mimetype="application/json"))
    doc = {"key": "two-step", "title": "Two steps", "tasks": {
        "mail": {"connection": "mail", "action": "send",
                 "inputs": {"to": "a@acme.test", "subject": "once only"}},
        "list": {"needs": {"mail": "completed"}, "connection": "linear",
                 "action": "listIssues", "inputs": {"status": "open"}}},
        "output": {"first": "{{tasks.list.output.items.0.id}}"}}
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    assert client.post("/api/v1/flows", json=doc, headers=headers).status_code == 201
    run_id = start_then_kill(config, tmp_path, client, headers, "two-step", slow_calls)
    released.set()
    second = host_process(config, tmp_path)
    try:
        run = wait_all(app, token, [run_id])[run_id]
    finally:
        stop(second)
    assert run["status"] == "succeeded" and run["output"] == {"first": "ISS-9"}
    mails = [r for r in upstream.received if r.path == "/mail"]
    lists = [r for r in upstream.received if r.path == "/issues"]
    assert len(mails) == 1  # the POST that had succeeded is never sent again
    assert len(lists) == 2  # the GET in flight when the host died is repeated once
    task = {t["key"]: t for t in run["tasks"]}["list"]
    assert len(task["runs"]) == 2


def test_two_host_processes_never_run_a_task_twice(tmp_path, upstream, database_url):
    config, app, token = setup_host(tmp_path, upstream, database_url)
    counted_upstream(upstream)
    doc = {"key": "pair", "title": "Pair", "tasks": {
        "issue": {"connection": "linear", "action": "createIssue",
                  "inputs": {"title": "{{input.n}}"}},
        "mail": {"connection": "mail", "action": "send",
                 "inputs": {"to": "a@acme.test", "subject": "{{input.n}}"}},
        "after": {"needs": {"issue": "completed", "mail": "completed"},
                  "map": {"issue": "{{tasks.issue.output.id}}"}}}}
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    assert client.post("/api/v1/flows", json=doc, headers=headers).status_code == 201
    processes = [host_process(config, tmp_path), host_process(config, tmp_path)]
    try:
        ids = [client.post("/api/v1/flows/pair/runs", json={"n": str(n)},
                           headers=headers).get_json()["id"] for n in range(30)]
        runs = wait_all(app, token, ids)
    finally:
        for process in processes:
            stop(process)
    assert {run["status"] for run in runs.values()} == {"succeeded"}
    titles = sorted(json.loads(r.body)["title"] for r in upstream.received
                    if r.path == "/issues")
    subjects = sorted(json.loads(r.body)["subject"] for r in upstream.received
                      if r.path == "/mail")
    assert titles == subjects == sorted(str(n) for n in range(30))  # each exactly once


def test_kill_9_during_a_side_effect_leaves_it_unknown_until_resolved(tmp_path, upstream):
    config, app, token = setup_host(tmp_path, upstream, f"sqlite:///{tmp_path / 'm.db'}")
    released = threading.Event()
    calls = []

    def mail(request):
        calls.append(time.monotonic())
        released.wait(30)
        return Response('{"id": "msg-1"}', mimetype="application/json")

    upstream.route("/mail", mail)
    doc = {"key": "notify", "title": "Notify", "tasks": {
        "mail": {"connection": "mail", "action": "send",
                 "inputs": {"to": "a@acme.test", "subject": "exactly once"}},
        "done": {"needs": {"mail": "completed"},
                 "map": {"id": "{{tasks.mail.output.messageId}}"}}}}
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    client.post("/api/v1/flows", json=doc, headers=headers)
    run_id = start_then_kill(config, tmp_path, client, headers, "notify", calls)
    released.set()
    second = host_process(config, tmp_path)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            run = client.get(f"/api/v1/flow-runs/{run_id}", headers=headers).get_json()
            if {t["key"]: t["status"] for t in run["tasks"]}["mail"] == "unknown":
                break
            time.sleep(0.1)
        assert run["status"] == "running"
        assert {t["key"]: t["status"] for t in run["tasks"]} == {
            "mail": "unknown", "done": "pending"}
        resolved = client.post(f"/api/v1/flow-runs/{run_id}/tasks/mail/resolve",
                               json={"as": "succeeded", "output": {"messageId": "msg-1"}},
                               headers=headers)
        assert resolved.status_code == 200
        run = wait_all(app, token, [run_id])[run_id]
    finally:
        stop(second)
    assert run["status"] == "succeeded" and len(calls) == 1
