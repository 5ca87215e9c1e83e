"""Throughput, latency and CPU of POST /api/v1/installations/{id}/actions/{action}/runs.

Minihost and a hand-written Flask floor (bench/floor.py: the same upstream GET with
``requests``, no database, no auth) run under the same gunicorn configuration,
against one keep-alive upstream (bench/server.py), in the same run, driven by
``wrk`` (Debian's ``wrk``; a Lua script posts the body and counts every answer that
is not a succeeded run). For each database (SQLite, PostgreSQL with
``synchronous_commit`` on) and each worker class (``sync``, ``gthread``) it prints
requests per second, p50/p99 latency, CPU per request of the gunicorn processes
(and, on PostgreSQL, of the database server beside it) and the ratio to the floor.
Also times the run page (HTML) render once per database.

    .venv/bin/python bench/action_api.py [--seconds 8] [--databases sqlite,postgresql]
        [--workers sync,gthread] [--concurrency 1,16] [--postgres-url URL]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import requests
from sqlalchemy.engine import make_url

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
WORKERS = {
    "sync": ["--workers", "2", "--worker-class", "sync"],
    "gthread": ["--workers", "2", "--threads", "8", "--worker-class", "gthread"],
}
POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
LUA = """
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) bad = 0 end
function response(status, headers, body)
  if status ~= 201 or not string.find(body, '"status":%s*"succeeded"') then bad = bad + 1 end
end
function done(summary, latency, requests)
  local total = 0
  for _, thread in ipairs(threads) do total = total + thread:get("bad") end
  io.write(string.format("BAD %d\\n", total))
  io.write(string.format("P50 %.3f\\nP99 %.3f\\n", latency:percentile(50) / 1000,
                         latency:percentile(99) / 1000))
end
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait(url: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            requests.get(url, timeout=5)
            return
        except requests.RequestException:
            if process.poll() is not None:
                output = process.stdout.read() if process.stdout else ""
                raise SystemExit(f"server exited: {output}") from None
            time.sleep(0.1)
    raise SystemExit(f"{url} did not come up")


def cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def postgres_processes(database: str) -> list[psutil.Process]:
    """The server processes serving ``database`` (one per connection; the pools keep
    them for the whole measurement, so their CPU is counted whole)."""
    found = []
    for process in psutil.process_iter(["username", "cmdline"]):
        if process.info["username"] == "postgres" and \
                database in " ".join(process.info["cmdline"] or ()):
            found.append(process)
    return found


def drive(url: str, token: str | None, concurrency: int, seconds: float, work: Path,
          watched: list[psutil.Process], database_server: str | None) -> dict[str, float]:
    """One wrk measurement: req/s, p50/p99 ms, CPU ms per request (the gunicorn tree,
    and the PostgreSQL server when ``database_server``), failed answers."""
    script = work / "post.lua"
    headers = "" if token is None else f'wrk.headers["Authorization"] = "Bearer {token}"\n'
    script.write_text('wrk.method = "POST"\nwrk.body = \'{"parameters": {"q": "hello"}}\'\n'
                      'wrk.headers["Content-Type"] = "application/json"\n' + headers + LUA)
    before, before_db = cpu_seconds(watched), _by_pid(database_server)
    done = subprocess.run(["wrk", "-t", str(min(concurrency, 2)), "-c", str(concurrency),
                           "-d", f"{seconds}s", "-s", str(script), url],
                          capture_output=True, text=True, check=True)
    after, after_db = cpu_seconds(watched), _by_pid(database_server)
    output = done.stdout
    count = int(re.search(r"(\d+) requests in", output).group(1))
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    errors = int(re.search(r"BAD (\d+)", output).group(1))
    errors += int(m.group(1)) if (m := re.search(r"Socket errors: .*?timeout (\d+)",
                                                 output)) else 0
    return {"rate": rate, "p50": float(re.search(r"P50 ([\d.]+)", output).group(1)),
            "p99": float(re.search(r"P99 ([\d.]+)", output).group(1)), "errors": errors,
            "cpu": (after - before) * 1000 / max(count, 1),
            "db_cpu": sum(cpu - before_db.get(pid, 0.0) for pid, cpu in after_db.items())
            * 1000 / max(count, 1)}


def _by_pid(database: str | None) -> dict[int, float]:
    """CPU seconds of each server process of ``database``; one that appears during a
    measurement (a pool opening a connection) is counted whole."""
    if database is None:
        return {}
    return {process.pid: cpu_seconds([process]) for process in postgres_processes(database)}


@contextmanager
def postgres_database(base: str) -> Iterator[str]:
    from sqlalchemy import create_engine, text

    url = make_url(base)
    name = f"minihost_bench_{secrets.token_hex(4)}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
        setting = connection.execute(text("SHOW synchronous_commit")).scalar()
    print(f"PostgreSQL database {name}, synchronous_commit={setting}")
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                    "WHERE datname = :name"), {"name": name})
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


