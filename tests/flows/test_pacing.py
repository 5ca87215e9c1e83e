"""Outbound pacing (manifest ``rateLimit``, FLOWS.md §8) across processes, and the
pause a provider's 429 puts on an installation's flow tasks."""

from __future__ import annotations

import json
import logging
import threading
import time

import pytest
import requests
from werkzeug.wrappers import Response

from host import create_app
from host.db import Installation, get_database
from host.logs import JsonFormatter

from .test_durability import dispose_engines, setup_host, wait_all
from .workers import start_host, stop, write_config

__all__ = ["dispose_engines"]

LIMIT = {"rateLimit": {"requests": 10, "perSeconds": 1}}  # one request every 100 ms


@pytest.mark.parametrize("store", ["database", "redis"])
def test_requests_of_one_installation_are_spaced_across_processes(tmp_path, upstream,
                                                                   database_url, store,
                                                                   redis_url):
    arrivals: list[float] = []
    lock = threading.Lock()

    def issues(request):
        with lock:
            arrivals.append(time.monotonic())
        return Response(json.dumps({"items": []}), mimetype="application/json")

    upstream.route("/issues", issues)
    config, app, token = setup_host(tmp_path, upstream, database_url, LIMIT)
    if store == "redis":
        config = {**config, "REDIS_URL": redis_url}
    write_config(tmp_path, {**config, "API_RATE_LIMIT": 0})
    installation = app.test_client().get(
        "/api/v1/installations", headers={"Authorization": f"Bearer {token}"}
    ).get_json()["items"]
    linear = next(item["id"] for item in installation if item["name"] == "linear")
    hosts = [start_host(tmp_path) for _ in range(2)]
    answers: list[int] = []

    def call(port):
        for _ in range(4):
            answer = requests.post(
                f"http://127.0.0.1:{port}/api/v1/installations/{linear}/actions/listIssues/runs",
                json={"parameters": {"status": "open"}},
                headers={"Authorization": f"Bearer {token}"},
                timeout=30)
            answers.append(answer.status_code)

    try:
        threads = [threading.Thread(target=call, args=(port,)) for _, port in hosts
                   for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        for process, _ in hosts:
            stop(process)
    assert answers.count(201) == 16, answers
    assert len(arrivals) == 16
    arrivals.sort()
    # Never more than 10 in a second (less the jitter between a slot and the arrival)…
    windows = [arrivals[index + 10] - arrivals[index] for index in range(len(arrivals) - 10)]
    assert min(windows) >= 0.9, windows
    # …and without the limit, 16 calls from four threads take far less than 1.5 s.
    assert arrivals[-1] - arrivals[0] >= 1.35


def test_a_429_pauses_the_installations_flow_tasks_everywhere(tmp_path, upstream):
    """The provider answers 429 asking for two minutes: the installation is paused;
    another run's task of it waits (its attempt not spent) instead of calling."""
    calls: list[str] = []

    def issue(request):
        calls.append(json.loads(request.get_data())["title"])
        return Response('{"message": "slow down"}', status=429,
                        headers={"Retry-After": "120"}, mimetype="application/json")

    upstream.route("/issues", issue)
    lines: list[dict] = []
    handler = logging.Handler()
    handler.setFormatter(JsonFormatter())
    handler.emit = lambda record: lines.append(json.loads(handler.format(record)))  # type: ignore[method-assign]
    logging.getLogger("host.pacing").addHandler(handler)
    config, app, token = setup_host(tmp_path, upstream, f"sqlite:///{tmp_path / 'm.db'}")
    app = create_app({**config, "FLOW_WORKERS": 2}, instance_path=tmp_path)
    setup_host.made.append(app)  # type: ignore[attr-defined]
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    doc = {"key": "one", "title": "One", "tasks": {
        "issue": {"connection": "linear", "action": "createIssue",
                  "inputs": {"title": "{{input.n}}"}}}}
    assert client.post("/api/v1/flows", json=doc, headers=headers).status_code == 201
    first = client.post("/api/v1/flows/one/runs", json={"n": "1"}, headers=headers)
    run = wait_all(app, token, [first.get_json()["id"]])[first.get_json()["id"]]
    logging.getLogger("host.pacing").removeHandler(handler)
    assert run["status"] == "failed"
    paused_line = next(line for line in lines if line["message"].startswith("installation"))
    assert (paused_line["flowRun"], paused_line["task"], paused_line["attempt"]) == (
        run["id"], "issue", 1)  # the log says which run and task
    assert run["tasks"][0]["error"]["message"].startswith(
        "request /actions/0/requests/0: the provider answered 429 and asks to retry after")
    with get_database(app).sessions() as db:
        paused = db.get(Installation, run_installation(db)).paused_until
    assert paused is not None
    second = client.post("/api/v1/flows/one/runs", json={"n": "2"}, headers=headers).get_json()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        task = client.get(f"/api/v1/flow-runs/{second['id']}",
                          headers=headers).get_json()["tasks"][0]
        if task["error"]:
            break
        time.sleep(0.05)
    assert (task["status"], task["attempts"], task["runs"]) == ("ready", 0, [])
    assert task["error"]["message"] == (
        f"waiting until {paused.isoformat()}: the provider answered 429 for 'linear' and "
        "asked to wait")
    assert calls == ["1"]  # the second run's task never called the paused provider
    linear = run_installation_id(app)
    direct = client.post(f"/api/v1/installations/{linear}/actions/createIssue/runs",
                         json={"parameters": {"title": "3"}}, headers=headers).get_json()
    assert (direct["status"], direct["error"]["type"]) == ("failed", "rate-limited")
    assert direct["error"]["message"].startswith(
        f"the provider answered 429 for linear and asked to wait until "
        f"{paused.isoformat(timespec='seconds')}; nothing was sent, try again in ")
    assert calls == ["1"]  # nor did a person's run of an action


def run_installation_id(app):
    with get_database(app).sessions() as db:
        return run_installation(db)


def run_installation(db):
    from sqlalchemy import select

    return db.execute(select(Installation.id).where(Installation.name == "linear")).scalar_one()
