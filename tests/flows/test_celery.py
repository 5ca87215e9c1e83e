"""Flow task attempts on Celery workers (FLOWS.md §8), with the machine's real Redis
and RabbitMQ and real ``minihost worker`` processes."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta

import pytest
import redis
import requests
from sqlalchemy import select
from werkzeug.wrappers import Response

from host import create_app, executor
from host.db import FlowRun, ScheduleTick, TaskRun, get_database
from host.executor import broker
from host.services import instance as instance_service

from ..conftest import empty_schema, make_config
from ..plugins.test_catalog_http import operator_client
from .test_durability import counted_upstream, dispose_engines, setup_host, wait_all

__all__ = ["dispose_engines"]  # the fixture the processes' tests use
from .workers import (
    broker_config,
    environment,
    kill_9,
    start_fleet,
    start_worker,
    stop,
    write_config,
)

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
    empty_schema(postgres_url)


def celery_host(tmp_path, upstream, database, kind):
    """A host on ``database`` with a broker of ``kind``: its configuration written for
    the workers, and an app of the test's that starts runs (and sends their tasks)."""
    config, app, token = setup_host(tmp_path, upstream, database)
    config = {**config, **broker_config(kind), "FLOW_WORKERS": 4, "API_RATE_LIMIT": 0}
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


def settled(app, token, run_ids, seconds=120):
    """Wait until every run has ended or waits only on a person (an ``unknown`` task
    and nothing ready or running); the runs as the API gives them."""
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    deadline = time.monotonic() + seconds
    pending = set(run_ids)
    runs: dict[str, dict] = {}
    while pending and time.monotonic() < deadline:
        for run_id in sorted(pending):
            run = client.get(f"/api/v1/flow-runs/{run_id}", headers=headers).get_json()
            runs[run_id] = run
            states = {task["status"] for task in run["tasks"]}
            if run["status"] not in ("queued", "running") or (
                    "unknown" in states and not states & {"ready", "running"}):
                pending.discard(run_id)
        if pending:
            time.sleep(0.2)
    assert not pending, {run_id: [(t["key"], t["status"]) for t in runs[run_id]["tasks"]]
                         for run_id in sorted(pending)[:5]}
    return runs


def chaos(tmp_path, upstream, postgres, fault, runs=200):
    """Two host processes and two workers (concurrency 2) on PostgreSQL and Redis run
    ``runs`` three-task runs while ``fault(workers)`` strikes every second. Returns
    what the upstream saw, by run: succeeded, unknown, lost, doubled."""
    # What the provider received, and the effects it had: like a real provider, it
    # creates one issue per Idempotency-Key, whatever the number of calls carrying it.
    calls: dict[str, list[str]] = {"/issues": [], "/mail": []}
    effects: dict[str, dict[str, str]] = {"/issues": {}, "/mail": {}}
    lock = threading.Lock()

    def effect(field):
        def answer(request):
            time.sleep(0.02)  # a provider takes a moment: faults land mid-request too
            value = json.loads(request.get_data())[field]
            with lock:
                calls[request.path].append(value)
                key = request.headers.get("Idempotency-Key") or f"call-{len(calls[request.path])}"
                effects[request.path].setdefault(key, value)
            return Response(json.dumps({"id": "ISS-1", "url": "u"}),
                            mimetype="application/json")
        return answer

    upstream.route("/issues", effect("title"))
    upstream.route("/mail", effect("subject"))
    config, app, token = celery_host(tmp_path, upstream, postgres, "redis")
    headers = {"Authorization": f"Bearer {token}"}
    assert app.test_client().post("/api/v1/flows", json=THREE_TASKS,
                                  headers=headers).status_code == 201
    hosts, workers = start_fleet(tmp_path, hosts=2, workers=2)
    faults = {"n": 0}
    done = threading.Event()

    def strike():
        while not done.wait(1.0):
            fault(tmp_path, config, workers)
            faults["n"] += 1

    thread = threading.Thread(target=strike, daemon=True)
    try:
        thread.start()
        session = requests.Session()
        ids = []
        for n in range(runs):
            port = hosts[n % 2][1]
            answer = session.post(f"http://127.0.0.1:{port}/api/v1/flows/three/runs",
                                  json={"n": str(n)}, headers=headers, timeout=30)
            assert answer.status_code == 202, answer.text
            ids.append(answer.json()["id"])
        began = time.monotonic()
        found = settled(app, token, ids)
        seconds = time.monotonic() - began
        done.set()
        thread.join(timeout=30)
    finally:
        done.set()
        for process in [*workers, *(host for host, _ in hosts)]:
            stop(process)
    by_input = {run["input"]["n"]: run for run in found.values()}
    succeeded = [n for n, run in by_input.items() if run["status"] == "succeeded"]
    unknown = [n for n, run in by_input.items()
               if any(task["status"] == "unknown" for task in run["tasks"])]
    made = {path: list(found.values()) for path, found in effects.items()}
    doubled = [n for path in made for n in set(made[path]) if made[path].count(n) > 1]
    lost = sorted(set(by_input) - set(succeeded) - set(unknown), key=int)
    repeated = len(calls["/issues"]) - len(made["/issues"])
    print(f"\nchaos ({fault.__name__}): {runs} runs, {faults['n']} faults, "
          f"{len(succeeded)} succeeded, {len(unknown)} unknown, {len(lost)} lost, "
          f"{len(doubled)} doubled; {repeated} issue call(s) repeated under their "
          f"Idempotency-Key; settled {seconds:.1f} s after the last start")
    assert faults["n"] >= 2
    assert (lost, doubled) == ([], [])
    for n in succeeded:  # each side effect of a run that succeeded happened exactly once
        assert made["/issues"].count(n) == 1
        assert calls["/mail"].count(n) == 1  # no key: never sent twice
    return {"succeeded": len(succeeded), "unknown": len(unknown)}


