"""Schedule triggers (FLOWS.md §4): the timer that fires each tick once across every
process, and what a flow's ticks were.

Every process with an executor looks every two seconds for schedules whose next tick
has come (an indexed read). A tick that fires is written in the same transaction as
the run it starts, under a unique ``(flow, trigger, fire_at)`` key: of two processes
firing the same tick, the second's transaction fails on that key and starts
nothing. Skipped, missed and failed ticks are recorded under the same key. Only then
does the schedule's next tick move on, by compare-and-set, so a process that dies
in between leaves the tick to be looked at again — and found already fired.

``now`` comes from :func:`host.services.flows.clock`, which tests replace (in
``app.extensions``) to walk a schedule across a daylight-saving change without
waiting for one.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, cast

from flask import Flask
from sqlalchemy import Table, insert, select, update
from sqlalchemy.exc import IntegrityError

from ..db import (
    Flow,
    FlowRun,
    FlowSchedule,
    Prepared,
    RawCursor,
    ScheduleTick,
    get_database,
    insert_ignoring,
    new_id,
    utcnow,
)
from ..errors import MinihostError
from ..flows.schedule import Plan, Schedule, parse_schedule, plan_ticks
from . import flow_runs
from . import flows as flow_service
from .flows import FlowHead

__all__ = ["fire_due"]

logger = logging.getLogger(__name__)

BATCH = 100
UNFINISHED = ("queued", "running")


def fire_due(app: Flask) -> int:
    """Handle every schedule whose next tick has come; how many runs it started."""
    now = flow_service.clock(app)
    database = get_database(app)
    with database.sessions() as db:
        due = db.execute(
            select(FlowSchedule, Flow.workspace_id, Flow.key, Flow.version, Flow.enabled)
            .join(Flow, Flow.id == FlowSchedule.flow_id)
            .where(Flow.enabled.is_(True), FlowSchedule.next_fire_at <= now)
            .order_by(FlowSchedule.next_fire_at).limit(BATCH)).all()
        db.expunge_all()
    started = 0
    for row, workspace_id, key, version, enabled in due:
        try:
            started += _handle(app, row, FlowHead(row.flow_id, key, version, enabled),
                               workspace_id, now)
        except Exception:
            logger.exception("the schedule %s of flow %s could not be handled; it is looked "
                             "at again shortly", row.trigger, key)
    return started


def _handle(app: Flask, row: FlowSchedule, flow: FlowHead, workspace_id: str,
            now: datetime) -> int:
    database = get_database(app)
    problem = None
    schedule = parse_schedule(row.trigger, {"cron": row.cron, "timezone": row.timezone})
    with database.sessions() as db:
        try:
            compiled = flow_service.compiled(app, db, workspace_id, flow.id, flow.version,
                                             check=False)
        except MinihostError as error:  # the document no longer compiles: say so per tick
            problem = str(error)
        else:
            found = next((s for s in compiled.schedules if s.index == row.trigger), None)
            if found is None or (found.cron, found.timezone) != (row.cron, row.timezone):
                return 0  # a new version is being saved; its rows are looked at next time
            schedule = found
        last_status = None if row.last_run_id is None else db.execute(
            select(FlowRun.status).where(FlowRun.id == row.last_run_id)).scalar_one_or_none()
    plan = plan_ticks(schedule, row.next_fire_at, now)
    started, last_run = 0, row.last_run_id
    for fire_at in plan.fire:
        if problem is not None:
            _record(app, flow.id, schedule, fire_at, "failed", {"reason": problem})
        elif schedule.overlap == "skip" and last_status in UNFINISHED:
            _record(app, flow.id, schedule, fire_at, "skipped",
                    {"reason": f"the run {last_run} was still going (overlap: skip)"})
        elif (run_id := _fire(app, flow, workspace_id, schedule, fire_at)) is not None:
            started += 1
            last_run, last_status = run_id, "running"
    _record_missed(app, flow.id, schedule, plan)
    with database.transaction() as db:
        db.execute(update(FlowSchedule).where(
            FlowSchedule.id == row.id, FlowSchedule.next_fire_at == row.next_fire_at)
            .values(next_fire_at=plan.next_at, last_run_id=last_run))
    return started


def _fire(app: Flask, flow: FlowHead, workspace_id: str, schedule: Schedule,
          fire_at: datetime) -> str | None:
    """Start the tick's run with its tick row; None when another process fired it or
    the run could not start (then recorded as failed)."""
    statement = _tick_insert(app)

    def claim(cursor: RawCursor, run_id: str) -> None:
        cursor.execute(statement, _tick_values(flow.id, schedule, fire_at, "fired", run_id, {}))

    trigger = {"type": "schedule", "index": schedule.index, "cron": schedule.cron,
               "timezone": schedule.timezone}
    database = get_database(app)
    try:
        with database.sessions() as db:
            started = flow_runs.start_triggered(
                app, db, workspace_id, None, flow, schedule.input, trigger=trigger,
                scheduled_for=fire_at, claim=claim)
    except IntegrityError:
        return None
    except database.engine.dialect.loaded_dbapi.IntegrityError:
        return None  # fired by another process: its tick row holds the key
    except MinihostError as error:
        _record(app, flow.id, schedule, fire_at, "failed", {"reason": str(error)})
        return None
    return started.run.id


def _record(app: Flask, flow_id: str, schedule: Schedule, fire_at: datetime, status: str,
            detail: dict[str, Any]) -> None:
    with get_database(app).raw() as cursor:
        cursor.execute(_tick_insert(app, ignore=True),
                       _tick_values(flow_id, schedule, fire_at, status, None, detail))


def _record_missed(app: Flask, flow_id: str, schedule: Schedule, plan: Plan) -> None:
    if not plan.missed:
        return
    reason = "nothing was running at that time"
    rows = [_tick_values(flow_id, schedule, at, "missed", None, {"reason": reason})
            for at in plan.missed]
    if plan.more_missed:
        rows[-1]["detail"] = {"reason": reason, "alsoMissed": plan.more_missed}
    with get_database(app).raw() as cursor:
        cursor.execute_many(_tick_insert(app, ignore=True), rows)


def _tick_values(flow_id: str, schedule: Schedule, fire_at: datetime, status: str,
                 run_id: str | None, detail: dict[str, Any]) -> dict[str, Any]:
    return {"id": new_id("tik"), "flow_id": flow_id, "trigger": schedule.index,
            "fire_at": fire_at, "status": status, "flow_run_id": run_id, "detail": detail,
            "created_at": utcnow()}


_COLUMNS = ("id", "flow_id", "trigger", "fire_at", "status", "flow_run_id", "detail",
            "created_at")


def _tick_insert(app: Flask, ignore: bool = False) -> Prepared:
    key = f"minihost.tick_insert.{ignore}"
    found: Prepared | None = app.extensions.get(key)
    if found is None:
        dialect = get_database(app).engine.dialect
        table = cast(Table, ScheduleTick.__table__)
        statement = insert_ignoring(table, dialect) if ignore else insert(table)
        types = {column.key: column.type for column in table.columns}
        found = app.extensions.setdefault(key, Prepared(statement, dialect, _COLUMNS, types))
    return found
