"""Verified webhook events per second at POST /hooks/{installation}/{token}, against
the action API in the same run, under gunicorn, driven by ``wrk``.

Each webhook is a distinct event signed with HMAC-SHA256 (``sha256=`` hex of the raw
body, GitHub's way) and carrying its own delivery id, so none is a replay: the host
checks the signature, reads the event type and delivery id, and commits the event
before answering 200. The signed requests are made beforehand (wrk's Lua cannot
compute an HMAC) and each wrk thread walks its own share of them. After the run the
stored events are counted: every 200 must be a row (nothing lost), and no request
may have failed. The baseline is an action run through the API (one upstream GET,
bench/action_api.py's mini-app) on the same host, at the same concurrency.

    .venv/bin/python bench/webhooks.py [--seconds 8] [--concurrency 16]
        [--databases sqlite,postgresql] [--workers gthread] [--postgres-url URL]
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import requests
from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parent))

from action_api import (  # noqa: E402
    BIN,
    HERE,
    POSTGRES,
    WORKERS,
    cpu_seconds,
    drive,
    free_port,
    postgres_database,
    prepare_instance,
    start,
    tree,
    wait,
)

SECRET = "bench-webhook-secret-0123456789"
HOOKS = {
    "name": "benchhooks", "version": "1.0.0", "title": "Bench hooks",
    "description": "Signed events.", "auth": {"type": "none"},
    "webhooks": {"verify": {"type": "hmac-sha256", "header": "X-Signature",
                            "prefix": "sha256=", "secret": "[[webhookSecret]]"},
                 "eventType": "$.type", "deliveryId": "$headers.X-Delivery"},
}
LUA = """
local threads = {}
local counter = 0
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end
function init(args)
  bad = 0
  entries = {}
  local step = tonumber(args[2])
  local n = 0
  for line in io.lines(args[1]) do
    if n % step == id then table.insert(entries, line) end
    n = n + 1
  end
  position = 0
