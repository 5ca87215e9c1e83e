"""Flow runs per minute on Celery workers (1, 2 and 4, concurrency 4 each) against the
in-process executor, on PostgreSQL and Redis, in the same run.

The 3-task flow of ``bench/flows.py`` (two GETs to a local keep-alive upstream in
parallel, then a ``map`` joining them) is started through the API by ``wrk`` at
concurrency 16 for ``--seconds`` under gunicorn (2 gthread workers × 8 threads). The
baseline is that host running the tasks itself (``FLOW_WORKERS`` threads per
process); then the same host sends them to Celery (``CELERY_BROKER_URL``, its own
queue) and 1, 2 and 4 ``minihost worker --concurrency 4`` run them. Runs per minute
is the number of runs over the time from the first run's start to the last run's
end (read from the database).

The per-task overhead of the Celery path (a message and a claim) is measured apart,
with the machine idle: one run at a time, its time from start to end in process and
on one worker; the difference over its two action tasks is the cost each task pays
for going through the broker. CPU per task is read for the workers, the host and
PostgreSQL, and projected to N machines.

    .venv/bin/python bench/scale.py [--seconds 10] [--workers 1,2,4] [--serial 40]
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import statistics
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
    postgres_processes,
    prepare_instance,
    start,
    tree,
    wait,
)
from flows import FLOW, drain, with_engine, wrk

REDIS = os.environ.get("MINIHOST_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def start_worker(env: dict[str, str], name: str, work: Path) -> subprocess.Popen[str]:
    """A worker whose log goes to a file (a pipe nobody reads would fill and stop it);
    returns once it takes tasks. Its log says INFO per task: WARNING keeps the
    measurement about the work, not the logging."""
    log = work / f"{name}.log"
    with log.open("w") as output:
        process = subprocess.Popen([str(BIN / "minihost"), "worker", "--concurrency", "4",
                                    "--name", name], env={**env, "MINIHOST_LOG_LEVEL": "WARNING"},
                                   stdout=output, stderr=subprocess.STDOUT, text=True,
                                   cwd=HERE.parent)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        if "ready" in log.read_text():
            return process
        time.sleep(0.1)
    raise SystemExit(f"worker {name} did not start: {log.read_text()}")


def stop(processes: list[subprocess.Popen[str]]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def serial(base: str, token: str, url: str, count: int) -> float:
    """Median seconds from a run's start to its end, one run at a time."""
    auth = {"Authorization": f"Bearer {token}"}
    times = []
    for index in range(count):
        run = requests.post(f"{base}/api/v1/flows/bench/runs", json={"q": f"s{index}"},
                            headers=auth).json()
        drain(url)
        found = requests.get(f"{base}/api/v1/flow-runs/{run['id']}", headers=auth).json()
        started = found["startedAt"]
        ended = found["finishedAt"]
        times.append((datetime.fromisoformat(ended) - datetime.fromisoformat(started))
                     .total_seconds())
    return statistics.median(times)


