"""Single-flight refresh across threads and processes, and a refresher killed mid-way."""

import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from host.db import Installation, get_database
from host.services.runs import run_action
from host.vault import read_credentials

WORKER = Path(__file__).with_name("refresh_worker.py")
REPO = Path(__file__).resolve().parents[2]


def run(tokened):
    with get_database(tokened.app).sessions() as db:
        installation = db.get(Installation, tokened.installation_id)
        return run_action(tokened.app, db, tokened.principal, installation, "fetch", {})


def test_twenty_threads_share_one_refresh(tokened):
    tokened.seed(expires_in=-5)
    tokened.server.latency = 0.3
    barrier = threading.Barrier(20)
    results, lock = [], threading.Lock()

    def worker():
        barrier.wait()
        started = time.monotonic()
        outcome = run(tokened)
        with lock:
            results.append((outcome.status, time.monotonic() - started, outcome.output))

    threads = [threading.Thread(target=worker) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert tokened.server.refresh_calls == 1
    assert [status for status, _, _ in results] == ["succeeded"] * 20
    stored = read_credentials(tokened.app, tokened.row(), actor="t", reason="t")
    assert {output["token"] for _, _, output in results} == {stored["accessToken"].upper()}
    assert stored["refreshToken"] in tokened.server.live_refresh
    waits = sorted(seconds for _, seconds, _ in results)
    print(f"\n20 threads: 1 refresh; run time median {statistics.median(waits):.3f} s, "
          f"max {waits[-1]:.3f} s (token server latency 0.3 s)")


def worker_settings(tokened, threads, start_at, timeout=20):
    config = {key: tokened.app.config[key] for key in (
        "DATABASE_URL", "VAULT_KEYS", "MINIAPPS_DIRS", "SECRET_KEY")}
    config.update({"PLUGINS_DIRS": [], "EGRESS_ALLOW_PRIVATE": True,
                   "ACTION_TIMEOUT": timeout})
    return json.dumps({"repo": str(REPO), "config": config, "instance": str(tokened.instance),
                       "installation": tokened.installation_id, "user": tokened.principal.user.id,
                       "workspace": tokened.principal.workspace_id, "threads": threads,
                       "start_at": start_at})


def spawn(tokened, threads, start_at, timeout=20, **env):
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MINIHOST_")}
    environment.update(env)
    return subprocess.Popen([sys.executable, str(WORKER), worker_settings(tokened, threads,
                                                                          start_at, timeout)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=environment)


def test_three_processes_share_one_refresh(tokened):
    tokened.seed(expires_in=-5)
    tokened.server.latency = 0.3
    start_at = time.time() + 3  # after every process has imported and started
    processes = [spawn(tokened, 3, start_at) for _ in range(3)]
    outcomes = []
    for process in processes:
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
        outcomes.extend(json.loads(out.strip().splitlines()[-1]))
    assert tokened.server.refresh_calls == 1
    assert [o["status"] for o in outcomes] == ["succeeded"] * 9, outcomes
    stored = read_credentials(tokened.app, tokened.row(), actor="t", reason="t")
    assert {o["token"] for o in outcomes} == {stored["accessToken"].upper()}
    waits = sorted(o["seconds"] for o in outcomes)
    print(f"\n3 processes x 3 threads: 1 refresh; run time median "
          f"{statistics.median(waits):.3f} s, max {waits[-1]:.3f} s")


def test_a_refresher_killed_after_the_token_answer_leaves_reconnect_required(tokened):
    old = tokened.seed(expires_in=-5)
    # A short deadline in the doomed process keeps its lease (deadline + 2 s) short.
    process = spawn(tokened, 1, time.time(), 2,
                    MINIHOST_FAULT="refresh.after_token_response:exit")
    process.communicate(timeout=60)
    assert process.returncode == 137
    assert tokened.server.refresh_calls == 1  # the rotated tokens died with the process
    row = tokened.row()
    assert row.refresh_started_at is not None and row.status == "active"
    outcome = run(tokened)  # waits for the dead lease, then tries once more
    assert outcome.status == "failed"
    row = tokened.row()
    assert row.status == "reconnect_required"
    assert "did not finish, and the provider now refuses the refresh token" in row.error
    assert tokened.server.refresh_calls == 2
    stored = read_credentials(tokened.app, row, actor="t", reason="t")
    assert stored == old  # nothing silently replaced, nothing lost without saying so


def test_a_killed_refresh_recovers_when_refresh_tokens_do_not_rotate(tokened):
    tokened.server.rotate = False
    tokened.seed(expires_in=-5)
    # A short deadline in the doomed process keeps its lease (deadline + 2 s) short.
    process = spawn(tokened, 1, time.time(), 2,
                    MINIHOST_FAULT="refresh.after_token_response:exit")
    process.communicate(timeout=60)
    assert process.returncode == 137
    outcome = run(tokened)
    assert outcome.status == "succeeded", outcome.error
    row = tokened.row()
    assert (row.status, row.refresh_started_at) == ("active", None)


def test_a_killed_refresher_does_not_block_its_installation(tokened):
    """``kill -9`` the process holding the refresh lease (its lease runs to its 60 s
    deadline): the next run sees the holder is gone, frees the lease, refreshes
    itself and succeeds within seconds instead of waiting and failing."""
    tokened.server.rotate = False
    tokened.seed(expires_in=-5)
    tokened.server.latency = 30  # the refresher is mid-request when it dies
    process = spawn(tokened, 1, time.time(), 60)
    deadline = time.monotonic() + 30
    while not tokened.server.token_requests:
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    row = tokened.row()
    assert row.lease_owner and row.lease_owner.split("|")[1] == str(process.pid)
    process.kill()
    process.communicate(timeout=10)
    tokened.server.latency = 0
    started = time.monotonic()
    outcome = run(tokened)
    elapsed = time.monotonic() - started
    assert outcome.status == "succeeded", outcome.error
    assert elapsed < 3
    row = tokened.row()
    assert (row.status, row.lease_owner, row.refresh_started_at) == ("active", None, None)
