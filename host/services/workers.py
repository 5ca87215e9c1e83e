"""The workers that run flow tasks (FLOWS.md §8) as an operator sees them: which
answered recently, what each is running, and what waits in the queue. One reading
for ``/healthz``, the ``/-/workers`` page and ``minihost workers list``."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Flask
from sqlalchemy import delete, select

from ..db import FlowRun, TaskRun, Worker, get_database, utcnow
from ..executor import broker

__all__ = ["ALIVE_SECONDS", "alive", "overview", "prune"]

ALIVE_SECONDS = 30  # a worker beats every 5 s: one not heard of for this long is gone
FORGET_AFTER = timedelta(days=1)


def overview(app: Flask, with_queue: bool = True) -> dict[str, Any]:
    """The broker's queue, each worker heard of in the last day (``alive`` when heard
    of recently) and the attempts it holds now."""
    if not app.config.get("CELERY_BROKER_URL"):
        return {"executor": "in-process", "queue": None, "queued": None, "workers": []}
    now = utcnow()
    with get_database(app).sessions() as db:
        rows = db.execute(select(Worker).order_by(Worker.name)).scalars().all()
        rows_running = db.execute(
            select(TaskRun.id, TaskRun.key, TaskRun.flow_run_id, TaskRun.holder,
                   TaskRun.started_at, FlowRun.flow_id)
            .join(FlowRun, FlowRun.id == TaskRun.flow_run_id)
            .where(TaskRun.status == "running", TaskRun.holder.is_not(None))).all()
    running = [(task_id, key, run_id, _label(holder or ""), started, flow_id)
               for task_id, key, run_id, holder, started, flow_id in rows_running]
    workers = []
    for row in rows:
        if now - row.seen_at > FORGET_AFTER:
            continue
        tasks = [{"taskRun": task_id, "task": key, "flowRun": run_id, "flow": flow_id,
                  "startedAt": started.isoformat() if started else None}
                 for task_id, key, run_id, label, started, flow_id in running
                 if label and row.name.startswith(label)]
        workers.append({
            "name": row.name, "hostname": row.hostname, "pid": row.pid,
            "concurrency": row.concurrency, "version": row.version,
            "startedAt": row.started_at.isoformat(), "seenAt": row.seen_at.isoformat(),
            "alive": (now - row.seen_at).total_seconds() <= ALIVE_SECONDS,
            "running": tasks})
    queued = broker.queue_depth(app) if with_queue else None
    return {"executor": "celery", "queue": app.config["CELERY_QUEUE"], "queued": queued,
            "workers": workers}


def _label(holder: str) -> str:
    """The worker a lease's holder names (``host|pid|worker``, cut at 64 characters)."""
    parts = holder.split("|", 2)
    return parts[2] if len(parts) == 3 else ""


def alive(app: Flask) -> int:
    """How many workers answered in the last ``ALIVE_SECONDS``."""
    since = utcnow() - timedelta(seconds=ALIVE_SECONDS)
    with get_database(app).sessions() as db:
        return len(db.execute(select(Worker.name).where(Worker.seen_at >= since)).all())


def prune(app: Flask) -> None:
    """Forget workers not heard of for a day."""
    with get_database(app).transaction() as db:
        db.execute(delete(Worker).where(Worker.seen_at < utcnow() - FORGET_AFTER))
