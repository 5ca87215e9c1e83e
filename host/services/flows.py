"""Flows: saving documents as versions, listing, enabling, deleting, flow tokens.

A document is linted against the saving workspace's installations (by name) and
compiled (:mod:`host.flows`); saving one that differs from the current version
makes a new version, and runs record the version they ran. The compiled form of a
version is kept per process, checked against the installations its connections
name, so starting a run does not lint the document again.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import yaml
from flask import Flask
from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .. import audit
from ..db import (
    ApiToken,
    DataSourceState,
    Flow,
    FlowEventTrigger,
    FlowRun,
    FlowSchedule,
    FlowVersion,
    Installation,
    Prepared,
    ScheduleTick,
    get_database,
    utcnow,
)
from ..errors import Conflict, FlowInvalid, FlowProblem, NotFound
from ..flows import Flow as CompiledFlow
from ..flows import compile_flow
from ..flows.schedule import Schedule, parse_schedule
from ..manifest import Manifest
from ..principal import Principal
from . import accounts, catalog
from .paging import Page, page_of

__all__ = [
    "FlowHead",
    "Saved",
    "clock",
    "compiled",
    "create_token",
    "delete_flow",
    "flow_object",
    "get_flow",
    "head",
    "list_flows",
    "parse_document",
    "recent_ticks",
    "save",
    "next_fire_times",
    "set_enabled",
]

MAX_DOCUMENT_BYTES = 1024 * 1024
CLOCK = "minihost.clock"


def clock(app: Flask) -> datetime:
    """Now, for schedules: the real time unless a test set its own clock (to walk a
    schedule across a daylight-saving change without waiting for one)."""
    found: Callable[[], datetime] | None = app.extensions.get(CLOCK)
    return found() if found is not None else utcnow()


def parse_document(body: Any) -> Any:
    """A document given as JSON text, YAML text, or already parsed JSON."""
    if not isinstance(body, (str, bytes)):
        return body
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    if len(text.encode()) > MAX_DOCUMENT_BYTES:
        raise FlowInvalid([FlowProblem("", "the document is larger than 1 MB")])
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise FlowInvalid([FlowProblem("", f"not valid JSON or YAML{where}",
                                       "check the document's syntax")]) from None


def _digest(doc: Any) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":"))
                          .encode()).hexdigest()


def connections_of(app: Flask, db: Session, workspace_id: str,
                   names: Any = None) -> tuple[dict[str, Manifest | None],
                                               dict[str, Installation]]:
    """The workspace's installations by name (only ``names`` when given), and the
    manifest each runs (None when the catalog no longer has its version)."""
    query = select(Installation).where(Installation.workspace_id == workspace_id,
                                       Installation.deleted_at.is_(None))
    if names is not None:
        query = query.where(Installation.name.in_(list(names)))
    rows = {row.name: row for row in db.execute(query).scalars() if row.name}
    snapshot = catalog.get_catalog(app).snapshot(db)
    return ({name: snapshot.get(row.miniapp, row.miniapp_version)
             for name, row in rows.items()}, rows)


def _max_budget(app: Flask) -> int:
    return int(app.config["FLOW_TIMEOUT"])


@dataclass(slots=True)
class _Cached:
    flow: CompiledFlow
    signature: tuple[tuple[str, str, str], ...]
    checked_at: float


_CACHE_SIZE = 256
CHECK_SECONDS = 1.0  # how long a start trusts the installations a version was compiled for
_cache: OrderedDict[tuple[str, int], _Cached] = OrderedDict()
_cache_lock = threading.Lock()


def _signature(rows: dict[str, Installation], names: tuple[str, ...]
               ) -> tuple[tuple[str, str, str], ...]:
    return tuple((name, rows[name].id, rows[name].miniapp_version) if name in rows
                 else (name, "", "") for name in names)


def compiled(app: Flask, db: Session, workspace_id: str, flow_id: str, number: int, *,
             check: bool = True) -> CompiledFlow:
    """The compiled version ``number`` of a flow, kept per process.

    With ``check`` (a start, a page), a compiled form older than a second is checked
    against the installations its connections name and compiled again when one was
    renamed, removed or changed version — raising :class:`FlowInvalid` when the
    document no longer passes. The executor reads without the check: a task looks
    its installation up by name as it runs, and fails with that name when it is gone."""
    key = (flow_id, number)
    now = time.monotonic()
    with _cache_lock:
        found = _cache.get(key)
        if found is not None:
            _cache.move_to_end(key)
    if found is not None:
        if not check or now - found.checked_at < CHECK_SECONDS:
            return found.flow
        _, rows = connections_of(app, db, workspace_id, found.flow.connections)
        if _signature(rows, found.flow.connections) == found.signature:
            found.checked_at = now
            return found.flow
    version = version_of(db, flow_id, number)
    connections, rows = connections_of(app, db, workspace_id)
    flow = compile_flow(version.document, connections, max_budget=_max_budget(app))
    entry = _Cached(flow, _signature(rows, flow.connections), now)
    with _cache_lock:
        _cache[key] = entry
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return flow


def check(app: Flask, connections: dict[str, Manifest | None], body: Any) -> CompiledFlow:
    """Lint and compile a document without saving it (raises :class:`FlowInvalid`)."""
    return compile_flow(parse_document(body), connections, max_budget=_max_budget(app))


@dataclass(frozen=True, slots=True)
class Saved:
    flow: Flow
    version: FlowVersion
    compiled: CompiledFlow
    created: bool
    changed: bool


def save(app: Flask, db: Session, principal: Principal, body: Any,
         key: str | None = None) -> Saved:
    """Create a flow, or save a new version of it when the document changed. With
    ``key`` (an update of that flow), the document's key must be that key or absent.
    Nothing is stored when the lint finds a problem."""
    doc = parse_document(body)
    if key is not None and isinstance(doc, dict):
        if "key" not in doc:
            doc = {"key": key, **doc}
        elif doc["key"] != key:
            raise FlowInvalid([FlowProblem("/key", f"this is the flow {key!r}; the document "
                                                   f"says {doc['key']!r}",
                                           "keep the key, or create a new flow")])
    connections, installed = connections_of(app, db, principal.workspace_id)
    flow_compiled = compile_flow(doc, connections, max_budget=_max_budget(app))
    digest = _digest(doc)
    now = utcnow()
    flow = db.execute(select(Flow).where(Flow.workspace_id == principal.workspace_id,
                                         Flow.key == flow_compiled.key)).scalar_one_or_none()
    if flow is None and key is not None:
        raise NotFound(f"no flow {key}")
    if flow is not None:
        current = current_version(db, flow)
        if current.digest == digest:
            return Saved(flow, current, flow_compiled, created=False, changed=False)
        flow.version += 1
        flow.title = flow_compiled.title
        flow.updated_at = now
        restart = not flow.enabled and flow_compiled.enabled and "enabled" in doc
        if "enabled" in doc:
            flow.enabled = flow_compiled.enabled
        created = False
    else:
        flow = Flow(workspace_id=principal.workspace_id, key=flow_compiled.key,
                    title=flow_compiled.title, enabled=flow_compiled.enabled, version=1,
                    created_by=principal.user.id, created_at=now, updated_at=now)
        db.add(flow)
        db.flush()
        created, restart = True, False
    version = FlowVersion(flow_id=flow.id, version=flow.version, document=doc, digest=digest,
                          created_by=principal.user.id, created_at=now)
    db.add(version)
    _keep_schedules(db, flow.id, flow_compiled.schedules, clock(app), restart)
    db.execute(delete(FlowEventTrigger).where(FlowEventTrigger.flow_id == flow.id))
    db.add_all(FlowEventTrigger(flow_id=flow.id, workspace_id=flow.workspace_id,
                                trigger=trigger.index, connection=trigger.connection,
                                event=trigger.event) for trigger in flow_compiled.events)
    _poll_data_sources(db, flow_compiled, connections, installed, now)
    audit.record(db, "flow_created" if created else "flow_changed", actor=principal.actor,
                 workspace_id=principal.workspace_id,
                 detail={"flow": flow.key, "version": flow.version})
    try:
        db.commit()
    except IntegrityError:  # the same key saved by another request at the same moment
        db.rollback()
        raise Conflict(f"the flow {flow_compiled.key!r} was saved by another request at the "
                       "same moment; load it and save again") from None
    return Saved(flow, version, flow_compiled, created=created, changed=True)


def current_version(db: Session, flow: Flow) -> FlowVersion:
    return version_of(db, flow.id, flow.version)


def version_of(db: Session, flow_id: str, number: int) -> FlowVersion:
    version = db.execute(select(FlowVersion).where(FlowVersion.flow_id == flow_id,
                                                   FlowVersion.version == number)
                         ).scalar_one_or_none()
    if version is None:
        raise NotFound(f"no version {number} of that flow")
    return version


_BY_KEY = select(Flow).where(Flow.workspace_id == bindparam("workspace"),
                             Flow.key == bindparam("key"))


def get_flow(db: Session, principal: Principal, key: str) -> Flow:
    """One of the workspace's flows, by key (another workspace's answers 404)."""
    flow = db.execute(_BY_KEY, {"workspace": principal.workspace_id, "key": key}
                      ).scalar_one_or_none()
    if flow is None:
        raise NotFound(f"no flow {key}")
    return flow


@dataclass(frozen=True, slots=True)
class FlowHead:
    """What starting a run needs of a flow."""

    id: str
    key: str
    version: int
    enabled: bool


_HEAD = select(Flow.id, Flow.key, Flow.version, Flow.enabled).where(
    Flow.workspace_id == bindparam("workspace"), Flow.key == bindparam("key"))


def head(app: Flask, principal: Principal, key: str) -> FlowHead:
    """:func:`get_flow` for a start, read on the driver's cursor (every start reads it;
    through the ORM the read cost more than the start's own write)."""
    statement: Prepared | None = app.extensions.get("minihost.flow_head")
    if statement is None:
        statement = app.extensions.setdefault("minihost.flow_head", Prepared(
            _HEAD, get_database(app).engine.dialect, (), {}, results=True))
    found = get_database(app).read_raw(statement, {"workspace": principal.workspace_id,
                                                   "key": key})
    if found is None:
        raise NotFound(f"no flow {key}")
    return FlowHead(*found)