def phase(label: str, base: str, token: str, url: str, args: argparse.Namespace, work: Path,
          watched: list[psutil.Process], workers: list[subprocess.Popen[str]]) -> dict:
    with_engine(url, "DELETE FROM task_run")
    with_engine(url, "DELETE FROM flow_run")
    worker_processes = [p for worker in workers for p in tree(worker.pid)]
    database_processes = postgres_processes(url.rsplit("/", 1)[1])
    before = (cpu_seconds(watched), cpu_seconds(worker_processes),
              cpu_seconds(database_processes))
    count, rate, bad = wrk(f"{base}/api/v1/flows/bench/runs", token, '{"q": "f"}', 16,
                           args.seconds, work)
    total, unfinished, first, last, succeeded = drain(url)
    host_cpu = cpu_seconds(watched) - before[0]
    worker_cpu = cpu_seconds(worker_processes) - before[1]
    database_cpu = cpu_seconds(database_processes) - before[2]
    span = (last - first).total_seconds() if first and last else float("nan")
    per_minute = total / span * 60
    tasks = max(total * 2, 1)
    print(f"{label:>22}: {per_minute:8,.0f} runs/min  ({total} runs, {succeeded} "
          f"succeeded, {unfinished} unfinished, {bad} starts refused; {span:.1f} s)  CPU "
          f"per task: host {host_cpu * 1000 / tasks:.2f} ms, workers "
          f"{worker_cpu * 1000 / tasks:.2f} ms, PostgreSQL {database_cpu * 1000 / tasks:.2f} ms")
    return {"per_minute": per_minute, "host": host_cpu / tasks, "workers": worker_cpu / tasks,
            "database": database_cpu / tasks}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--serial", type=int, default=40)
    parser.add_argument("--postgres-url", default=os.environ.get(
        "MINIHOST_TEST_POSTGRES_URL", POSTGRES))
    args = parser.parse_args()
    if shutil.which("wrk") is None or not (BIN / "gunicorn").exists():
        raise SystemExit("install wrk (apt-get install wrk) and gunicorn first")
    work = Path(tempfile.mkdtemp(prefix="minihost-scale-"))
    upstream_process = start([sys.executable, str(HERE / "server.py")], dict(os.environ), HERE)
    results: dict[str, dict] = {}
    try:
        upstream = f"http://127.0.0.1:{int(upstream_process.stdout.readline())}"
        print(f"wrk c=16, {args.seconds} s; gunicorn 2 gthread workers × 8 threads; "
              f"PostgreSQL and Redis; {psutil.cpu_count()} CPUs")
        with postgres_database(args.postgres_url) as url:
            queue = f"minihost-bench-{secrets.token_hex(3)}"
            env, token = prepare_instance("postgresql", url, upstream, work, FLOW_WORKERS="4")
            celery_env = {**env, "MINIHOST_CELERY_BROKER_URL": REDIS,
                          "MINIHOST_CELERY_QUEUE": queue}
            auth = {"Authorization": f"Bearer {token}"}
            for label, host_env in (("in-process", env), ("celery", celery_env)):
                port = free_port()
                host = start([str(BIN / "gunicorn"), *WORKERS["gthread"], "--log-level",
                              "warning", "--bind", f"127.0.0.1:{port}", "host:create_app()"],
                             host_env, HERE.parent)
                base = f"http://127.0.0.1:{port}"
                workers: list[subprocess.Popen[str]] = []
                try:
                    wait(f"{base}/healthz", host)
                    if label == "in-process":
                        requests.post(f"{base}/api/v1/installations", json={"miniapp": "bench"},
                                      headers=auth).raise_for_status()
                        saved = requests.post(f"{base}/api/v1/flows", json=FLOW, headers=auth)
                        assert saved.status_code == 201, saved.text
                    watched = tree(host.pid)
                    if label == "in-process":
                        wrk(f"{base}/api/v1/flows/bench/runs", token, '{"q": "w"}', 4, 2, work)
                        drain(url)
                        results["serial in-process"] = {"seconds": serial(
                            base, token, url, args.serial)}
                        results["in-process"] = phase("in-process (4 threads)", base, token,
                                                      url, args, work, watched, [])
                        continue
                    for count in [int(n) for n in args.workers.split(",")]:
                        while len(workers) < count:
                            workers.append(start_worker(celery_env,
                                                        f"bench-{len(workers)}@scale", work))
                        if count == 1:
                            wrk(f"{base}/api/v1/flows/bench/runs", token, '{"q": "w"}', 4, 2,
                                work)
                            drain(url)
                            results["serial celery"] = {"seconds": serial(
                                base, token, url, args.serial)}
                        results[f"{count} worker(s)"] = phase(
                            f"celery, {count} worker(s) × 4", base, token, url, args, work,
                            watched, workers)
                finally:
                    stop(workers)
                    host.terminate()
                    host.wait(timeout=30)
    finally:
        upstream_process.terminate()
        upstream_process.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)
    report(results)


def report(results: dict[str, dict]) -> None:
    inline = results["serial in-process"]["seconds"]
    remote = results["serial celery"]["seconds"]
    overhead = (remote - inline) / 2 * 1000
    print(f"\none run at a time: {inline * 1000:.1f} ms in process, {remote * 1000:.1f} ms "
          f"on one worker: the Celery path costs {overhead:.1f} ms per task (a message, a "
          "claim, and the hop back for the next task)")
    baseline = results["in-process"]["per_minute"]
    for key, found in results.items():
        if key.endswith("worker(s)"):
            print(f"{key}: {found['per_minute'] / baseline:.2f}x the in-process executor")
    widest = max((found for key, found in results.items() if key.endswith("worker(s)")),
                 key=lambda found: found["per_minute"])
    # Each machine added brings its cores for workers; the host and the database are
    # shared. Per task: worker CPU scales out; host CPU per task is paid once per start
    # (scales with hosts); PostgreSQL CPU per task is the shared ceiling.
    worker_ms = widest["workers"] * 1000
    database_ms = widest["database"] * 1000
    host_ms = widest["host"] * 1000
    print(f"per task at the widest: workers {worker_ms:.2f} ms CPU, host {host_ms:.2f} ms, "
          f"PostgreSQL {database_ms:.2f} ms")
    for machines in (1, 2, 4, 8, 16):
        worker_bound = machines * 2 * 1000 / worker_ms * 60 / 2 if worker_ms else float("inf")
        database_bound = 2 * 1000 / database_ms * 60 / 2 if database_ms else float("inf")
        print(f"projection, {machines:>2} two-core worker machine(s), one two-core "
              f"PostgreSQL: {min(worker_bound, database_bound):,.0f} runs/min "
              f"({'workers' if worker_bound < database_bound else 'PostgreSQL'} bound)")


if __name__ == "__main__":
    main()
