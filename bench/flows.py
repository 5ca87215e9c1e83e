"""Flow runs per minute, and what a flow task costs next to an action run.

A 3-task flow — two GETs to a local keep-alive upstream in parallel, then a ``map``
joining them — is started through ``POST /api/v1/flows/bench/runs`` at concurrency
16 by ``wrk`` for ``--seconds``, under gunicorn (2 gthread workers × 8 threads, each
process also running ``FLOW_WORKERS`` flow threads) on SQLite. The figure is the
number of flow runs divided by the time from the first run's start to the last
run's end (read from the database), per minute. In the same run, the action API
(``POST …/actions/get/runs``, the same GET) is driven the same way, and the CPU
time per action task of the flow is compared with the CPU time per action run.

    .venv/bin/python bench/flows.py [--seconds 10] [--flow-workers 4] [--postgres-url URL]
        [--databases sqlite]

Goals: ≥ 10,000 flow runs per minute; a flow task ≤ 1.3× an action run.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import psutil
import requests
from action_api import (
    BIN,
    HERE,
    POSTGRES,
    WORKERS,
    cpu_seconds,
    free_port,
    postgres_database,
    prepare_instance,
    start,
    tree,
    wait,
)
from sqlalchemy import create_engine, text

LUA = """
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) bad = 0 end
function response(status, headers, body)
  if status ~= 202 and status ~= 201 then bad = bad + 1 end
end
function done(summary, latency, requests)
  local total = 0
  for _, thread in ipairs(threads) do total = total + thread:get("bad") end
  io.write(string.format("BAD %d\\n", total))
  io.write(string.format("P50 %.3f\\nP99 %.3f\\n", latency:percentile(50) / 1000,
                         latency:percentile(99) / 1000))
