"""RUN_RETENTION_DAYS: finished runs past it are purged in small batches, writers
keep their pace meanwhile, usage counts stay, and one process purges at a time."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from host import create_app
from host.db import (
    Installation,
    Run,
    exclusive,
    first_id_at,
    get_database,
    new_id,
    record_action_use,
    utcnow,
)
from host.services import accounts, installations, retention
from host.services import instance as instance_service

from ..conftest import make_config

HERE = Path(__file__).resolve().parent
RUN = Run.__table__


@pytest.fixture
def host(tmp_path, database_url):
    """A host on each database, keeping runs 30 days, with one installation."""
    app = create_app(make_config(tmp_path, DATABASE_URL=database_url, RUN_RETENTION_DAYS=30),
                     instance_path=tmp_path)
    instance_service.init(app)
    with get_database(app).transaction() as db:
        user = accounts.create_user(db, "ada@example.com", None)
        workspace = accounts.personal_workspace(db, user)
        installation = Installation(workspace_id=workspace, miniapp="notes",
                                    miniapp_version="1.0.0", status="active",
                                    credential_keys=[], webhook_token=secrets.token_hex(8))
        db.add(installation)
        db.flush()
    app.config["TEST_WORKSPACE"], app.config["TEST_INSTALLATION"] = workspace, installation.id
    yield app
    for thread in threading.enumerate():
        if thread.name == "minihost-run-purge":
            thread.join(timeout=30)
    get_database(app).engine.dispose()


def run_row(app, run_id, started, *, status="succeeded", kind="action", name="createNote"):
    return {"id": run_id, "workspace_id": app.config["TEST_WORKSPACE"],
            "installation_id": app.config["TEST_INSTALLATION"], "kind": kind, "name": name,
            "status": status, "parameters": {}, "trace": {"requests": [{"status": 200}]},
            "sandbox": False, "started_at": started,
            "finished_at": None if status == "running" else started}


def add_runs(app, count, days_ago, counted=True, **kwargs):
    """``count`` runs started ``days_ago``, with ids of that moment, each counted in
    usage as execution counts it (unless not ``counted``). Returns their ids."""
    started = utcnow() - timedelta(days=days_ago)
    prefix = first_id_at("run", started)[:-16]
    ids = [f"{prefix}{secrets.token_hex(4).upper()}{n:08d}" for n in range(count)]
    rows = [run_row(app, run_id, started, **kwargs) for run_id in ids]
    with get_database(app).write() as connection:
        connection.execute(RUN.insert(), rows)
        for row in rows if counted else ():
            if row["kind"] == "action":
                record_action_use(connection, row["installation_id"], row["name"], started)
    return ids


def remaining(app):
    with get_database(app).sessions() as db:
        return set(db.scalars(select(Run.id)))


def usage(app):
    with get_database(app).sessions() as db:
        return installations.usage(db, db.get(Installation, app.config["TEST_INSTALLATION"]))


def test_ids_made_before_a_moment_sort_below_its_first_id():
    before = new_id("run")
    time.sleep(0.002)
    moment = utcnow()
    time.sleep(0.002)
    after = new_id("run")
    bound = first_id_at("run", moment)
    assert before < bound < after
    assert bound.endswith("0" * 16) and len(bound) == len(before)


def test_finished_runs_past_retention_are_purged_in_batches(host, monkeypatch):
    monkeypatch.setattr(retention, "FIRST_BATCH", 40)
    monkeypatch.setattr(retention, "LARGEST_BATCH", 40)
    monkeypatch.setattr(retention, "PAUSE_MS", 1.0)
    old = (add_runs(host, 200, 31) + add_runs(host, 50, 45, status="failed")
           + add_runs(host, 30, 400, status="interrupted")
           + add_runs(host, 15, 31, kind="source", name="notebooks")
           + add_runs(host, 5, 31, kind="auth", name="test"))
    still_running = add_runs(host, 3, 31, status="running")
    recent = add_runs(host, 10, 29) + add_runs(host, 2, 0, status="running")
    counted = usage(host)
    assert counted["actions"][0]["count"] == 295

    report = retention.purge_runs(host)

    assert report.runs == len(old) == 300
    assert report.batches == 8  # seven of 40, one of 20
    assert report.cutoff is not None
    assert abs((utcnow() - timedelta(days=30) - report.cutoff).total_seconds()) < 5
    assert remaining(host) == set(still_running + recent)
    assert usage(host) == counted  # lifetime counts: purging leaves them
    assert retention.purge_runs(host).runs == 0


def test_zero_keeps_every_run(host):
    host.config["RUN_RETENTION_DAYS"] = 0
    kept = add_runs(host, 5, 10_000)
    assert retention.purge_runs(host) == retention.Purged(0, 0, 0.0, None)
    assert retention.purge_soon(host) is False
    assert remaining(host) == set(kept)


def test_batches_aim_at_the_target_time():
    assert retention.next_batch_size(100, 5.0) == 200  # at most double
    assert retention.next_batch_size(1000, 40.0) == 500
    assert retention.next_batch_size(100, 10_000.0) == retention.SMALLEST_BATCH
    assert retention.next_batch_size(4000, 1.0) == retention.LARGEST_BATCH


def write_one(app):
    """Record a run as execution does (row and usage in one write); how long it took."""
    started = time.perf_counter()
    with get_database(app).write() as connection:
        now = utcnow()
        row = run_row(app, new_id("run"), now)
        connection.execute(RUN.insert(), row)
        record_action_use(connection, row["installation_id"], row["name"], now)
    return (time.perf_counter() - started) * 1000


def test_a_writer_of_this_process_waits_less_than_100_ms(host):
    add_runs(host, 20_000, 60, counted=False)
    waits: list[float] = []
    stop = threading.Event()

    def writer():
        while not stop.is_set():
            waits.append(write_one(host))
            time.sleep(0.001)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        time.sleep(0.2)
        before = len(waits)
        report = retention.purge_runs(host)
        during = len(waits) - before
    finally:
        stop.set()
        thread.join()
    assert report.runs == 20_000 and report.batches >= 5
    assert report.longest_ms < 100
    assert during >= 20, "the writer must have written while the purge ran"
    assert max(waits) < 100, sorted(waits)[-5:]


def test_a_writer_in_another_process_waits_less_than_100_ms(host, tmp_path):
    add_runs(host, 20_000, 60, counted=False)
    stop_file = tmp_path / "stop"
    settings = {"repo": str(HERE.parents[1]), "instance": str(tmp_path),
                "config": {k: v for k, v in host.config.items()
                           if k in ("DATABASE_URL", "SECRET_KEY", "VAULT_KEYS",
                                    "MINIAPPS_DIRS", "PLUGINS_DIRS")},
                "workspace": host.config["TEST_WORKSPACE"],
                "installation": host.config["TEST_INSTALLATION"], "stop": str(stop_file)}
    writer = subprocess.Popen([sys.executable, str(HERE / "purge_writer.py"),
                               json.dumps(settings)], stdout=subprocess.PIPE, text=True,
                              env={k: v for k, v in os.environ.items()
                                   if not k.startswith("MINIHOST_")})
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline().strip() == "writing"
        report = retention.purge_runs(host)
    finally:
        stop_file.touch()
        output, _ = writer.communicate(timeout=60)
    waits = json.loads(output)
    assert report.runs == 20_000 and report.batches >= 5
    assert len(waits) >= 20
    assert max(waits) < 100, sorted(waits)[-5:]


def test_processes_purge_in_the_background_one_at_a_time(host):
    old = set(add_runs(host, 30, 31))
    kept = remaining(host) - old

    def background_purge_done():
        for thread in threading.enumerate():
            if thread.name == "minihost-run-purge":
                thread.join(timeout=30)

    with exclusive(host, retention.LOCK_NAME) as held:  # another process purging
        assert held
        assert retention.purge_soon(host, every=600) is True
        background_purge_done()
    assert remaining(host) >= old  # it left the work to the holder

    host.extensions.pop("minihost.runs_purge_started_at")
    assert retention.purge_soon(host, every=600) is True
    assert retention.purge_soon(host, every=600) is False  # once per interval
    background_purge_done()
    assert remaining(host) == kept


def test_a_lock_not_waited_for_is_reported_as_held_elsewhere(host):
    with exclusive(host, "something", wait=False) as first:
        with exclusive(host, "something", wait=False) as second:
            assert (first, second) == (True, False)
    with exclusive(host, "something", wait=False) as again:
        assert again is True


def test_reading_a_history_starts_the_purge(host):
    from host.principal import Principal
    from host.services import runs
    from host.services.paging import Page

    old = set(add_runs(host, 5, 31))
    with get_database(host).sessions() as db:
        user = accounts.get_user(db, "ada@example.com")
        who = Principal(user, host.config["TEST_WORKSPACE"], "session:test")
        runs.list_runs(host, db, who, runs.RunFilter(), Page(10))
    for thread in threading.enumerate():
        if thread.name == "minihost-run-purge":
            thread.join(timeout=30)
    assert not remaining(host) & old
    with get_database(host).sessions() as db:
        assert db.scalar(select(func.count(Run.id))) == 0
