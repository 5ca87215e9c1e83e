"""Memory of one host worker: RSS at idle, and over N action runs through the API.

One gunicorn worker (gthread, 8 threads) serves the bench mini-app on SQLite; wrk
posts runs in batches until N have been made, and the worker's resident set size is
read after each batch. A leak shows as growth that keeps going after the first
batches (caches filling, allocator warm-up) have settled.

    .venv/bin/python bench/memory.py [--runs 100000] [--batches 10]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil
import requests

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from action_api import BIN, free_port, start, wait  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--batches", type=int, default=10)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="minihost-memory-"))
    upstream = start([sys.executable, str(HERE / "server.py")], dict(os.environ), HERE)
    host = None
    try:
        port = int(upstream.stdout.readline())
        base = f"http://127.0.0.1:{port}"
        apps = work / "apps" / "bench"
        apps.mkdir(parents=True)
        (apps / "manifest.json").write_text(json.dumps({
            "name": "bench", "version": "1.0.0", "title": "Bench", "description": "d",
            "allowedHosts": [f"127.0.0.1:{port}"],
            "actions": [{"name": "get", "title": "Get", "parameters": {
                "type": "object", "properties": {"q": {"type": "string"}}},
                "requests": [{"url": base + "/items", "method": "GET",
                              "queryParams": {"q": "{{q}}"}, "mapping": {"value": "$.id"}}]}],
        }))
        env = {k: v for k, v in os.environ.items() if not k.startswith("MINIHOST_")}
        env.update({"MINIHOST_INSTANCE_PATH": str(work / "instance"),
                    "MINIHOST_MINIAPPS_DIRS": str(work / "apps"),
                    "MINIHOST_DATABASE_URL": f"sqlite:///{work / 'minihost.db'}",
                    "MINIHOST_EGRESS_ALLOW_PRIVATE": "true", "MINIHOST_API_RATE_LIMIT": "0"})
        minihost = [str(BIN / "minihost")]
        subprocess.run([*minihost, "init"], env=env, check=True, capture_output=True)
        subprocess.run([*minihost, "users", "create", "bench@example.com", "--password",
                        "bench-password"], env=env, check=True, capture_output=True)
        token = subprocess.run([*minihost, "tokens", "create", "bench@example.com"], env=env,
                               check=True, capture_output=True, text=True).stdout.strip()
        host_port = free_port()
        host = start([str(BIN / "gunicorn"), "--workers", "1", "--worker-class", "gthread",
                      "--threads", "8", "--log-level", "warning", "--bind",
                      f"127.0.0.1:{host_port}", "host:create_app()"], env, HERE.parent)
        wait(f"http://127.0.0.1:{host_port}/healthz", host)
        auth = {"Authorization": f"Bearer {token}"}
        installation = requests.post(f"http://127.0.0.1:{host_port}/api/v1/installations",
                                     json={"miniapp": "bench"}, headers=auth).json()["id"]
        url = (f"http://127.0.0.1:{host_port}/api/v1/installations/{installation}"
               "/actions/get/runs")
        worker = psutil.Process(host.pid).children()[0]
        script = work / "post.lua"
        script.write_text('wrk.method = "POST"\nwrk.body = \'{"parameters": {"q": "hello"}}\'\n'
                          'wrk.headers["Content-Type"] = "application/json"\n'
                          f'wrk.headers["Authorization"] = "Bearer {token}"\n')
        idle = worker.memory_info().rss / 2**20
        print(f"idle RSS after start-up and one run: {idle:.1f} MiB")
        made, per_batch = 0, args.runs // args.batches
        while made < args.runs:
            made += _batch(url, script, per_batch)
            print(f"after {made:>7} runs: RSS {worker.memory_info().rss / 2**20:.1f} MiB")
    finally:
        for process in (host, upstream):
            if process is not None:
                process.terminate()
                process.wait(timeout=20)
        shutil.rmtree(work, ignore_errors=True)


def _batch(url: str, script: Path, count: int) -> int:
    """Runs wrk until about ``count`` requests were made (wrk stops on time, not count:
    a short calibration run sets the duration)."""
    probe = subprocess.run(["wrk", "-t", "2", "-c", "8", "-d", "2s", "-s", str(script), url],
                           capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", probe).group(1))
    made = int(re.search(r"(\d+) requests in", probe).group(1))
    seconds = max(1, int((count - made) / max(rate, 1)))
    rest = subprocess.run(["wrk", "-t", "2", "-c", "8", "-d", f"{seconds}s", "-s", str(script),
                           url], capture_output=True, text=True, check=True).stdout
    return made + int(re.search(r"(\d+) requests in", rest).group(1))


if __name__ == "__main__":
    main()
