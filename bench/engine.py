"""Engine overhead against the raw HTTP call it wraps, measured side by side.

(a) one GET through the engine vs the same GET with a bare ``requests.Session``;
(b) a 3-request chain with mapping vs three bare calls doing the same work.
A third column calls urllib3 directly — the library the engine's transport
uses — so "own overhead" is the engine's work alone: rendering, the egress
check, mapping and the redacted trace.
Both run against one local keep-alive server in another process, interleaved
in rounds so drift hits both alike. Prints medians, the engine's overhead in µs
per request, and throughput ratios (bare time / engine time; 1.0 = as fast).

    .venv/bin/python bench/engine.py [--rounds 30] [--per-round 50] [--stub]

``--stub`` times the engine alone, with a client answering in-process what
``server.py`` would: no socket, so a busy machine's scheduling noise does not
swamp the engine's few tens of microseconds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import requests
import urllib3

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from host.engine import Context, EgressPolicy, GuardedClient, run_chain  # noqa: E402
from host.engine.client import Response  # noqa: E402
from host.manifest import compile_manifest  # noqa: E402


def build(port: int):
    base = f"http://127.0.0.1:{port}"
    auth = {"Authorization": "Bearer [[token]]"}
    doc = {
        "name": "bench", "version": "1.0.0", "title": "Bench", "description": "d",
        "allowedHosts": [f"127.0.0.1:{port}"],
        "actions": [
            {"name": "one", "title": "One", "parameters": {"type": "object", "properties": {
                "q": {"type": "string"}}},
             "requests": [{"url": base + "/items", "method": "GET",
                           "headers": {"Authorization": "Bearer [[token]]"},
                           "queryParams": {"q": "{{q}}"}, "mapping": {"id": "$.id"}}]},
            {"name": "chain", "title": "Chain", "parameters": {"type": "object", "properties": {
                "q": {"type": "string"}}},
             "requests": [
                 {"url": base + "/a", "method": "GET", "headers": auth,
                  "queryParams": {"q": "{{q}}"}, "mapping": [{"name": "first", "value": "$.id"}]},
                 {"url": base + "/b/{{first}}", "method": "POST",
                  "headers": {"Authorization": "Bearer [[token]]"},
                  "body": {"first": "{{first}}", "q": "{{q}}"},
                  "mapping": [{"name": "ids", "value": "$.items[*].id"}]},
                 {"url": base + "/c", "method": "GET", "headers": auth,
                  "queryParams": {"n": "{{first}}"}, "mapping": {"last": "$.items[-1].id"}}]},
        ],
        "auth": {"type": "apiKey", "fields": {"type": "object", "properties": {
            "token": {"type": "string"}}}},
    }
    return compile_manifest(doc, allow_private=True), base


class StubClient:
    """Answers every request as ``server.py`` does, without leaving the process."""

    def send(self, outgoing, spec, allowed_hosts, deadline, follow_redirects=True) -> Response:
        parts = urlsplit(outgoing.url)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        body = json.dumps({"id": 7, "path": path, "items": [{"id": i} for i in range(5)]})
        return Response(200, [("Content-Type", "application/json")], body.encode(), 0.0)


def stub(args: argparse.Namespace) -> None:
    manifest, _ = build(8080)
    client = StubClient()

    def call(chain: tuple) -> None:
        ctx = Context(parameters={"q": "hello"}, credentials={"token": "secret-token"})
        result = run_chain(chain, ctx, client, allowed_hosts=manifest.allowed_hosts,
                           deadline=time.monotonic() + 60)
        assert result.ok, result.error

    print(f"rounds={args.rounds} x {args.per_round} calls, stub client; median µs per request")
    for label, name, count in (("(a) one GET", "one", 1), ("(b) 3-chain", "chain", 3)):
        chain = manifest.action(name).requests
        for _ in range(100):
            call(chain)
        rounds = []
        for _ in range(args.rounds):
            started = time.perf_counter()
            for _ in range(args.per_round):
                call(chain)
            rounds.append((time.perf_counter() - started) / args.per_round / count)
        print(f"{label:14}{statistics.median(rounds) * 1e6:8.1f} µs/request of engine work")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--per-round", type=int, default=50)
    parser.add_argument("--stub", action="store_true", help="no server: the engine alone")
    args = parser.parse_args()
    if args.stub:
        stub(args)
        return

    server = subprocess.Popen([sys.executable, str(Path(__file__).with_name("server.py"))],
                              stdout=subprocess.PIPE, text=True)
    port = int(server.stdout.readline())
    try:
        manifest, base = build(port)
        one = manifest.action("one").requests
        chain = manifest.action("chain").requests
        client = GuardedClient(EgressPolicy(allow_private=True))
        session = requests.Session()
        pool = urllib3.HTTPConnectionPool("127.0.0.1", port, maxsize=4)
        headers = {"Authorization": "Bearer secret-token"}

        def engine_one() -> None:
            ctx = Context(parameters={"q": "hello"}, credentials={"token": "secret-token"})
            result = run_chain(one, ctx, client, allowed_hosts=manifest.allowed_hosts,
                               deadline=time.monotonic() + 60)
            assert result.ok, result.error

        def bare_one() -> None:
            response = session.get(base + "/items", params={"q": "hello"}, headers=headers)
            response.raise_for_status()
            response.json()["id"]

        def raw_one() -> None:
            response = pool.request("GET", "/items?q=hello", headers=headers)
            assert response.status == 200
            json.loads(response.data)["id"]

        def raw_chain() -> None:
            first = json.loads(pool.request("GET", "/a?q=hello", headers=headers).data)["id"]
            body = json.dumps({"first": first, "q": "hello"}).encode()
            second = json.loads(pool.request(
                "POST", f"/b/{first}", body=body,
                headers={**headers, "Content-Type": "application/json"}).data)
            [item["id"] for item in second["items"]]
            json.loads(pool.request("GET", f"/c?n={first}", headers=headers).data)["items"][-1]

        def engine_chain() -> None:
            ctx = Context(parameters={"q": "hello"}, credentials={"token": "secret-token"})
            result = run_chain(chain, ctx, client, allowed_hosts=manifest.allowed_hosts,
                               deadline=time.monotonic() + 60)
            assert result.ok, result.error

        def bare_chain() -> None:
            first = session.get(base + "/a", params={"q": "hello"}, headers=headers).json()["id"]
            second = session.post(f"{base}/b/{first}", json={"first": first, "q": "hello"},
                                  headers=headers).json()
            [item["id"] for item in second["items"]]
            session.get(base + "/c", params={"n": first}, headers=headers).json()["items"][-1]

        functions = {"engine_one": engine_one, "bare_one": bare_one, "raw_one": raw_one,
                     "engine_chain": engine_chain, "bare_chain": bare_chain,
                     "raw_chain": raw_chain}
        timings: dict[str, list[float]] = {k: [] for k in functions}
        for fn in functions.values():  # warm pools and caches
            for _ in range(20):
                fn()
        for _ in range(args.rounds):
            for name, fn in functions.items():
                started = time.perf_counter()
                for _ in range(args.per_round):
                    fn()
                timings[name].append((time.perf_counter() - started) / args.per_round)

        med = {k: statistics.median(v) * 1e6 for k, v in timings.items()}
        print(f"rounds={args.rounds} x {args.per_round} calls; median µs per call")
        print(f"{'':14}{'engine':>9}{'requests':>10}{'urllib3':>9}  ratio vs requests"
              "  engine's own overhead")
        for label, key, count in (("(a) one GET", "one", 1), ("(b) 3-chain", "chain", 3)):
            engine, bare, raw = med[f"engine_{key}"], med[f"bare_{key}"], med[f"raw_{key}"]
            print(f"{label:14}{engine:9.1f}{bare:10.1f}{raw:9.1f}  {bare / engine:17.2f}x"
                  f"  {(engine - raw) / count:+8.1f} µs/request")
        client.transport.close()
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