end
function request()
  position = position + 1
  local entry = entries[(position - 1) % #entries + 1]
  local tab = string.find(entry, "\\t", 1, true)
  local tab2 = string.find(entry, "\\t", tab + 1, true)
  wrk.headers["X-Delivery"] = string.sub(entry, 1, tab - 1)
  wrk.headers["X-Signature"] = string.sub(entry, tab + 1, tab2 - 1)
  wrk.headers["Content-Type"] = "application/json"
  return wrk.format("POST", nil, nil, string.sub(entry, tab2 + 1))
end
function response(status, headers, body)
  if status ~= 200 or string.find(body, "replay") then bad = bad + 1 end
end
function done(summary, latency, requests)
  local total = 0
  for _, thread in ipairs(threads) do total = total + thread:get("bad") end
  io.write(string.format("BAD %d\\n", total))
  io.write(string.format("P50 %.3f\\nP99 %.3f\\n", latency:percentile(50) / 1000,
                         latency:percentile(99) / 1000))
end
"""


def signed_requests(path: Path, count: int) -> None:
    """``count`` distinct events, one per line: delivery id, signature, body."""
    with path.open("w") as out:
        for number in range(count):
            body = json.dumps({"type": "issue.opened", "number": number,
                               "issue": {"title": f"Bug {number}", "labels": ["bench"]}},
                              separators=(",", ":"))
            signature = hmac.new(SECRET.encode(), body.encode(), hashlib.sha256).hexdigest()
            out.write(f"d-{number}\tsha256={signature}\t{body}\n")


def hooks_drive(url: str, concurrency: int, seconds: float, work: Path, events: Path,
                watched: list) -> dict[str, float]:
    script = work / "hooks.lua"
    script.write_text(LUA)
    threads = min(concurrency, 2)
    before = cpu_seconds(watched)
    done = subprocess.run(["wrk", "-t", str(threads), "-c", str(concurrency), "-d",
                           f"{seconds}s", "-s", str(script), url, "--", str(events),
                           str(threads)], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"wrk failed: {done.stdout}{done.stderr}")
    after = cpu_seconds(watched)
    output = done.stdout
    count = int(re.search(r"(\d+) requests in", output).group(1))
    return {"rate": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
            "count": count, "errors": int(re.search(r"BAD (\d+)", output).group(1)),
            "p50": float(re.search(r"P50 ([\d.]+)", output).group(1)),
            "p99": float(re.search(r"P99 ([\d.]+)", output).group(1)),
            "cpu": (after - before) * 1000 / max(count, 1)}


def stored_events(database_url: str) -> int:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return int(connection.execute(text(
                "SELECT count(*) FROM inbound_event WHERE status = 'dispatched' "
                "AND verified")).scalar_one())
    finally:
        engine.dispose()


def bench(database: str, database_url: str, args: argparse.Namespace, work: Path) -> None:
    upstream = start([sys.executable, str(HERE / "server.py")], {}, HERE)
    assert upstream.stdout is not None
    upstream_port = int(upstream.stdout.readline())
    apps = work / "apps" / "benchhooks"
    apps.mkdir(parents=True, exist_ok=True)
    (apps / "manifest.json").write_text(json.dumps(HOOKS))
    env, token = prepare_instance(database, database_url, f"http://127.0.0.1:{upstream_port}",
                                  work)
    events = work / "events.tsv"
    signed_requests(events, args.events)
    auth = {"Authorization": f"Bearer {token}"}
    for workers in args.workers:
        port = free_port()
        host = start([str(BIN / "gunicorn"), *WORKERS[workers], "--log-level", "warning",
                      "--bind", f"127.0.0.1:{port}", "host:create_app()"], env, HERE.parent)
        try:
            base = f"http://127.0.0.1:{port}"
            wait(f"{base}/healthz", host)
            hooks = requests.post(f"{base}/api/v1/installations", json={
                "miniapp": "benchhooks"}, headers=auth).json()
            requests.put(f"{base}/api/v1/installations/{hooks['id']}/webhook-secret",
                         json={"secret": SECRET}, headers=auth).raise_for_status()
            action = requests.post(f"{base}/api/v1/installations", json={"miniapp": "bench"},
                                   headers=auth).json()["id"]
            run_url = f"{base}/api/v1/installations/{action}/actions/get/runs"
            hook_url = hooks["webhookUrl"].replace("http://127.0.0.1:5000", base)
            watched = tree(host.pid)
            drive(run_url, token, 4, 1, work, watched, None)  # warm the workers
            before = stored_events(database_url)
            found = hooks_drive(hook_url, args.concurrency, args.seconds, work, events,
                                watched)
            stored = stored_events(database_url) - before
            action_run = drive(run_url, token, args.concurrency, args.seconds, work, watched,
                               None)
            print(f"{database:<11}{workers:<8}c={args.concurrency:<3}webhooks"
                  f"{found['rate']:9.0f}/s p50 {found['p50']:.1f} ms p99 {found['p99']:.1f} "
                  f"ms cpu {found['cpu']:.2f} ms/event; {found['count']} answered, "
                  f"{stored} stored, {found['errors']} failed")
            print(f"{database:<11}{workers:<8}c={args.concurrency:<3}actions "
                  f"{action_run['rate']:9.0f}/s p50 {action_run['p50']:.1f} ms "
                  f"cpu {action_run['cpu']:.2f} ms/run; webhooks/actions "
                  f"{found['rate'] / action_run['rate']:.2f}x")
            # wrk counts the answers that came within its time; requests still in flight
            # when it stops are stored too (at most one per connection).
            if found["errors"] or action_run["errors"] or not (
                    found["count"] <= stored <= found["count"] + args.concurrency):
                raise SystemExit(f"events lost or refused: {found['count']} answered, "
                                 f"{stored} stored, {found['errors']} failed "
                                 f"({action_run['errors']} action runs failed)")
        finally:
            host.terminate()
            host.wait(timeout=20)
    upstream.terminate()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--events", type=int, default=80_000,
                        help="distinct signed events made beforehand (more than are sent)")
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--workers", default="gthread")
    parser.add_argument("--postgres-url", default=POSTGRES)
    args = parser.parse_args()
    args.workers = args.workers.split(",")
    for database in args.databases.split(","):
        with tempfile.TemporaryDirectory(prefix="minihost-bench-") as folder:
            work = Path(folder)
            if database == "sqlite":
                bench(database, f"sqlite:///{work / 'bench.db'}", args, work)
            else:
                with postgres_database(args.postgres_url) as url:
                    bench(database, url, args, work)


if __name__ == "__main__":
    main()