def start(command: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def prepare_instance(database: str, url_of_database: str, upstream: str, work: Path,
                     **settings: str) -> tuple[dict[str, str], str]:
    """An initialised instance on ``url_of_database`` whose only mini-app, ``bench``,
    GETs ``upstream``, with one person and their token: the environment to start the
    host with (``settings`` become ``MINIHOST_*``), and the token."""
    apps = work / "apps" / "bench"
    apps.mkdir(parents=True, exist_ok=True)
    port = upstream.rsplit(":", 1)[1]
    (apps / "manifest.json").write_text(json.dumps({
        "name": "bench", "version": "1.0.0", "title": "Bench", "description": "d",
        "allowedHosts": [f"127.0.0.1:{port}"],
        "actions": [{"name": "get", "title": "Get", "parameters": {
            "type": "object", "properties": {"q": {"type": "string"}}},
            "requests": [{"url": upstream + "/items", "method": "GET",
                          "queryParams": {"q": "{{q}}"}, "mapping": {"value": "$.id"}}],
            "output": {"type": "object", "properties": {"value": {"type": "integer"}}}}],
    }))
    instance = work / f"instance-{database}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINIHOST_")}
    env.update({"MINIHOST_INSTANCE_PATH": str(instance),
                "MINIHOST_MINIAPPS_DIRS": str(work / "apps"),
                "MINIHOST_DATABASE_URL": url_of_database,
                "MINIHOST_EGRESS_ALLOW_PRIVATE": "true",
                # One token makes every call here: measure the run, not the limiter.
                "MINIHOST_API_RATE_LIMIT": "0",
                **{f"MINIHOST_{key}": value for key, value in settings.items()}})
    minihost = [str(BIN / "minihost")]
    subprocess.run([*minihost, "init"], env=env, check=True, capture_output=True)
    subprocess.run([*minihost, "users", "create", "bench@example.com", "--password",
                    "bench-password"], env=env, check=True, capture_output=True)
    token = subprocess.run([*minihost, "tokens", "create", "bench@example.com"], env=env,
                           check=True, capture_output=True, text=True).stdout.strip()
    return env, token