def list_flows(db: Session, principal: Principal,
               page: Page | None = None) -> tuple[list[Flow], str | None]:
    query = select(Flow).where(Flow.workspace_id == principal.workspace_id)
    return page_of(db, query, Flow.id, page)


def _keep_schedules(db: Session, flow_id: str, schedules: tuple[Schedule, ...],
                    now: datetime, restart: bool = False) -> None:
    """The flow's schedule rows for a new version, in its transaction: a schedule
    whose cron and time zone did not change keeps its next tick (a missed tick is
    still caught up); a new or changed one starts from now; one removed goes.
    ``restart`` (a flow enabled again) starts every schedule from now: a disabled flow
    fires nothing, not even late."""
    rows = {row.trigger: row for row in db.execute(
        select(FlowSchedule).where(FlowSchedule.flow_id == flow_id)).scalars()}
    for schedule in schedules:
        row = rows.pop(schedule.index, None)
        if row is None:
            row = FlowSchedule(flow_id=flow_id, trigger=schedule.index)
            db.add(row)
        elif row.cron == schedule.cron and row.timezone == schedule.timezone and not restart:
            continue
        row.cron, row.timezone = schedule.cron, schedule.timezone
        row.next_fire_at = schedule.next_times(now, 1)[0]
    for row in rows.values():
        db.delete(row)


