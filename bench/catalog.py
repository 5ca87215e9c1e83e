"""The catalog at scale: sync, validate, the marketplace's first page and a search.

Generates N mini-apps (default 1,000) from the bundled ones in ``miniapps/``, each
copied under a unique name and title into a temporary folder, then times, in
this process and against a SQLite file (or a scratch PostgreSQL database, ``--postgres``):

* a cold ``catalog sync`` (empty database), and an unchanged one run by a fresh
  application, as a new ``minihost catalog sync`` process would;
* ``minihost validate`` of every generated folder (the command, in-process);
* in a new process, as a new worker: building the application (start-up), its
  first ``GET /`` (and how much of it reading the listing takes), a second
  ``GET /``, a search and a later page, all server time through the Flask test
  client.

Each figure is printed against its goal (issue 15). ``--profile STEP`` prints the
top cProfile entries of one step instead of timing them all::

    .venv/bin/python bench/catalog.py [--count 1000] [--postgres URL]
    .venv/bin/python bench/catalog.py --profile cold|unchanged|validate|page
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from host import create_app  # noqa: E402
from host.cli import cli  # noqa: E402
from host.db import get_database  # noqa: E402
from host.services import catalog  # noqa: E402
from host.services import instance as instance_service  # noqa: E402

GOALS = {
    "cold sync": 10.0,
    "unchanged sync": 1.0,
    "first GET / (new app)": 0.1,
    "GET / again": 0.1,
    "search GET /?q=": 0.1,
    "GET /?page=40": 0.1,
}
WORDS = ("issues", "invoices", "messages", "contacts", "rows", "tasks", "events", "files")


def generate(target: Path, count: int) -> list[Path]:
    """``count`` mini-app folders copied round-robin from the bundled ones, each with a
    unique name and title and a description that varies, so search has work to do."""
    sources = sorted(p for p in (REPO / "miniapps").iterdir() if (p / "manifest.json").is_file())
    target.mkdir(parents=True)
    made = []
    for index in range(count):
        source = sources[index % len(sources)]
        doc = json.loads((source / "manifest.json").read_text("utf-8"))
        folder = target / f"{doc['name']}-{index:04d}"
        shutil.copytree(source, folder)
        doc["name"] = folder.name
        doc["title"] = f"{doc['title']} {index}"
        doc["description"] = f"{doc['description']} Syncs {WORDS[index % len(WORDS)]}."
        (folder / "manifest.json").write_text(json.dumps(doc, indent=2), "utf-8")
        made.append(folder)
    return made


def make_app(work: Path, folder: Path, database: str) -> Any:
    return create_app({
        "DATABASE_URL": database,
        "SECRET_KEY": "bench",
        "VAULT_KEYS": [Fernet.generate_key().decode()],
        "MINIAPPS_DIRS": [str(folder)],
    }, instance_path=work / "instance")


def timed(step: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = step()
    return time.perf_counter() - start, result


def get(client: Any, url: str) -> int:
    response = client.get(url)
    assert response.status_code == 200, response.status_code
    return len(response.data)


def profiled(step: Callable[[], Any], top: int) -> None:
    profile = cProfile.Profile()
    profile.enable()
    step()
    profile.disable()
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("cumulative").print_stats(top)
    print(out.getvalue())
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(top)
    print(out.getvalue())


@contextmanager
def scratch_database(url: str | None, work: Path) -> Iterator[str]:
    """A new SQLite file, or a new database on the PostgreSQL server ``url`` names
    (dropped afterwards), so a run never touches anyone's data."""
    if not url:
        yield f"sqlite:///{work / 'minihost.db'}"
        return
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    name = f"minihost_bench_{secrets.token_hex(4)}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def new_process(database: str, work: Path, folder: Path) -> None:
    """Start-up and pages of a new application in this (new) process, as JSON."""
    figures: dict[str, float] = {}
    figures["start-up (create_app)"], started = timed(lambda: make_app(work, folder, database))
    client = started.test_client()
    figures["first GET / (new app)"], size = timed(lambda: get(client, "/"))
    other = make_app(work, folder, database)
    with other.app_context(), get_database(other).sessions() as db:
        db.execute(text("SELECT 1"))  # connected, as the page's request was
        figures["  of which the listing"], _ = timed(
            lambda: catalog.get_catalog(other).snapshot(db))
    figures["GET / again"], size = timed(lambda: get(client, "/"))
    figures["search GET /?q="], _ = timed(lambda: get(client, "/?q=invoices+stripe"))
    figures["GET /?page=40"], _ = timed(lambda: get(client, "/?page=40"))
    print(json.dumps({**figures, "size": size}))


def main() -> None:
    if sys.argv[1:2] == ["--new-process"]:
        database, work, folder = sys.argv[2:5]
        return new_process(database, Path(work), Path(folder))
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--postgres", metavar="URL", help="run on a scratch database created "
                        "on this PostgreSQL server (default: a new SQLite file)")
    parser.add_argument("--profile", choices=("cold", "unchanged", "validate", "page"))
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="minihost-catalog-") as tmp, \
            scratch_database(args.postgres, Path(tmp)) as database:
        work = Path(tmp)
        folder = work / "miniapps"
        spent, folders = timed(lambda: generate(folder, args.count))
        print(f"generated {len(folders)} mini-apps in {spent:.1f} s under {folder}")
        app = make_app(work, folder, database)
        instance_service.prepare(app)

        figures: dict[str, float] = {}
        if args.profile == "cold":
            return profiled(lambda: catalog.sync(app), args.top)
        spent, report = timed(lambda: catalog.sync(app))
        assert len(report.added) == args.count and not report.refused, report.refused[:3]
        figures["cold sync"] = spent
        get_database(app).engine.dispose()

        fresh = make_app(work, folder, database)
        if args.profile == "unchanged":
            return profiled(lambda: catalog.sync(fresh), args.top)
        spent, report = timed(lambda: catalog.sync(fresh))
        assert report.unchanged == args.count and not report.changed, report
        figures["unchanged sync"] = spent
        get_database(fresh).engine.dispose()

        runner = make_app(work, folder, database).test_cli_runner()
        command = ["validate", *map(str, folders)]
        if args.profile == "validate":
            return profiled(lambda: runner.invoke(cli, command), args.top)
        spent, result = timed(lambda: runner.invoke(cli, command))
        assert result.exit_code == 0, result.output[-2000:]
        figures["validate (all)"] = spent

        if args.profile == "page":
            client = make_app(work, folder, database).test_client()
            return profiled(lambda: get(client, "/"), args.top)
        # A new process, as a new worker is: nothing the steps above left in memory.
        answer = subprocess.run(
            [sys.executable, __file__, "--new-process", database, str(work), str(folder)],
            check=True, capture_output=True, text=True)
        page = json.loads(answer.stdout)
        size = page.pop("size")
        figures.update(page)

        print(f"\n{args.count} mini-apps, {database.split(':', 1)[0]}; "
              f"the first page is {size / 1024:.0f} KB")
        for name, seconds in figures.items():
            goal = GOALS.get(name)
            verdict = "" if goal is None else (
                f"goal < {goal * 1000:.0f} ms: " + ("met" if seconds < goal else "NOT met"))
            print(f"  {name:<26} {seconds * 1000:>9.1f} ms   {verdict}")


if __name__ == "__main__":
    main()