def kill_9_a_worker(instance, config, workers):
    """``kill -9`` one worker (in turn) and start another in its place."""
    index = getattr(kill_9_a_worker, "next", 0)
    kill_9(workers[index])
    workers[index] = start_worker(instance, concurrency=2)
    kill_9_a_worker.next = 1 - index  # type: ignore[attr-defined]


def drop_broker_connections(instance, config, workers):
    """Drop every broker connection of this test's workers, as a broker restart does
    (Redis itself is shared by the machine: it is not restarted)."""
    client = redis.Redis.from_url(config["CELERY_BROKER_URL"])
    try:
        name = f"minihost-worker:{config['CELERY_QUEUE']}"
        for entry in client.client_list():
            if entry.get("name") == name:
                client.client_kill_filter(_id=entry["id"])
    finally:
        client.close()


def test_kill_9_workers_during_200_runs_loses_and_doubles_nothing(tmp_path, upstream,
                                                                   postgres):
    chaos(tmp_path, upstream, postgres, kill_9_a_worker)


def test_dropped_broker_connections_lose_and_double_nothing(tmp_path, upstream, postgres):
    outcome = chaos(tmp_path, upstream, postgres, drop_broker_connections)
    # An attempt Celery cancels on the lost connection finishes its request first: no
    # side effect is left unknown by a broker restart.
    assert outcome == {"succeeded": 200, "unknown": 0}


def test_health_the_workers_page_and_command_show_workers_and_the_queue(tmp_path, upstream,
                                                                        postgres):
    counted_upstream(upstream)
    config, app, token = celery_host(tmp_path, upstream, postgres, "redis")
    operator = operator_client(app)
    client = app.test_client()
    assert client.get("/healthz").get_json() == {
        "status": "degraded", "database": "ok", "broker": "ok", "workers": 0, "queued": 0}
    headers = {"Authorization": f"Bearer {token}"}
    assert client.post("/api/v1/flows", json=THREE_TASKS, headers=headers).status_code == 201
    run_id = client.post("/api/v1/flows/three/runs", json={"n": "input-7781"},
                         headers=headers).get_json()["id"]
    assert client.get("/healthz").get_json()["queued"] == 2  # two tasks wait for a worker
    # A message names the task run, the attempt it is ready after and the run: ids only.
    waiting = redis.Redis.from_url(config["CELERY_BROKER_URL"]).lrange(
        config["CELERY_QUEUE"], 0, -1)
    assert len(waiting) == 2 and not any(b"input-7781" in raw for raw in waiting)
    for raw in waiting:
        message = json.loads(raw)
        args, kwargs, _ = json.loads(base64.b64decode(message["body"]))
        assert (args[0][:4], args[1], args[2], kwargs) == ("tsk_", 0, run_id, {})
    worker = start_worker(tmp_path, concurrency=3, name="ops-worker@test")
    try:
        assert wait_all(app, token, [run_id])[run_id]["status"] == "succeeded"
        deadline = time.monotonic() + 20
        while client.get("/healthz").get_json()["workers"] == 0:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert client.get("/healthz").get_json() == {
            "status": "ok", "database": "ok", "broker": "ok", "workers": 1, "queued": 0}
        found = operator.get("/-/workers.json").get_json()
        assert (found["executor"], found["queue"], found["queued"]) == (
            "celery", config["CELERY_QUEUE"], 0)
        [entry] = found["workers"]
        assert {key: entry[key] for key in ("name", "pid", "concurrency", "alive", "running")} \
            == {"name": "ops-worker@test", "pid": worker.pid, "concurrency": 3, "alive": True,
                "running": []}
        page = operator.get("/-/workers").get_data(as_text=True)
        assert "<strong>ops-worker@test</strong>" in page and "answering" in page
        assert client.get("/-/workers.json").status_code != 200  # operators only
        listed = subprocess.run(
            [sys.executable, "-m", "host", "--instance", str(tmp_path), "workers", "list"],
            env=environment(), capture_output=True, text=True, timeout=60)
        assert listed.returncode == 0, listed.stderr
        assert listed.stdout.splitlines()[0] == f"queue {config['CELERY_QUEUE']}: 0 waiting"
        assert listed.stdout.splitlines()[1].startswith(
            "ops-worker@test  answering  0/3 running  last heard ")
    finally:
        stop(worker)


