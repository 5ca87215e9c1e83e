"""Run retention: finished runs older than ``RUN_RETENTION_DAYS`` are purged, with
their traces (which live in the run's row), so the history stays as long as the
operator chose and the database does not grow for ever. ``0`` keeps every run.

Every run in the history counts — action runs, dropdown source loads and auth steps
(flow runs have a retention of their own) — except those still running. A run's age
is its id's: ids begin with their creation time, so "older than the cutoff" is a
range of the primary key, needing no index of its own.

The purge must never stall the runs being recorded meanwhile. It deletes in small
batches, each its own short transaction, sized so that one takes about
``BATCH_TARGET_MS`` (the size adapts to what the last batch took) and followed by a
pause at least as long as the batch. On SQLite, where a batch holds the one write
lock, a writer of this process waits at most one batch; a writer of another process
sleeps in SQLite's busy handler, whose retries are at most 20 ms apart for its first
50 ms, so it lands in a pause: a write waits well under 100 ms. PostgreSQL's
writers never wait on the purge (it deletes only finished rows, which nothing
writes again).

Usage counts are lifetime counts (``action_usage``), so purging leaves them as they
are: an installation's page still says how often each action ran, and when last.

Each process purges at most once every ``PURGE_SECONDS``, in a background thread
started by the first action run or history read after that; one process at a time
(the others skip, finding the lock held). ``minihost runs purge`` purges on demand.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from flask import Flask
from sqlalchemy import Table, delete, func, select

from ..db import Run, changed, exclusive, first_id_at, get_database, utcnow

__all__ = ["PURGE_SECONDS", "Purged", "purge_now", "purge_runs", "purge_soon"]

logger = logging.getLogger(__name__)

PURGE_SECONDS = 600.0
BATCH_TARGET_MS = 20.0
FIRST_BATCH, SMALLEST_BATCH, LARGEST_BATCH = 100, 10, 2000
PAUSE_MS = 25.0  # at least; SQLite's busy handler retries 20-25 ms apart after 30 ms
LOCK_NAME = "run-purge"

_RUN = cast(Table, Run.__table__)
_PURGE_STARTED = "minihost.runs_purge_started_at"


@dataclass(frozen=True, slots=True)
class Purged:
    """What a purge did: ``runs`` deleted in ``batches``, the longest batch holding
    the write lock ``longest_ms``, every run started before ``cutoff``."""

    runs: int
    batches: int
    longest_ms: float
    cutoff: datetime | None


def purge_runs(app: Flask, *, now: datetime | None = None,
               stop: threading.Event | None = None) -> Purged:
    """Delete every finished run older than ``RUN_RETENTION_DAYS`` (nothing when it is
    0), batch after batch, until none is left or ``stop`` is set."""
    days = int(app.config["RUN_RETENTION_DAYS"])
    if not days:
        return Purged(0, 0, 0.0, None)
    cutoff = (now or utcnow()) - timedelta(days=days)
    bound = first_id_at("run", cutoff)
    database = get_database(app)
    after, size = "", FIRST_BATCH
    purged = batches = 0
    longest = 0.0
    while stop is None or not stop.is_set():
        # The batch's end is chosen outside the write lock (SQLite readers do not block
        # writers); the batch is then the range of ids up to it, two parameters in all.
        with database.engine.connect() as connection:
            batch = (select(_RUN.c.id).where(_RUN.c.id > after, _RUN.c.id < bound,
                                             _RUN.c.status != "running")
                     .order_by(_RUN.c.id).limit(size).subquery())
            last = connection.scalar(select(func.max(batch.c.id)))
        if last is None:
            break
        with database.write() as connection:
            began = time.perf_counter()
            purged += changed(connection.execute(
                delete(_RUN).where(_RUN.c.id > after, _RUN.c.id <= last,
                                   _RUN.c.status != "running")))
        took = (time.perf_counter() - began) * 1000  # the commit included
        batches += 1
        longest = max(longest, took)
        after = last
        size = next_batch_size(size, took)
        time.sleep(max(PAUSE_MS, took) / 1000)
    return Purged(purged, batches, longest, cutoff)


def next_batch_size(size: int, took_ms: float) -> int:
    """The size whose batch should take ``BATCH_TARGET_MS``, given that ``size`` took
    ``took_ms``: at most double, so one fast batch cannot overshoot."""
    scaled = size * min(2.0, BATCH_TARGET_MS / max(took_ms, 0.1))
    return max(SMALLEST_BATCH, min(LARGEST_BATCH, int(scaled)))


def purge_now(app: Flask) -> Purged:
    """Purge in this thread (``minihost runs purge``), after any purge another process
    is doing."""
    with exclusive(app, LOCK_NAME):
        return purge_runs(app)


def purge_soon(app: Flask, every: float = PURGE_SECONDS) -> bool:
    """Start a purge in a background thread unless this process started one less than
    ``every`` seconds ago (or retention is off); returns whether it started one.
    Called on the paths that read or write runs, so a busy process purges as it goes
    and a request never waits for it."""
    if not app.config["RUN_RETENTION_DAYS"]:
        return False
    now = time.monotonic()
    if now - app.extensions.get(_PURGE_STARTED, float("-inf")) < every:
        return False
    app.extensions[_PURGE_STARTED] = now
    threading.Thread(target=_purge_in_background, args=(app,), name="minihost-run-purge",
                     daemon=True).start()
    return True


def _purge_in_background(app: Flask) -> None:
    try:
        with exclusive(app, LOCK_NAME, wait=False) as held:
            if not held:
                return  # another process is purging
            report = purge_runs(app)
    except Exception:
        logger.exception("purging runs older than RUN_RETENTION_DAYS failed; "
                         "it is tried again in %d minutes", PURGE_SECONDS // 60)
        return
    if report.runs:
        logger.info("purged %d runs started before %s (RUN_RETENTION_DAYS=%s)", report.runs,
                    report.cutoff.isoformat() if report.cutoff else "-",
                    app.config["RUN_RETENTION_DAYS"])
