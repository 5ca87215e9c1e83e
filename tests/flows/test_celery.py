"""Flow task attempts on Celery workers (FLOWS.md §8), with the machine's real Redis
and RabbitMQ and real ``minihost worker`` processes."""

from __future__ import annotations

import json
import threading

import pytest
from sqlalchemy import create_engine, text
from werkzeug.wrappers import Response

from host import create_app

from .test_durability import dispose_engines, setup_host, wait_all

__all__ = ["dispose_engines"]  # the fixture the processes' tests use
from .workers import broker_config, start_worker, stop, write_config

THREE_TASKS = {"key": "three", "title": "Three tasks", "tasks": {
    "issue": {"connection": "linear", "action": "createIssue",
              "inputs": {"title": "{{input.n}}"}},
    "mail": {"connection": "mail", "action": "send",
             "inputs": {"to": "a@acme.test", "subject": "{{input.n}}"}},
    "after": {"needs": {"issue": "completed", "mail": "completed"},
              "map": {"issue": "{{tasks.issue.output.id}}"}}},
    "output": {"issue": "{{tasks.after.output.issue}}"}}


@pytest.fixture
def postgres(postgres_url):
    """Workers across processes need a server database; each test leaves it empty."""
    yield postgres_url
    engine = create_engine(postgres_url)
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()


def counted_upstream(upstream):
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


def celery_host(tmp_path, upstream, database, kind):
    """A host on ``database`` with a broker of ``kind``: its configuration written for
    the workers, and an app of the test's that starts runs (and sends their tasks)."""
    config, app, token = setup_host(tmp_path, upstream, database)
    config = {**config, **broker_config(kind), "FLOW_WORKERS": 4}
    write_config(tmp_path, config)
    app = create_app(config, instance_path=tmp_path)
    setup_host.made.append(app)  # type: ignore[attr-defined]
    return config, app, token


@pytest.mark.parametrize("kind", ["redis", "rabbitmq"])
def test_runs_go_to_a_worker_and_each_task_runs_once(tmp_path, upstream, postgres, kind):
    counted_upstream(upstream)
    config, app, token = celery_host(tmp_path, upstream, postgres, kind)
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    assert client.post("/api/v1/flows", json=THREE_TASKS, headers=headers).status_code == 201
    worker = start_worker(tmp_path, concurrency=2)
    try:
        ids = [client.post("/api/v1/flows/three/runs", json={"n": str(n)},
                           headers=headers).get_json()["id"] for n in range(20)]
        runs = wait_all(app, token, ids)
    finally:
        stop(worker)
    assert {run["status"] for run in runs.values()} == {"succeeded"}
    titles = sorted(json.loads(r.body)["title"] for r in upstream.received
                    if r.path == "/issues")
    subjects = sorted(json.loads(r.body)["subject"] for r in upstream.received
                      if r.path == "/mail")
    assert titles == subjects == sorted(str(n) for n in range(20))
    # The worker ran every attempt: two messages a run (the map task runs with its run's
    # decision), none twice.
    assert worker.log.read_text().count("succeeded in") == 40
