"""A Celery worker killed in the middle of a token refresh (FLOWS.md §8, MANIFEST §3):
the rotated refresh token that died with it is never silently lost — the next
process tries once more, the provider refuses the old token, and the installation
says it needs reconnecting."""

import time

import pytest

from host.db import Installation, get_database
from host.executor import broker
from host.services import accounts
from host.vault import read_credentials

from ..flows.workers import broker_config, kill_9, start_worker, stop, write_config


def test_a_worker_killed_during_a_token_refresh_loses_no_rotated_token(tokened):
    if not tokened.database_url.startswith("postgresql"):
        pytest.skip("workers on several machines share PostgreSQL")
    old = tokened.seed(expires_in=-5)
    with get_database(tokened.app).transaction() as db:
        db.get(Installation, tokened.installation_id).name = "tok"
        _, token = accounts.create_token(db, db.merge(tokened.principal.user), "t", "test")
    config = {key: tokened.app.config[key] for key in (
        "DATABASE_URL", "VAULT_KEYS", "MINIAPPS_DIRS", "SECRET_KEY", "EGRESS_ALLOW_PRIVATE",
        "ACTION_TIMEOUT")}
    config.update(broker_config("redis"), PLUGINS_DIRS=[], RUN_RETENTION_DAYS=0,
                  API_RATE_LIMIT=0)
    write_config(tokened.instance, config)
    from host import create_app

    app = create_app({**config, "TESTING": True}, instance_path=tokened.instance)
    headers = {"Authorization": f"Bearer {token}"}
    client = app.test_client()
    flow = {"key": "fetcher", "title": "Fetcher",
            "tasks": {"fetch": {"connection": "tok", "action": "fetch"}}}
    assert client.post("/api/v1/flows", json=flow, headers=headers).status_code == 201
    # The first worker's pool process dies right after the provider rotated the token
    # (its timers are off, so only the task refreshes).
    doomed = start_worker(tokened.instance, concurrency=1, env={
        "MINIHOST_FAULT": "refresh.after_token_response:exit", "MINIHOST_FLOW_WORKERS": "0"})
    second = None
    try:
        run_id = client.post("/api/v1/flows/fetcher/runs", json={},
                             headers=headers).get_json()["id"]
        deadline = time.monotonic() + 30
        while tokened.server.refresh_calls < 1 or "exited with" not in doomed.log.read_text():
            assert time.monotonic() < deadline, doomed.log.read_text()
            time.sleep(0.05)
        kill_9(doomed)
        row = tokened.row()
        assert row.refresh_started_at is not None and row.status == "active"
        second = start_worker(tokened.instance, concurrency=1)
        deadline = time.monotonic() + 60
        while True:
            run = client.get(f"/api/v1/flow-runs/{run_id}", headers=headers).get_json()
            if run["status"] != "running":
                break
            assert time.monotonic() < deadline, run
            time.sleep(0.1)
    finally:
        stop(doomed)
        if second is not None:
            stop(second)
        get_database(app).engine.dispose()
        broker.close(app)
    row = tokened.row()
    assert row.status == "reconnect_required"
    assert "did not finish, and the provider now refuses the refresh token" in row.error
    assert tokened.server.refresh_calls == 2  # once by the dead process, once to find out
    assert read_credentials(tokened.app, row, actor="t", reason="t") == old  # nothing replaced
    task = run["tasks"][0]
    assert (run["status"], task["status"]) == ("failed", "failed")
    assert task["error"]["type"] == "reconnect-required"
    assert "did not finish, and the provider now refuses the refresh token" in \
        task["error"]["message"]
