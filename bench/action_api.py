"""Throughput and latency of POST /api/v1/installations/{id}/actions/{action}/runs.

Minihost (SQLite, the default) and a hand-written Flask floor (bench/floor.py,
the same upstream GET with ``requests``, no database) both run under gunicorn
with the same workers, against one keep-alive upstream (bench/server.py), in
the same run. Each is driven at concurrency 1 and 16 by client threads with
keep-alive sessions. Also times the run page (HTML) render.

    .venv/bin/pip install gunicorn
    .venv/bin/python bench/action_api.py [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
GUNICORN = ["--workers", "2", "--threads", "8", "--worker-class", "gthread",
            "--bind", "127.0.0.1:{port}", "--log-level", "warning"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait(url: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            requests.get(url, timeout=1)
            return
        except requests.ConnectionError:
            if process.poll() is not None:
                output = process.stdout.read() if process.stdout else ""
                raise SystemExit(f"server exited: {output}") from None
            time.sleep(0.1)
    raise SystemExit(f"{url} did not come up")


def drive(url: str, headers: dict[str, str], body: dict, concurrency: int,
          seconds: float) -> tuple[float, float, float, int]:
    """(requests per second, p50 ms, p99 ms, errors)."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def worker() -> None:
        session = requests.Session()
        mine = []
        while time.monotonic() < stop:
            started = time.perf_counter()
            response = session.post(url, json=body, headers=headers, timeout=30)
            elapsed = time.perf_counter() - started
            if response.status_code != 201 or response.json().get("status") != "succeeded":
                with lock:
                    errors[0] += 1
            mine.append(elapsed)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    total = time.monotonic() - began
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return len(latencies) / total, statistics.median(latencies) * 1000, p99 * 1000, errors[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    if not (BIN / "gunicorn").exists():
        raise SystemExit("install gunicorn first: .venv/bin/pip install gunicorn")
    work = Path(tempfile.mkdtemp(prefix="minihost-bench-"))
    processes: list[subprocess.Popen] = []
    try:
        upstream = subprocess.Popen([sys.executable, str(HERE / "server.py")],
                                    stdout=subprocess.PIPE, text=True)
        processes.append(upstream)
        upstream_port = int(upstream.stdout.readline())
        base = f"http://127.0.0.1:{upstream_port}"
        apps = work / "apps" / "bench"
        apps.mkdir(parents=True)
        (apps / "manifest.json").write_text(json.dumps({
            "name": "bench", "version": "1.0.0", "title": "Bench", "description": "d",
            "allowedHosts": [f"127.0.0.1:{upstream_port}"],
            "actions": [{"name": "get", "title": "Get", "parameters": {
                "type": "object", "properties": {"q": {"type": "string"}}},
                "requests": [{"url": base + "/items", "method": "GET",
                              "queryParams": {"q": "{{q}}"}, "mapping": {"value": "$.id"}}]}],
        }))
        env = {k: v for k, v in os.environ.items() if not k.startswith("MINIHOST_")}
        env.update({"MINIHOST_INSTANCE_PATH": str(work / "instance"),
                    "MINIHOST_MINIAPPS_DIRS": str(work / "apps"),
                    "MINIHOST_EGRESS_ALLOW_PRIVATE": "true",
                    # One token makes every call here: measure the run, not the limiter.
                    "MINIHOST_API_RATE_LIMIT": "0"})
        minihost = [str(BIN / "minihost")]
        subprocess.run([*minihost, "init"], env=env, check=True, capture_output=True)
        subprocess.run([*minihost, "users", "create", "bench@example.com", "--password",
                        "bench-password"], env=env, check=True, capture_output=True)
        token = subprocess.run([*minihost, "tokens", "create", "bench@example.com"], env=env,
                               check=True, capture_output=True, text=True).stdout.strip()

        host_port, floor_port = free_port(), free_port()
        host = subprocess.Popen([str(BIN / "gunicorn"), *[a.format(port=host_port)
                                                           for a in GUNICORN],
                                 "host:create_app()"], env=env, cwd=HERE.parent,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        floor = subprocess.Popen([str(BIN / "gunicorn"), *[a.format(port=floor_port)
                                                            for a in GUNICORN], "floor:app"],
                                 env={**env, "BENCH_UPSTREAM": base}, cwd=HERE,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        processes += [host, floor]
        wait(f"http://127.0.0.1:{host_port}/healthz", host)
        wait(f"http://127.0.0.1:{floor_port}/", floor)
        auth = {"Authorization": f"Bearer {token}"}
        installation = requests.post(f"http://127.0.0.1:{host_port}/api/v1/installations",
                                     json={"miniapp": "bench"}, headers=auth).json()["id"]
        run_url = (f"http://127.0.0.1:{host_port}/api/v1/installations/{installation}"
                   "/actions/get/runs")
        body = {"parameters": {"q": "hello"}}
        for url, headers in ((run_url, auth), (f"http://127.0.0.1:{floor_port}/run", {})):
            drive(url, headers, body, 4, 1.0)  # warm up
        print(f"gunicorn {' '.join(GUNICORN).format(port='…')}; {args.seconds:.0f} s per "
              "measurement; SQLite")
        print(f"{'':22}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}")
        results = {}
        for concurrency in (1, 16):
            for label, url, headers in (("minihost", run_url, auth),
                                        ("floor (requests)", f"http://127.0.0.1:{floor_port}/run",
                                         {})):
                rate, p50, p99, errors = drive(url, headers, body, concurrency, args.seconds)
                results[(label, concurrency)] = rate
                print(f"c={concurrency:<3}{label:<19}{rate:9.0f}{p50:9.1f}{p99:9.1f}{errors:8d}")
                if errors:  # a rate of failures is no measurement
                    raise SystemExit(f"{label}: {errors} requests failed; fix that first")
            ratio = results[("minihost", concurrency)] / results[("floor (requests)",
                                                                  concurrency)]
            print(f"c={concurrency:<3}ratio minihost / floor: {ratio:.2f}x")

        browser = requests.Session()
        login = browser.get(f"http://127.0.0.1:{host_port}/login").text
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', login).group(1)
        browser.post(f"http://127.0.0.1:{host_port}/login", data={
            "email": "bench@example.com", "password": "bench-password", "csrf_token": csrf})
        run_id = requests.post(run_url, json=body, headers=auth).json()["id"]
        timings = []
        for _ in range(200):
            started = time.perf_counter()
            page = browser.get(f"http://127.0.0.1:{host_port}/runs/{run_id}")
            timings.append((time.perf_counter() - started) * 1000)
            assert page.status_code == 200
        timings.sort()
        print(f"run page render: p50 {statistics.median(timings):.1f} ms, "
              f"p99 {timings[197]:.1f} ms (200 requests, one client)")
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