end
"""
FLOW = {"key": "bench", "title": "Bench", "tasks": {
    "one": {"connection": "bench", "action": "get", "inputs": {"q": "{{input.q}}"}},
    "two": {"connection": "bench", "action": "get", "inputs": {"q": "two"}},
    "join": {"needs": {"one": "completed", "two": "completed"},
             "map": {"one": "{{tasks.one.output.value}}", "two": "{{tasks.two.output.value}}"}}},
    "output": {"joined": "{{tasks.join.output}}"}}


def wrk(url: str, token: str, body: str, concurrency: int, seconds: float,
        work: Path) -> tuple[int, float, int]:
    script = work / "post.lua"
    script.write_text(f'wrk.method = "POST"\nwrk.body = \'{body}\'\n'
                      'wrk.headers["Content-Type"] = "application/json"\n'
                      f'wrk.headers["Authorization"] = "Bearer {token}"\n' + LUA)
    done = subprocess.run(["wrk", "-t", "2", "-c", str(concurrency), "-d", f"{seconds}s",
                           "-s", str(script), url], capture_output=True, text=True, check=True)
    count = int(re.search(r"(\d+) requests in", done.stdout).group(1))
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", done.stdout).group(1))
    bad = int(re.search(r"BAD (\d+)", done.stdout).group(1))
    return count, rate, bad


def finished(database: str) -> tuple[int, int, datetime | None, datetime | None, int]:
    engine = create_engine(database)
    with engine.connect() as connection:
        row = connection.execute(text(
            "SELECT count(*), sum(CASE WHEN status IN ('queued', 'running') THEN 1 ELSE 0 "
            "END), min(created_at), max(finished_at), "
            "sum(CASE WHEN status = 'succeeded' THEN 1 ELSE 0 END) FROM flow_run")).one()
    engine.dispose()
    first = row[2] if isinstance(row[2], datetime) or row[2] is None else \
        datetime.fromisoformat(str(row[2]))
    last = row[3] if isinstance(row[3], datetime) or row[3] is None else \
        datetime.fromisoformat(str(row[3]))
    return int(row[0]), int(row[1] or 0), first, last, int(row[4] or 0)


def bench(database: str, url: str, args: argparse.Namespace, upstream: str,
          work: Path) -> None:
    env, token = prepare_instance(database, url, upstream, work,
                                  FLOW_WORKERS=str(args.flow_workers))
    host_port = free_port()
    host = start([str(BIN / "gunicorn"), *WORKERS["gthread"], "--log-level", "warning",
                  "--bind", f"127.0.0.1:{host_port}", "host:create_app()"], env, HERE.parent)
    base = f"http://127.0.0.1:{host_port}"
    try:
        wait(f"{base}/healthz", host)
        auth = {"Authorization": f"Bearer {token}"}
        installation = requests.post(f"{base}/api/v1/installations",
                                     json={"miniapp": "bench"}, headers=auth).json()["id"]
        saved = requests.post(f"{base}/api/v1/flows", json=FLOW, headers=auth)
        assert saved.status_code == 201, saved.text
        watched = tree(host.pid)
        action_url = f"{base}/api/v1/installations/{installation}/actions/get/runs"
        flow_url = f"{base}/api/v1/flows/bench/runs"
        for _ in range(3):  # warm both paths in every worker
            wrk(action_url, token, '{"parameters": {"q": "w"}}', 4, 1, work)
            wrk(flow_url, token, '{"q": "w"}', 4, 1, work)
        drain(url)
        before = cpu_seconds(watched)
        count, rate, bad = wrk(action_url, token, '{"parameters": {"q": "a"}}', 16,
                               args.seconds, work)
        action_cpu = (cpu_seconds(watched) - before) * 1000 / max(count, 1)
        print(f"{database}: action API  {rate:8.0f} runs/s  {action_cpu:6.2f} ms CPU per "
              f"run  ({count} runs, {bad} failed)")
        with_engine(url, "DELETE FROM task_run")
        with_engine(url, "DELETE FROM flow_run")
        before = cpu_seconds(watched)
        count, rate, bad = wrk(flow_url, token, '{"q": "f"}', 16, args.seconds, work)
        started_at = time.monotonic()
        total, unfinished, first, last, succeeded = drain(url)
        drained = time.monotonic() - started_at
        flow_cpu = (cpu_seconds(watched) - before) * 1000
        span = (last - first).total_seconds() if first and last else float("nan")
        per_minute = total / span * 60
        per_task = flow_cpu / max(total * 2, 1)
        print(f"{database}: flow starts {rate:8.0f} /s accepted ({count} starts, {bad} "
              f"refused); {total} runs ({succeeded} succeeded) from first start to last "
              f"end in {span:.1f} s (the queue took {drained:.1f} s to drain after the "
              "starts stopped)")
        print(f"{database}: {per_minute:,.0f} flow runs per minute (goal 10,000: "
              f"{per_minute / 10000:.2f}x); {flow_cpu / max(total, 1):.2f} ms CPU per flow "
              f"run, {per_task:.2f} ms per action task = {per_task / action_cpu:.2f}x an "
              "action run (goal ≤ 1.3x, the map's share included)")
    finally:
        host.terminate()
        host.wait(timeout=30)


def with_engine(url: str, statement: str) -> None:
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text(statement))
    engine.dispose()


def drain(url: str, timeout: float = 600) -> tuple[int, int, datetime | None,
                                                    datetime | None, int]:
    deadline = time.monotonic() + timeout
    while True:
        total, unfinished, first, last, succeeded = finished(url)
        if unfinished == 0 or time.monotonic() > deadline:
            return total, unfinished, first, last, succeeded
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--flow-workers", type=int, default=4)
    parser.add_argument("--databases", default="sqlite")
    parser.add_argument("--postgres-url", default=os.environ.get(
        "MINIHOST_TEST_POSTGRES_URL", POSTGRES))
    args = parser.parse_args()
    if shutil.which("wrk") is None or not (BIN / "gunicorn").exists():
        raise SystemExit("install wrk (apt-get install wrk) and gunicorn first")
    work = Path(tempfile.mkdtemp(prefix="minihost-bench-"))
    upstream_process = start([sys.executable, str(HERE / "server.py")], dict(os.environ), HERE)
    try:
        upstream = f"http://127.0.0.1:{int(upstream_process.stdout.readline())}"
        print(f"wrk c=16, {args.seconds} s; gunicorn 2 gthread workers × 8 threads, "
              f"FLOW_WORKERS={args.flow_workers} each; {psutil.cpu_count()} CPUs")
        for database in args.databases.split(","):
            if database == "sqlite":
                bench(database, f"sqlite:///{work / 'minihost.db'}", args, upstream, work)
            else:
                with postgres_database(args.postgres_url) as url:
                    bench(database, url, args, upstream, work)
    finally:
        upstream_process.terminate()
        upstream_process.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