def bench_database(database: str, url_of_database: str, args: argparse.Namespace,
                   upstream: str, work: Path) -> None:
    env, token = prepare_instance(database, url_of_database, upstream, work)
    installation = None
    for workers in args.workers:
        host_port, floor_port = free_port(), free_port()
        gunicorn = [str(BIN / "gunicorn"), *WORKERS[workers], "--log-level", "warning"]
        host = start([*gunicorn, "--bind", f"127.0.0.1:{host_port}", "host:create_app()"],
                     env, HERE.parent)
        floor = start([*gunicorn, "--bind", f"127.0.0.1:{floor_port}", "floor:app"],
                      {**env, "BENCH_UPSTREAM": upstream}, HERE)
        try:
            wait(f"http://127.0.0.1:{host_port}/healthz", host)
            wait(f"http://127.0.0.1:{floor_port}/", floor)
            auth = {"Authorization": f"Bearer {token}"}
            if installation is None:
                installation = requests.post(
                    f"http://127.0.0.1:{host_port}/api/v1/installations",
                    json={"miniapp": "bench"}, headers=auth).json()["id"]
            run_url = (f"http://127.0.0.1:{host_port}/api/v1/installations/{installation}"
                       "/actions/get/runs")
            floor_url = f"http://127.0.0.1:{floor_port}/run"
            sides = (("minihost", run_url, token, tree(host.pid)),
                     ("floor", floor_url, None, tree(floor.pid)))
            for _, url, secret, watched in sides:  # warm every worker and pool
                drive(url, secret, 4, 1, work, watched, None)
            for concurrency in args.concurrency:
                results = {}
                for label, url, secret, watched in sides:
                    found = drive(url, secret, concurrency, args.seconds, work, watched,
                                  make_url(url_of_database).database
                                  if database == "postgresql" and label == "minihost" else None)
                    results[label] = found
                    db_cpu = f"{found['db_cpu']:7.2f}" if database == "postgresql" and \
                        label == "minihost" else f"{'':7}"
                    print(f"{database:<11}{workers:<8}c={concurrency:<3}{label:<9}"
                          f"{found['rate']:8.0f}{found['p50']:8.1f}{found['p99']:8.1f}"
                          f"{found['cpu']:8.2f}{db_cpu}{found['errors']:7d}")
                    if found["errors"]:  # a rate of failures is no measurement
                        raise SystemExit(f"{label}: {found['errors']} answers failed; fix "
                                         "that first")
                ratio = results["minihost"]["rate"] / results["floor"]["rate"]
                print(f"{database:<11}{workers:<8}c={concurrency:<3}ratio {ratio:.2f}x")
            if workers == args.workers[-1]:
                page_timings(host_port, run_url, auth)
        finally:
            for process in (host, floor):
                process.terminate()
            for process in (host, floor):
                process.wait(timeout=20)


def page_timings(port: int, run_url: str, auth: dict[str, str]) -> None:
    browser = requests.Session()
    login = browser.get(f"http://127.0.0.1:{port}/login").text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', login).group(1)
    browser.post(f"http://127.0.0.1:{port}/login", data={
        "email": "bench@example.com", "password": "bench-password", "csrf_token": csrf})
    run_id = requests.post(run_url, json={"parameters": {"q": "hello"}},
                           headers=auth).json()["id"]
    timings = []
    for _ in range(200):
        started = time.perf_counter()
        page = browser.get(f"http://127.0.0.1:{port}/runs/{run_id}")
        timings.append((time.perf_counter() - started) * 1000)
        assert page.status_code == 200
    timings.sort()
    print(f"run page render: p50 {statistics.median(timings):.1f} ms, "
          f"p99 {timings[197]:.1f} ms (200 requests, one client)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--workers", default="sync,gthread")
    parser.add_argument("--concurrency", default="1,16")
    parser.add_argument("--postgres-url", default=os.environ.get(
        "MINIHOST_TEST_POSTGRES_URL", POSTGRES))
    args = parser.parse_args()
    args.workers = args.workers.split(",")
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    for needed in ("gunicorn",):
        if not (BIN / needed).exists():
            raise SystemExit(f"install {needed} first: .venv/bin/pip install {needed}")
    if shutil.which("wrk") is None:
        raise SystemExit("install wrk first: apt-get install wrk")
    work = Path(tempfile.mkdtemp(prefix="minihost-bench-"))
    upstream_process = start([sys.executable, str(HERE / "server.py")], dict(os.environ), HERE)
    try:
        port = int(upstream_process.stdout.readline())
        upstream = f"http://127.0.0.1:{port}"
        print(f"wrk, {args.seconds} s per measurement; gunicorn 2 workers (gthread: 8 "
              "threads each); CPU ms per request of the gunicorn processes (db: the "
              "PostgreSQL server's)")
        print(f"{'database':<11}{'workers':<8}{'c':<5}{'side':<9}{'req/s':>8}{'p50 ms':>8}"
              f"{'p99 ms':>8}{'cpu ms':>8}{'db ms':>7}{'failed':>7}")
        for database in args.databases.split(","):
            if database == "sqlite":
                bench_database(database, f"sqlite:///{work / 'minihost.db'}", args, upstream,
                               work)
            else:
                with postgres_database(args.postgres_url) as url:
                    bench_database(database, url, args, upstream, work)
    finally:
        upstream_process.terminate()
        upstream_process.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
