"""A 10,000-record data source synced with one change, against a plain paginated
urllib3 loop over the same upstream, in the same run.

The upstream (bench/records_server.py, a separate process) lists the records 100 a
page by cursor, taking 5 ms a page by default — a fast provider (real ones take
50–300 ms); ``--latency-ms 0`` measures against one that answers at once, which
shows the engine's own cost. The baseline fetches every page with urllib3 and parses it — the
least any sync must do. Minihost's sync does that through the run engine (egress
check, trace), then hashes every record, compares with the records it keeps and
writes the change with its event, in one transaction. Each round changes one record
at the upstream first, so each measured sync finds exactly one change. Prints the
time per sync, the ratio (baseline time / sync time; the goal is ≥ 0.8) and the peak
Python memory of each (tracemalloc).

    .venv/bin/python bench/sync.py [--records 10000] [--rounds 5] [--database URL]
        [--latency-ms 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import urllib3

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from host import create_app  # noqa: E402
from host.db import Installation, get_database  # noqa: E402
from host.principal import Principal  # noqa: E402
from host.services import accounts, data_sources, installations  # noqa: E402
from host.services import instance as instance_service  # noqa: E402


def manifest(base: str, host: str) -> dict:
    return {
        "name": "crm", "version": "1.0.0", "title": "CRM", "description": "Contacts.",
        "allowedHosts": [host], "auth": {"type": "none"},
        "dataSources": {"contacts": {
            "title": "Contacts",
            "list": {"url": base + "/records", "method": "GET", "queryParams": {"limit": 100},
                     "pagination": {"type": "cursor", "next": "$.paging.next.after",
                                    "param": "after", "maxPages": 1000}},
            "items": "$.results[*]", "id": "$.id", "updatedAt": "$.updatedAt"}}}


def baseline(pool: urllib3.PoolManager, base: str) -> int:
    records, after = 0, ""
    while True:
        url = f"{base}/records?limit=100" + (f"&after={after}" if after else "")
        body = json.loads(pool.request("GET", url).data)
        records += len(body["results"])
        after = body.get("paging", {}).get("next", {}).get("after")
        if not after:
            return records


def measured(function, memory: bool = False) -> tuple[float, int, object]:
    """Seconds (tracemalloc off: it slows allocation several times), or the peak of
    Python memory (a separate call, with tracemalloc on)."""
    if memory:
        tracemalloc.start()
        result = function()
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return 0.0, peak, result
    started = time.perf_counter()
    result = function()
    return time.perf_counter() - started, 0, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--database", default=None, help="a database URL (default: SQLite)")
    parser.add_argument("--latency-ms", type=float, default=5.0,
                        help="each page takes this long at the upstream (default 5 ms: a fast "
                             "provider; real ones take 50-300 ms; 0: the engine's own cost)")
    args = parser.parse_args()
    upstream = subprocess.Popen([sys.executable, str(HERE / "records_server.py"),
                                 str(args.records), str(args.latency_ms)],
                                stdout=subprocess.PIPE, text=True)
    assert upstream.stdout is not None
    port = int(upstream.stdout.readline())
    base, host = f"http://127.0.0.1:{port}", f"127.0.0.1:{port}"
    pool = urllib3.PoolManager()
    try:
        with tempfile.TemporaryDirectory(prefix="minihost-bench-") as folder:
            work = Path(folder)
            (work / "apps" / "crm").mkdir(parents=True)
            (work / "apps" / "crm" / "manifest.json").write_text(json.dumps(manifest(base, host)))
            app = create_app({"DATABASE_URL": args.database or f"sqlite:///{work / 'b.db'}",
                              "MINIAPPS_DIRS": [str(work / "apps")], "SECRET_KEY": "b" * 32,
                              "EGRESS_ALLOW_PRIVATE": True, "FLOW_WORKERS": 0,
                              "API_RATE_LIMIT": 0}, instance_path=work)
            with app.app_context():
                instance_service.init(app)
                with get_database(app).transaction() as db:
                    user = accounts.create_user(db, "bench@example.com", "bench-password")
                    principal = Principal(user, accounts.personal_workspace(db, user), "bench")
                with get_database(app).sessions() as db:
                    installation_id = installations.install(
                        app, db, principal, "crm").installation.id
                with get_database(app).sessions() as db:
                    installation = db.get(Installation, installation_id)
                    found = installations.manifest_of(app, db, installation)
                    db.expunge(installation)

                def sync() -> data_sources.Synced:
                    return data_sources.sync(app, installation, found, "contacts",
                                             actor="bench")

                first = sync()
                print(f"{args.records} records, {args.rounds} rounds, upstream "
                      f"{args.latency_ms:g} ms per page; first sync filled {first.records} "
                      "records")
                baseline(pool, base)  # warm the connection
                plain, ours, plain_peak, our_peak = [], [], [], []
                for _ in range(args.rounds):
                    seconds, _, count = measured(lambda: baseline(pool, base))
                    assert count == args.records
                    plain.append(seconds)
                    pool.request("POST", f"{base}/change")
                    seconds, _, result = measured(sync)
                    assert (result.records, result.updated, result.created, result.deleted) == (
                        args.records, 1, 0, 0), result
                    ours.append(seconds)
                plain_peak.append(measured(lambda: baseline(pool, base), memory=True)[1])
                pool.request("POST", f"{base}/change")
                our_peak.append(measured(sync, memory=True)[1])
                p, o = statistics.median(plain), statistics.median(ours)
                print(f"plain urllib3 loop   {p * 1000:8.1f} ms   "
                      f"peak {max(plain_peak) / 1e6:6.1f} MB")
                print(f"minihost sync        {o * 1000:8.1f} ms   "
                      f"peak {max(our_peak) / 1e6:6.1f} MB   (one change found each round)")
                print(f"ratio (plain / sync) {p / o:.2f}  (ranges: plain "
                      f"{min(plain) * 1000:.0f}-{max(plain) * 1000:.0f} ms, sync "
                      f"{min(ours) * 1000:.0f}-{max(ours) * 1000:.0f} ms)")
            get_database(app).engine.dispose()
    finally:
        upstream.terminate()
        upstream.wait(timeout=10)


if __name__ == "__main__":
    main()