def test_health_says_so_when_the_broker_does_not_answer(tmp_path):
    app = create_app(make_config(tmp_path, CELERY_BROKER_URL="redis://127.0.0.1:9/0"),
                     instance_path=tmp_path)
    instance_service.init(app)
    try:
        answer = app.test_client().get("/healthz")
        assert answer.status_code == 200  # hosts still take runs: none leaves rotation
        assert answer.get_json() == {"status": "degraded", "database": "ok",
                                     "broker": "unreachable", "workers": 0, "queued": None}
    finally:
        get_database(app).engine.dispose()
        broker.close(app)


def test_two_hosts_and_two_workers_fire_20_ticks_as_20_runs(tmp_path, upstream, postgres):
    """Every host and worker runs the schedule timer: four schedulers, one run a tick,
    each run's task done by a worker."""
    counted_upstream(upstream)
    config, app, token = celery_host(tmp_path, upstream, postgres, "redis")
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    doc = {"key": "ticker", "title": "Ticker",
           "triggers": [{"type": "schedule", "cron": "* * * * * *", "overlap": "allow"}],
           "tasks": {"mail": {"connection": "mail", "action": "send",
                              "inputs": {"to": "a@acme.test", "subject": "{{run.id}}"}}}}
    hosts, workers = start_fleet(tmp_path, hosts=2, workers=2)
    try:
        assert client.post("/api/v1/flows", json=doc, headers=headers).status_code == 201
        deadline = time.monotonic() + 60
        while count_fired(app) < 22 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert client.post("/api/v1/flows/ticker/disable", headers=headers).status_code == 200
        time.sleep(2.5)  # a pass that read the schedule before the switch ends
        with get_database(app).sessions() as db:
            ids = list(db.execute(select(FlowRun.id)).scalars())
        runs = wait_all(app, token, ids)
    finally:
        for process in [*workers, *(host for host, _ in hosts)]:
            stop(process)
    times = sorted(datetime.fromisoformat(run["scheduledFor"]) for run in runs.values())
    # Twenty whole ticks in the middle (the first and last may straddle the switches):
    # one run each, every second, none twice, none skipped.
    assert len(times) >= 20
    assert times == [times[0] + timedelta(seconds=n) for n in range(len(times))]
    assert {run["status"] for run in runs.values()} == {"succeeded"}
    subjects = [json.loads(r.body)["subject"] for r in upstream.received if r.path == "/mail"]
    assert sorted(subjects) == sorted(runs)  # each run's task sent its mail once


def count_fired(app) -> int:
    with get_database(app).sessions() as db:
        return len(db.execute(select(ScheduleTick.id).where(
            ScheduleTick.status == "fired")).all())


def test_a_run_started_while_the_broker_is_down_is_kept_and_sent_later(tmp_path, upstream):
    """The run commits; its ready tasks stay unmarked for the executor's next round to
    send once the broker answers (nothing is lost, the start does not hang)."""
    counted_upstream(upstream)
    config, app, token = setup_host(tmp_path, upstream, f"sqlite:///{tmp_path / 'm.db'}")
    app = create_app({**config, "CELERY_BROKER_URL": "redis://127.0.0.1:9/0",
                      "CELERY_QUEUE": "minihost-test-down"}, instance_path=tmp_path)
    setup_host.made.append(app)  # type: ignore[attr-defined]
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    assert client.post("/api/v1/flows", json=THREE_TASKS, headers=headers).status_code == 201
    began = time.monotonic()
    started = client.post("/api/v1/flows/three/runs", json={"n": "1"}, headers=headers)
    assert started.status_code == 202 and time.monotonic() - began < 10
    with get_database(app).sessions() as db:
        rows = db.execute(select(TaskRun.key, TaskRun.status, TaskRun.holder)
                          .order_by(TaskRun.key)).all()
    assert [tuple(row) for row in rows] == [
        ("after", "pending", None), ("issue", "ready", None), ("mail", "ready", None)]
    # The broker answers again: the next round of any process's loop sends them.
    back = create_app({**config, **broker_config("redis")}, instance_path=tmp_path)
    setup_host.made.append(back)  # type: ignore[attr-defined]
    assert executor.send_ready(back, executor.sender(back)) == 2
    assert executor.send_ready(back, executor.sender(back)) == 0  # sent once, not again
    queue = redis.Redis.from_url(back.config["CELERY_BROKER_URL"])
    assert queue.llen(back.config["CELERY_QUEUE"]) == 2
    queue.delete(back.config["CELERY_QUEUE"])