def _poll_data_sources(db: Session, flow_compiled: CompiledFlow,
                       connections: dict[str, Manifest | None],
                       installed: dict[str, Installation], now: datetime) -> None:
    """A flow waiting for a data source's changes makes that source polled (every
    ``pollSeconds``, from now: its first sync fills the records)."""
    for trigger in flow_compiled.events:
        manifest = connections.get(trigger.connection or "")
        installation = installed.get(trigger.connection or "")
        source = trigger.event.partition(".")[0]
        if manifest is None or installation is None or source not in manifest.data_sources:
            continue
        state = db.execute(select(DataSourceState).where(
            DataSourceState.installation_id == installation.id,
            DataSourceState.source == source)).scalar_one_or_none()
        if state is None:
            db.add(DataSourceState(installation_id=installation.id, source=source, records=0,
                                   next_sync_at=now))
        elif state.next_sync_at is None:
            state.next_sync_at = now


def next_fire_times(flow_compiled: CompiledFlow, now: datetime,
                    count: int = 5) -> list[tuple[int, datetime]]:
    """The next ``count`` ticks of all the flow's schedules, earliest first, each with
    its trigger's index."""
    times = sorted((instant, schedule.index) for schedule in flow_compiled.schedules
                   for instant in schedule.next_times(now, count))
    return [(index, instant) for instant, index in times[:count]]


