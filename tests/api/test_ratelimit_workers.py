"""API rate limits under gunicorn with two worker processes, as deployed.

With ``REDIS_URL`` both workers share one count per token, so exactly the limit
gets through; in memory (the default) each worker counts on its own. Which
worker served each call is read from gunicorn's access log (``%(p)s``, the
worker's pid), so the tests know both workers took calls.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import redis
import requests

from ..conftest import FIXTURES
from ..test_serve import MINIHOST, free_port

GUNICORN = Path(sys.executable).parent / "gunicorn"
LIMIT = 4
EXTRA = 6
RUNS = "/api/v1/runs"


@dataclass
class Served:
    base: str
    token: str
    access_log: Path

    def by_worker(self, path: str) -> dict[str, list[int]]:
        """Statuses of the calls to ``path``, per worker pid, in the order served."""
        served: dict[str, list[int]] = defaultdict(list)
        for line in self.access_log.read_text().splitlines():
            pid, status, logged_path = line.split()
            if logged_path == path:
                served[pid].append(int(status))
        return dict(served)


@contextmanager
def gunicorn(tmp_path: Path, key_prefix: str, **settings: str) -> Iterator[Served]:
    """A fresh instance with one user and token, served by two gunicorn workers on
    127.0.0.1; stopped on the way out."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINIHOST_")}
    env.update({"MINIHOST_INSTANCE_PATH": str(tmp_path / "inst"),
                "MINIHOST_MINIAPPS_DIRS": str(FIXTURES / "miniapps"),
                "MINIHOST_API_RATE_LIMIT": str(LIMIT)})
    env.update({f"MINIHOST_{key}": value for key, value in settings.items()})
    subprocess.run([str(MINIHOST), "init"], env=env, check=True, capture_output=True)
    subprocess.run([str(MINIHOST), "users", "create", "ada@example.com", "--password",
                    "ada-password"], env=env, check=True, capture_output=True)
    token = subprocess.run([str(MINIHOST), "tokens", "create", "ada@example.com"], env=env,
                           check=True, capture_output=True, text=True).stdout.strip()
    port = free_port()
    access_log = tmp_path / "access.log"
    process = subprocess.Popen(
        # A long worker timeout: a busy test machine must not swap a worker (and
        # its memory counts) mid-test.
        [str(GUNICORN), "--workers", "2", "--timeout", "300", "--bind", f"127.0.0.1:{port}",
         "--access-logfile", str(access_log), "--access-logformat", "%(p)s %(s)s %(U)s",
         f"host:create_app({{'RATELIMIT_KEY_PREFIX': {key_prefix!r}}})"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    served = Served(f"http://127.0.0.1:{port}", token, access_log)
    try:
        _wait_for_both_workers(served, process)
        yield served
    finally:
        process.terminate()
        output = process.communicate(timeout=20)[0]
        if process.returncode not in (0, -15):
            print(output)


def _wait_for_both_workers(served: Served, process: subprocess.Popen) -> None:
    """Until both workers have answered ``/healthz`` (one booted worker is not enough:
    it could serve every call alone)."""
    deadline = time.monotonic() + 60
    while True:
        assert process.poll() is None, process.stdout.read() if process.stdout else ""
        assert time.monotonic() < deadline, "gunicorn's two workers did not both answer"
        try:
            with ThreadPoolExecutor(4) as pool:
                list(pool.map(lambda _: requests.get(f"{served.base}/healthz", timeout=5),
                              range(4)))
        except requests.ConnectionError:
            time.sleep(0.2)
            continue
        if served.access_log.exists() and len(served.by_worker("/healthz")) == 2:
            return
        time.sleep(0.1)


def call_at_once(served: Served, count: int) -> list[requests.Response]:
    """``count`` calls with the one token, all in flight together so that both
    workers take some."""
    headers = {"Authorization": f"Bearer {served.token}"}
    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(lambda _: requests.get(served.base + RUNS, headers=headers,
                                                    timeout=30), range(count)))


def assert_refused(response: requests.Response) -> None:
    wait = int(response.headers["Retry-After"])
    assert 1 <= wait <= 60, wait  # the rest of the minute since the first call
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json() == {
        "type": "https://minihost.dev/problems/rate-limited", "title": "Too many requests",
        "status": 429,
        "detail": f"this API token made more than {LIMIT} calls in a minute; wait {wait} s "
                  f"(see Retry-After) and slow down to at most {LIMIT} a minute"}


def test_two_workers_sharing_redis_let_exactly_the_limit_through(
        tmp_path, redis_url, redis_prefix):
    with gunicorn(tmp_path, redis_prefix, REDIS_URL=redis_url) as served:
        responses = call_at_once(served, LIMIT + EXTRA)
        by_worker = served.by_worker(RUNS)
    assert len(by_worker) == 2, f"one worker served every call: {by_worker}"
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200] * LIMIT + [429] * EXTRA, by_worker
    for response in responses:
        if response.status_code == 429:
            assert_refused(response)
    client = redis.Redis.from_url(redis_url)
    try:
        keys = [key.decode() for key in client.scan_iter(match=f"*/{redis_prefix}/*")]
    finally:
        client.close()
    assert len(keys) == 1 and keys[0].endswith(f"/api-token/{LIMIT}/60/second")
    assert served.token not in keys[0]  # counted by token id, never by its secret


def test_in_memory_each_worker_counts_on_its_own(tmp_path):
    with gunicorn(tmp_path, "minihost") as served:
        responses = call_at_once(served, LIMIT + EXTRA)
        by_worker = served.by_worker(RUNS)
    assert len(by_worker) == 2, f"one worker served every call: {by_worker}"
    for statuses in by_worker.values():
        allowed = min(len(statuses), LIMIT)
        assert statuses == [200] * allowed + [429] * (len(statuses) - allowed), by_worker
    allowed_in_all = sum(min(len(statuses), LIMIT) for statuses in by_worker.values())
    assert allowed_in_all > LIMIT
    assert sum(r.status_code == 200 for r in responses) == allowed_in_all
    for response in responses:
        if response.status_code == 429:
            assert_refused(response)
