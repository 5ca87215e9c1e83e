"""Run history at scale: every page and API list that shows runs, and the purge.

Fills N runs (1 million on SQLite, 10 million on PostgreSQL by default) spread over
workspaces, installations, actions, kinds and statuses the way a busy host's are —
a few installations run most of the work (Zipf), most runs succeed, a few are
interrupted, source loads and auth steps sit between the actions — over the last
``--days`` days. The runs go in at migration 0004 and the database is then
upgraded to the head, so the upgrade itself (indexes, the usage backfill) is timed
on the full table. Then every page and list is requested through the Flask test
client (server time: no socket, no browser), p50 and p95 over ``--reps`` requests,
signed in to the busiest workspace — its busiest, median and smallest
installation, and one with no runs yet — against the 50 ms (p95) goal; with
``--explain``, the plan of every statement a case runs on runs or usage. Then runs
are recorded through ``host.execution.run_step`` (sandbox) and timed. Last, with a
retention shorter than ``--days``, the purge runs while another thread keeps
recording runs, and the longest of those writes is printed against the 100 ms
goal (``--purge-only`` skips the pages).

    .venv/bin/python bench/history.py --database sqlite [--runs 1000000]
    .venv/bin/python bench/history.py --database postgresql [--runs 10000000] \\
        [--postgres-url postgresql+psycopg://postgres@127.0.0.1:5432/test]

PostgreSQL gets a database of its own (``minihost_bench_history_…``), dropped at the
end unless ``--keep``. The same script measures an older tree: run it with
``PYTHONPATH`` pointing at that tree (steps the tree cannot do are skipped).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import secrets
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine, make_url

from host import create_app, migrations
from host.db import Installation, get_database
from host.services import accounts, catalog

GOAL_MS = 50.0
WRITE_GOAL_MS = 100.0
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
SLOTS = 20_000  # the mix of (installation, kind, name) a run is drawn from
STATUSES = (("succeeded", 0.90), ("failed", 0.09), ("interrupted", 0.01))
KINDS = (("action", 0.85), ("source", 0.12), ("auth", 0.03))
AUTH_STEPS = ("refresh", "test")
PASSWORD = "bench-password"


# -- the data ----------------------------------------------------------------------------


def crockford(value: int, width: int) -> str:
    return "".join(CROCKFORD[(value >> (5 * (width - 1 - i))) & 31] for i in range(width))


def run_id(ms: int, n: int) -> str:
    """An id laid out as host.db.new_id lays it out (time first), unique by ``n``."""
    return f"run_{crockford(ms, 10)}{'0' * 11}{crockford(n, 5)}"


def zipf(count: int, s: float = 1.0) -> list[float]:
    weights = [1 / (rank ** s) for rank in range(1, count + 1)]
    total = sum(weights)
    return [w / total for w in weights]


@dataclass
class Mix:
    """Slots a run is drawn from: each (workspace, installation, kind, name) holds a
    share of ``SLOTS`` proportional to how often it runs."""

    slots: list[tuple[str, str, str, str]] = field(default_factory=list)


def build_mix(rng: random.Random, installations: list[tuple[str, str, Any]]) -> Mix:
    """``installations``: (workspace id, installation id, manifest), busiest first."""
    mix = Mix()
    for (workspace, installation, manifest), share in zip(
            installations, zipf(len(installations)), strict=True):
        count = max(1, round(share * SLOTS))
        actions = [a.name for a in manifest.actions] or ["run"]
        sources = list(manifest.sources) or actions
        action_weights = zipf(len(actions), 1.2)
        for _ in range(count):
            kind = rng.choices([k for k, _ in KINDS], [w for _, w in KINDS])[0]
            if kind == "action":
                name = rng.choices(actions, action_weights)[0]
            elif kind == "source":
                name = rng.choice(sources)
            else:
                name = rng.choice(AUTH_STEPS)
            mix.slots.append((workspace, installation, kind, name))
    return mix


PARAMETERS = '{"owner": "acme", "repo": "widgets", "title": "Nightly export finished"}'
OUTPUT = '{"id": 1234567, "url": "https://api.example.com/items/1234567"}'
ERROR = '{"type": "provider", "message": "the provider answered 422: title is too long"}'
TRACE = json.dumps({"requests": [{
    "method": "POST", "url": "https://api.example.com/repos/acme/widgets/issues",
    "headers": {"Accept": "application/json", "Authorization": "[redacted]",
                "Content-Type": "application/json"},
    "body": {"title": "Nightly export finished", "labels": ["export"]},
    "status": 201, "durationMs": 184}]})


def status_of(draw: float) -> str:
    for status, share in STATUSES:
        if draw < share:
            return status
        draw -= share
    return STATUSES[-1][0]


def fill_sqlite(engine: Engine, mix: Mix, runs: int, start_ms: int, step: float,
                seed: int) -> None:
    rng = random.Random(seed)
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        sql = ("INSERT INTO run (id, workspace_id, installation_id, kind, name, status, "
               "parameters, output, error, trace, sandbox, actor_id, started_at, finished_at, "
               "duration_ms, holder, lease_expires_at) "
               "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, NULL, ?, ?, ?, NULL, NULL)")
        batch: list[tuple[Any, ...]] = []
        for n in range(runs):
            ms = start_ms + int(n * step)
            workspace, installation, kind, name = mix.slots[rng.randrange(SLOTS)]
            status = status_of(rng.random())
            duration = rng.randrange(50, 2000)
            started = datetime.fromtimestamp(ms / 1000, UTC)
            batch.append((
                run_id(ms, n), workspace, installation, kind, name, status, PARAMETERS,
                OUTPUT if status == "succeeded" else None,
                ERROR if status != "succeeded" else None, TRACE,
                started.strftime("%Y-%m-%d %H:%M:%S.%f"),
                (started + timedelta(milliseconds=duration)).strftime("%Y-%m-%d %H:%M:%S.%f"),
                duration))
            if len(batch) == 20_000 or n == runs - 1:
                cursor.executemany(sql, batch)
                raw.commit()
                batch.clear()
                progress(n + 1, runs)
    finally:
        raw.close()


def fill_postgresql(engine: Engine, mix: Mix, runs: int, start_ms: int, step: float,
                    seed: int) -> None:
    """INSERT … SELECT over generate_series: ids, times and draws computed in the
    server, the categorical columns looked up in the mix table."""
    def b32(expression: str, width: int) -> str:
        return " || ".join(
            f"substr('{CROCKFORD}', ((({expression}) >> {5 * (width - 1 - i)}) & 31)::int + 1, 1)"
            for i in range(width))

    with engine.begin() as connection:
        connection.execute(text(
            "CREATE TABLE bench_mix (slot integer PRIMARY KEY, workspace_id text, "
            "installation_id text, kind text, name text)"))
        connection.execute(
            text("INSERT INTO bench_mix VALUES (:slot, :w, :i, :k, :n)"),
            [{"slot": slot, "w": w, "i": i, "k": k, "n": n}
             for slot, (w, i, k, n) in enumerate(mix.slots)])
    chunk = 500_000
    succeeded, failed = STATUSES[0][1], STATUSES[0][1] + STATUSES[1][1]
    for low in range(0, runs, chunk):
        high = min(runs, low + chunk) - 1
        with engine.begin() as connection:
            connection.execute(text("SELECT setseed(:seed)"),
                               {"seed": ((seed + low) % 1000) / 1000})
            connection.execute(text(f"""
                INSERT INTO run (id, workspace_id, installation_id, kind, name, status,
                    parameters, output, error, trace, sandbox, started_at, finished_at,
                    duration_ms)
                SELECT 'run_' || {b32('g.ms', 10)} || '00000000000' || {b32('g.n', 5)},
                    m.workspace_id, m.installation_id, m.kind, m.name, g.status,
                    CAST(:parameters AS json),
                    CASE WHEN g.status = 'succeeded' THEN CAST(:output AS json) END,
                    CASE WHEN g.status <> 'succeeded' THEN CAST(:error AS json) END,
                    CAST(:trace AS json), false,
                    to_timestamp(g.ms / 1000.0),
                    to_timestamp((g.ms + g.duration) / 1000.0), g.duration
                FROM (SELECT n, (:start + floor(n * :step))::bigint AS ms,
                             floor(random() * :slots)::int AS slot,
                             (50 + floor(random() * 1950))::int AS duration,
                             CASE WHEN r < :succeeded THEN 'succeeded'
                                  WHEN r < :failed THEN 'failed'
                                  ELSE 'interrupted' END AS status
                      FROM (SELECT n, random() AS r
                            FROM generate_series(CAST(:low AS bigint),
                                                 CAST(:high AS bigint)) AS n) AS draws
                     ) AS g
                JOIN bench_mix AS m ON m.slot = g.slot
            """), {"parameters": PARAMETERS, "output": OUTPUT, "error": ERROR, "trace": TRACE,
                   "start": start_ms, "step": step, "slots": SLOTS, "succeeded": succeeded,
                   "failed": failed, "low": low, "high": high})
        progress(high + 1, runs)
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE bench_mix"))


def progress(done: int, total: int) -> None:
    print(f"\r  {done:,} / {total:,} runs", end="" if done < total else "\n", flush=True)


# -- the host ----------------------------------------------------------------------------


@dataclass
class Bench:
    app: Flask
    engine: Engine
    browser: FlaskClient
    token: str
    busiest: Installation
    median: Installation
    smallest: Installation
    fresh: Installation
    actions: list[str]
    rare_action: str
    statements: list[tuple[str, Any]] = field(default_factory=list)

    def api(self, path: str) -> Any:
        response = self.browser.get(path, headers={"Authorization": f"Bearer {self.token}"})
        assert response.status_code == 200, (path, response.status_code,
                                             response.get_data(as_text=True)[:300])
        return response.get_json()


@contextmanager
def postgres_database(base: str, keep: bool) -> Iterator[str]:
    url = make_url(base)
    name = f"minihost_bench_history_{secrets.token_hex(4)}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    print(f"PostgreSQL database {name}")
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        if keep:
            print(f"kept {name}")
        else:
            with admin.connect() as connection:
                connection.execute(text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :name AND pid <> pg_backend_pid()"), {"name": name})
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


def login(client: FlaskClient, email: str) -> None:
    page = client.get("/login").get_data(as_text=True)
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, "no CSRF token on the sign-in page"
    answer = client.post("/login", data={"email": email, "password": PASSWORD,
                                         "csrf_token": match.group(1)})
    assert answer.status_code == 302, answer.status_code


def prepare(url: str, instance: Path, runs: int, days: float, seed: int) -> Bench:
    config = {
        "DATABASE_URL": url, "SECRET_KEY": "bench", "SANDBOX": True,
        "VAULT_KEYS": [Fernet.generate_key().decode()],
        # Keep the purge out of the timed requests; it is timed on its own below.
        "RUN_RETENTION_DAYS": 0, "API_RATE_LIMIT": 0,
    }
    app = create_app(config, instance_path=instance)
    database = get_database(app)
    engine = database.engine
    migrations.upgrade(engine, "0004")
    catalog.sync(app)
    rng = random.Random(seed)
    workspaces = max(10, runs // 50_000)
    per_workspace = 10
    with database.transaction() as db:
        snapshot = catalog.get_catalog(app).snapshot(db)
        # The busiest installations get the mini-apps with the most actions.
        compiled = [snapshot.get(entry.name, entry.version) for entry in snapshot.search()]
        manifests = sorted((m for m in compiled if m is not None and m.actions),
                           key=lambda m: (-len(m.actions), m.name))
        users = [accounts.create_user(db, f"user{i}@example.com",
                                      PASSWORD if i == 0 else None)
                 for i in range(workspaces)]
        _, token = accounts.create_token(db, users[0], "bench", "bench")
        spaces = [accounts.personal_workspace(db, user) for user in users]
        placed: list[tuple[str, str, Any]] = []
        for rank in range(workspaces * per_workspace):
            workspace = spaces[rank % workspaces]  # the busiest land in the first workspace
            manifest = manifests[rank % len(manifests)]
            row = Installation(workspace_id=workspace, miniapp=manifest.name,
                               miniapp_version=manifest.version, status="active",
                               credential_keys=[], sandbox=True,
                               webhook_token=secrets.token_hex(16),
                               created_by=users[rank % workspaces].id)
            db.add(row)
            db.flush()
            placed.append((workspace, row.id, manifest))
        # Installed a moment ago beside the busiest: a history with no runs yet.
        fresh = Installation(workspace_id=spaces[0], miniapp=manifests[0].name,
                             miniapp_version=manifests[0].version, status="active",
                             credential_keys=[], sandbox=True,
                             webhook_token=secrets.token_hex(16), created_by=users[0].id)
        db.add(fresh)
        db.flush()
        fresh_id = fresh.id
    mix = build_mix(rng, placed)
    now_ms = int(time.time() * 1000)
    start_ms = now_ms - int(days * 86_400_000)
    step = (now_ms - 60_000 - start_ms) / runs
    print(f"filling {runs:,} runs over {days:g} days: {workspaces} workspaces, "
          f"{len(placed)} installations, {len(manifests)} mini-apps")
    began = time.perf_counter()
    if engine.dialect.name == "postgresql":
        fill_postgresql(engine, mix, runs, start_ms, step, seed)
    else:
        fill_sqlite(engine, mix, runs, start_ms, step, seed)
    print(f"  filled in {time.perf_counter() - began:.0f} s")
    began = time.perf_counter()
    migrations.upgrade(engine)
    print(f"migrations 0004 -> {migrations.current(engine)} on {runs:,} runs: "
          f"{time.perf_counter() - began:.1f} s")
    if engine.dialect.name == "postgresql":
        began = time.perf_counter()
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("VACUUM ANALYZE"))
            # Gigabytes of freshly built pages would otherwise be written out while the
            # writes below are timed, slowing every commit.
            connection.execute(text("CHECKPOINT"))
        print(f"VACUUM ANALYZE (what autovacuum does after a bulk load) and CHECKPOINT: "
              f"{time.perf_counter() - began:.0f} s")
        sizes = ("SELECT pg_relation_size('run'), pg_indexes_size('run'), "
                 "pg_database_size(current_database())")
    else:
        sizes = ("SELECT sum(CASE WHEN name = 'run' THEN pgsize END), "
                 "sum(CASE WHEN tbl_name = 'run' AND name <> 'run' THEN pgsize END), "
                 "(SELECT page_count * page_size FROM pragma_page_count, pragma_page_size) "
                 "FROM dbstat JOIN sqlite_master USING (name)")
    with engine.connect() as connection:
        table, indexes, whole = connection.execute(text(sizes)).one()
    print(f"run table {table / 2**20:,.0f} MB, its indexes {indexes / 2**20:,.0f} MB, "
          f"the database {whole / 2**20:,.0f} MB")
    (busiest_ws, busiest_id, busiest_manifest) = placed[0]
    mine = [p for p in placed if p[0] == busiest_ws]
    with database.sessions() as db:
        busiest = db.get(Installation, busiest_id)
        median = db.get(Installation, mine[len(mine) // 2][1])
        smallest = db.get(Installation, mine[-1][1])
        fresh = db.get(Installation, fresh_id)
        counts = dict(db.execute(text(
            "SELECT name, count(*) FROM run WHERE installation_id = :id AND kind = 'action' "
            "GROUP BY name"), {"id": busiest_id}).all())
        total = sum(counts.values())
        db.expunge_all()
    ordered = sorted(counts, key=counts.get, reverse=True)
    print(f"busiest installation {busiest_id} ({busiest.miniapp}): "
          f"{total:,} action runs over {len(ordered)} actions; {len(mine) + 1} installations "
          f"in its workspace (one with no runs yet)")
    browser = app.test_client()
    login(browser, "user0@example.com")
    return Bench(app, engine, browser, token, busiest, median, smallest, fresh, ordered,
                 ordered[-1])


# -- timing ------------------------------------------------------------------------------


@dataclass
class Case:
    label: str
    path: str
    api: bool = True


def cases(bench: Bench) -> list[Case]:
    ins, other, small = bench.busiest.id, bench.median.id, bench.smallest.id
    fresh = bench.fresh.id
    common = bench.actions[0]
    older = bench.api(f"/api/v1/runs?installation={ins}&limit=200")["next"]
    deep = older
    for _ in range(4):
        deep = bench.api(f"/api/v1/runs?installation={ins}&limit=200&cursor={deep}")["next"]
    before = bench.api(f"/api/v1/runs?installation={ins}&limit=50")["items"][-1]["id"]
    run = bench.api(f"/api/v1/runs?installation={ins}&status=failed&limit=1")["items"][0]["id"]
    return [
        Case("installation page (busiest)", f"/installations/{ins}", api=False),
        Case("installation page (median)", f"/installations/{other}", api=False),
        Case("installation page (smallest)", f"/installations/{small}", api=False),
        Case("installation page (no runs yet)", f"/installations/{fresh}", api=False),
        Case("usage (API)", f"/api/v1/installations/{ins}/usage"),
        Case("history page", f"/installations/{ins}/runs", api=False),
        Case("history page, older", f"/installations/{ins}/runs?before={before}", api=False),
        Case("history page (median)", f"/installations/{other}/runs", api=False),
        Case("history page (smallest)", f"/installations/{small}/runs", api=False),
        Case("history page (no runs yet)", f"/installations/{fresh}/runs", api=False),
        Case("history (median) ?status=failed", f"/installations/{other}/runs?status=failed",
             api=False),
        Case("history ?status=failed", f"/installations/{ins}/runs?status=failed", api=False),
        Case("history ?status=interrupted", f"/installations/{ins}/runs?status=interrupted",
             api=False),
        Case("history ?status=running", f"/installations/{ins}/runs?status=running", api=False),
        Case(f"history ?action={common}", f"/installations/{ins}/runs?action={common}",
             api=False),
        Case(f"history ?action={bench.rare_action} (rarest)",
             f"/installations/{ins}/runs?action={bench.rare_action}", api=False),
        Case("history ?action&status=failed",
             f"/installations/{ins}/runs?action={common}&status=failed", api=False),
        Case("history ?action(rarest)&status=interrupted",
             f"/installations/{ins}/runs?action={bench.rare_action}&status=interrupted",
             api=False),
        Case("run page", f"/runs/{run}", api=False),
        Case("API run", f"/api/v1/runs/{run}"),
        Case("API runs", "/api/v1/runs"),
        Case("API runs, 5th page of 200", f"/api/v1/runs?installation={ins}&limit=200"
                                          f"&cursor={deep}"),
        Case("API ?installation", f"/api/v1/runs?installation={ins}"),
        Case("API ?installation (smallest)", f"/api/v1/runs?installation={small}"),
        Case("API ?installation (no runs yet)", f"/api/v1/runs?installation={fresh}"),
        Case("API ?status=failed", "/api/v1/runs?status=failed"),
        Case("API ?status=interrupted", "/api/v1/runs?status=interrupted"),
        Case("API ?kind=auth", "/api/v1/runs?kind=auth"),
        Case("API ?installation&status=interrupted",
             f"/api/v1/runs?installation={ins}&status=interrupted"),
        Case("API ?installation&kind=source", f"/api/v1/runs?installation={ins}&kind=source"),
        Case("API ?installation&kind=auth&status=failed",
             f"/api/v1/runs?installation={ins}&kind=auth&status=failed"),
        Case("API ?status=running", "/api/v1/runs?status=running"),
    ]


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def time_case(bench: Bench, case: Case, reps: int, budget: float) -> list[float]:
    headers = {"Authorization": f"Bearer {bench.token}"} if case.api else {}
    timings: list[float] = []
    began = time.monotonic()
    for attempt in range(reps + 2):
        started = time.perf_counter()
        response = bench.browser.get(case.path, headers=headers)
        elapsed = (time.perf_counter() - started) * 1000
        assert response.status_code == 200, (case.path, response.status_code)
        if attempt >= 2:  # the first two warm the caches
            timings.append(elapsed)
        if len(timings) >= 5 and time.monotonic() - began > budget:
            break
    return timings


def watch_statements(bench: Bench) -> Callable[[], None]:
    """Collect the statements the engine runs until the returned function is called."""
    def before(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any,
               executemany: bool) -> None:
        bench.statements.append((statement, parameters))

    event.listen(bench.engine, "before_cursor_execute", before)
    return lambda: event.remove(bench.engine, "before_cursor_execute", before)


def explain(bench: Bench, statement: str, parameters: Any) -> str:
    prefix = ("EXPLAIN (ANALYZE, BUFFERS) " if bench.engine.dialect.name == "postgresql"
              else "EXPLAIN QUERY PLAN ")
    with bench.engine.connect() as connection:
        rows = connection.exec_driver_sql(prefix + statement, parameters).all()
    if bench.engine.dialect.name == "postgresql":
        return "\n".join(f"      {row[0]}" for row in rows)
    return "\n".join(f"      {row[-1]}" for row in rows)


def time_pages(bench: Bench, reps: int, budget: float, show_plans: bool) -> list[bool]:
    met = []
    print(f"\n{'page or list':<46}{'p50 ms':>9}{'p95 ms':>9}  goal: p95 < {GOAL_MS:g} ms")
    for case in cases(bench):
        timings = time_case(bench, case, reps, budget)
        p50, p95 = statistics.median(timings), percentile(timings, 0.95)
        ok = p95 < GOAL_MS
        met.append(ok)
        print(f"{case.label:<46}{p50:9.1f}{p95:9.1f}  {'met' if ok else 'MISSED'}"
              f"  ({len(timings)} requests)")
        if show_plans:
            bench.statements.clear()
            stop = watch_statements(bench)
            try:
                time_case(bench, case, 1, 0)
            finally:
                stop()
            shown = set()
            for statement, parameters in bench.statements:
                if not re.search(r"\bFROM (run|action_usage)\b", statement) or \
                        statement in shown:
                    continue
                shown.add(statement)
                print(f"    {' '.join(statement.split())[:150]}")
                print(explain(bench, statement, parameters))
    return met


# -- writes and the purge ----------------------------------------------------------------


class Writer(threading.Thread):
    """Records sandbox runs through host.execution, as an action does, and keeps the
    time each took: the write waits are in there."""

    def __init__(self, bench: Bench) -> None:
        super().__init__(daemon=True)
        from host.execution import Step
        from host.services.installations import manifest_of

        self.bench = bench
        self.stop = threading.Event()
        self.timings: list[float] = []
        with get_database(bench.app).sessions() as db:
            installation = db.get(Installation, bench.busiest.id)
            manifest = manifest_of(bench.app, db, installation)
            db.expunge_all()
        action = manifest.actions[0]
        self.step = Step(installation=installation, manifest=manifest,
                         requests=action.requests, kind="action", name=action.name,
                         actor="bench", credentials={}, sandbox=True)

    def record(self) -> float:
        from host.execution import run_step

        started = time.perf_counter()
        run_step(self.bench.app, self.step)
        return (time.perf_counter() - started) * 1000

    def run(self) -> None:
        while not self.stop.is_set():
            self.timings.append(self.record())
            time.sleep(0.002)


def time_writes(bench: Bench, count: int) -> None:
    writer = Writer(bench)
    for _ in range(20):
        writer.record()
    timings = [writer.record() for _ in range(count)]
    print(f"\nrecording a run (sandbox, insert + finish, one thread, {count} runs): "
          f"p50 {statistics.median(timings):.2f} ms, p95 {percentile(timings, 0.95):.2f} ms")


def time_purge(bench: Bench, retention: int) -> bool | None:
    try:
        from host.services import retention as purging
    except ImportError:
        print("\npurge: this tree has none")
        return None
    bench.app.config["RUN_RETENTION_DAYS"] = retention
    quiet = Writer(bench)
    quiet.start()
    time.sleep(3)
    quiet.stop.set()
    quiet.join()
    with bench.engine.connect() as connection:
        before = connection.execute(text("SELECT count(*) FROM run")).scalar_one()
    writer = Writer(bench)
    writer.start()
    began = time.perf_counter()
    report = purging.purge_runs(bench.app)
    took = time.perf_counter() - began
    writer.stop.set()
    writer.join()
    with bench.engine.connect() as connection:
        after = connection.execute(text("SELECT count(*) FROM run")).scalar_one()
    longest = max(writer.timings)
    print(f"\npurge (RUN_RETENTION_DAYS={retention}): {report.runs:,} runs in "
          f"{report.batches:,} batches, {took:.1f} s ({report.runs / took:,.0f} runs/s); "
          f"longest batch {report.longest_ms:.1f} ms; rows {before:,} -> {after:,} "
          f"(the writer's included)")
    print(f"  a writer recording runs meanwhile: {len(writer.timings):,} runs, p50 "
          f"{statistics.median(writer.timings):.2f} ms, p99 "
          f"{percentile(writer.timings, 0.99):.1f} ms, longest {longest:.1f} ms "
          f"(alone, for 3 s: longest {max(quiet.timings):.1f} ms)  goal: < "
          f"{WRITE_GOAL_MS:g} ms  {'met' if longest < WRITE_GOAL_MS else 'MISSED'}")
    return longest < WRITE_GOAL_MS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--runs", type=int, help="default: 1,000,000 on SQLite, "
                                                 "10,000,000 on PostgreSQL")
    parser.add_argument("--postgres-url",
                        default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--days", type=float, default=95, help="the runs' time span")
    parser.add_argument("--retention", type=int, default=90,
                        help="RUN_RETENTION_DAYS for the purge (0: no purge)")
    parser.add_argument("--reps", type=int, default=40)
    parser.add_argument("--budget", type=float, default=10,
                        help="seconds at most per case (at least 5 requests)")
    parser.add_argument("--explain", action="store_true")
    parser.add_argument("--purge-only", action="store_true",
                        help="fill, then time the purge alone")
    parser.add_argument("--keep", action="store_true", help="keep the PostgreSQL database")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    runs = args.runs or (10_000_000 if args.database == "postgresql" else 1_000_000)
    work = Path(tempfile.mkdtemp(prefix="minihost-bench-history-"))
    try:
        with (postgres_database(args.postgres_url, args.keep) if args.database == "postgresql"
              else _sqlite(work)) as url:
            bench = prepare(url, work, runs, args.days, args.seed)
            met = [] if args.purge_only else time_pages(bench, args.reps, args.budget,
                                                        args.explain)
            time_writes(bench, 300)
            purged = time_purge(bench, args.retention) if args.retention else None
            bench.engine.dispose()
        print(f"\npages and lists: {sum(met)} of {len(met)} meet p95 < {GOAL_MS:g} ms"
              + ("" if purged is None else
                 f"; purge writer wait goal {'met' if purged else 'MISSED'}"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if not all(met) or purged is False:
        sys.exit(1)


@contextmanager
def _sqlite(work: Path) -> Iterator[str]:
    yield f"sqlite:///{work / 'minihost.db'}"


if __name__ == "__main__":
    main()