def set_enabled(app: Flask, db: Session, principal: Principal, flow: Flow,
                enabled: bool) -> Flow:
    if flow.enabled != enabled:
        flow.enabled = enabled
        flow.updated_at = utcnow()
        if enabled:
            _keep_schedules(db, flow.id, tuple(
                parse_schedule(row.trigger, {"cron": row.cron, "timezone": row.timezone})
                for row in db.execute(select(FlowSchedule).where(
                    FlowSchedule.flow_id == flow.id)).scalars()), clock(app), True)
        audit.record(db, "flow_enabled" if enabled else "flow_disabled", actor=principal.actor,
                     workspace_id=principal.workspace_id, detail={"flow": flow.key})
        db.commit()
    return flow


def delete_flow(db: Session, principal: Principal, flow: Flow) -> None:
    """Delete a flow with its versions, runs and tokens. Refused while a run of it is
    unfinished: cancel those first (nothing is stopped behind the user's back)."""
    unfinished = db.execute(select(FlowRun.id).where(
        FlowRun.flow_id == flow.id, FlowRun.status.in_(("queued", "running"))).limit(1)).first()
    if unfinished is not None:
        raise Conflict(f"a run of {flow.key} is unfinished ({unfinished[0]}); cancel it or "
                       "wait for it to end, then delete the flow")
    db.execute(update(ApiToken).where(ApiToken.flow_id == flow.id)
               .values(revoked_at=utcnow()))
    accounts.forget_principals()
    db.execute(delete(Flow).where(Flow.id == flow.id))
    audit.record(db, "flow_deleted", actor=principal.actor, workspace_id=principal.workspace_id,
                 detail={"flow": flow.key})
    db.commit()


def create_token(db: Session, principal: Principal, flow: Flow) -> str:
    """A token that may only start ``flow``; shown once."""
    _, secret = accounts.create_flow_token(db, principal, flow.id, flow.key)
    db.commit()
    return secret


def flow_object(app: Flask, flow: Flow, version: FlowVersion,
                flow_compiled: CompiledFlow | None) -> dict[str, Any]:
    """The Flow object of FLOWS.md §10. ``inputSchema`` needs the compiled form; a
    flow that no longer lints shows ``problems`` instead."""
    base = app.config["PUBLIC_URL"]
    triggers = [dict(t) for t in version.document.get("triggers") or [{"type": "api"}]]
    now = clock(app)
    upcoming = next_fire_times(flow_compiled, now) if flow_compiled else []
    for index, trigger in enumerate(triggers):
        if trigger.get("type") == "schedule" and flow_compiled is not None:
            trigger["nextFireTimes"] = [
                _local(flow_compiled, index, at)
                for at in _schedule(flow_compiled, index).next_times(now)]
    body: dict[str, Any] = {
        "key": flow.key,
        "title": flow.title,
        "description": version.document.get("description", ""),
        "version": flow.version,
        "enabled": flow.enabled,
        "document": version.document,
        "inputSchema": dict(flow_compiled.input_schema) if flow_compiled else None,
        "triggers": triggers,
        "nextFireTimes": [_local(flow_compiled, index, at) for index, at in upcoming
                          if flow_compiled is not None],
        "recentTicks": [{"trigger": tick.trigger, "fireAt": tick.fire_at.isoformat(),
                         "status": tick.status, "run": tick.flow_run_id,
                         "detail": tick.detail} for tick in recent_ticks(app, flow.id)]
        if flow_compiled is None or flow_compiled.schedules else [],
        "endpoint": {"url": f"{base}/api/v1/flows/{flow.key}/runs", "method": "POST"},
        "createdAt": flow.created_at.isoformat(),
        "updatedAt": flow.updated_at.isoformat(),
    }
    return body


def recent_ticks(app: Flask, flow_id: str, limit: int = 10) -> list[ScheduleTick]:
    """The flow's latest schedule ticks, newest first: what fired, was skipped (a run
    still going), missed (nothing ran then) or failed to start."""
    with get_database(app).sessions() as db:
        rows = list(db.execute(select(ScheduleTick).where(ScheduleTick.flow_id == flow_id)
                               .order_by(ScheduleTick.fire_at.desc()).limit(limit)).scalars())
        db.expunge_all()
    return rows


def _schedule(flow_compiled: CompiledFlow, index: int) -> Schedule:
    return next(s for s in flow_compiled.schedules if s.index == index)


def _local(flow_compiled: CompiledFlow, index: int, at: datetime) -> str:
    """A fire time as the schedule's own wall clock shows it, with its offset."""
    return at.astimezone(_schedule(flow_compiled, index).zone).isoformat()
