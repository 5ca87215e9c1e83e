"""Flow runs (FLOWS.md §3): starting one, running its task attempts, and the control
a person has over it (cancel, retry, resolve).

The database is the runtime's memory. A run and all its task runs are committed in
one transaction before any task starts; an attempt is claimed by compare-and-set
(:mod:`host.executor`); its outcome, the successors it makes ready or skipped and,
when nothing is left, the run's own outcome commit together. Every transaction
that decides a run's tasks first writes the run's row, which makes concurrent
deciders of one run (threads, processes) take turns. An attempt is an ordinary
action run (:func:`host.execution.run_step`): trace, redaction, audit.

After a crash, a claim whose holder is gone is looked at: when the attempt's action
run row does not exist, no request was sent and the task is simply ready again;
when it exists and the action may be repeated (all ``GET``, ``idempotent``, or an
idempotency key), it is retried; otherwise the task becomes ``unknown`` and the run
waits for a person to resolve it — a side effect is never repeated silently.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from flask import Flask
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from .. import audit, executor, logs
from ..auth.refresh import Keeper
from ..db import (
    DataSourceState,
    EventRun,
    Flow,
    FlowRun,
    InboundEvent,
    Installation,
    Prepared,
    RawCursor,
    ScheduleTick,
    TaskRun,
    get_database,
    new_id,
    utcnow,
)
from ..errors import (
    Conflict,
    ConnectFailed,
    FieldError,
    MinihostError,
    NotFound,
    RateLimited,
    RequestFailed,
    UpstreamFailed,
    ValidationError,
    run_error,
)
from ..execution import Step, finish_write, run_step
from ..executor import Claim
from ..flows import MISSING, TERMINAL, TemplateError, advance, outcome, render
from ..flows import Flow as CompiledFlow
from ..flows.model import ActionCall, Task
from ..forms import validate
from ..manifest import Manifest
from ..principal import Principal
from ..processes import holder, holder_dead
from . import data_sources, flow_rows, workers
from . import flows as flow_service
from .flow_rows import RunState, TaskState
from .flows import FlowHead
from .installations import for_task, manifest_of
from .paging import Page, page_of

__all__ = [
    "MAX_OUTPUT_BYTES",
    "Started",
    "cancel",
    "flow_key",
    "get_run",
    "init_app",
    "list_runs",
    "resolve",
    "retry_run",
    "run_object",
    "start",
    "start_executor",
    "start_triggered",
    "wait_for",
]

logger = logging.getLogger(__name__)

MAX_OUTPUT_BYTES = 256 * 1024
IDEMPOTENCY_HOURS = 24
SAFE_STATUSES = frozenset({429, 502, 503, 504})
RUN_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled", "timed_out")
FINISHED_RUN = ("succeeded", "failed", "cancelled", "timed_out")
ACTION_LEASE = 60.0


def _json_size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def _error(message: str, **extra: Any) -> dict[str, Any]:
    return {"message": message, **extra}


# -- starting ------------------------------------------------------------------------------


def _validate_input(validator: Any, body: Any) -> dict[str, Any]:
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise ValidationError([FieldError("input", "must be a JSON object")])
    errors = []
    for error in sorted(validator.iter_errors(body),
                        key=lambda e: [str(p) for p in e.absolute_path]):
        field = ".".join(str(p) for p in error.absolute_path)
        if error.validator == "required":
            missing = error.message.split("'")[1] if "'" in error.message else ""
            field = f"{field}.{missing}" if field else missing
            message = "is required"
        elif error.validator == "additionalProperties":
            message = error.message.replace("Additional properties are not allowed",
                                            "unknown field(s)")
        else:
            message = error.message
        errors.append(FieldError(field or "input", message))
    if errors:
        raise ValidationError(errors)
    return body


def start(app: Flask, db: Session, principal: Principal, flow: Flow | FlowHead, body: Any, *,
          sandbox: bool = False, idempotency_key: str | None = None,
          trigger: Mapping[str, Any] | None = None) -> Started:
    """Start a run of ``flow``'s current version: the input checked against its input
    schema (nothing started when it fails), the run and its task runs committed in one
    transaction, the first tasks ready. Returns the run, its task runs as committed
    (None when it is not new: the same ``idempotency_key`` started it within 24
    hours)."""
    if principal.flow_id is not None and principal.flow_id != flow.id:
        raise NotFound(f"no flow {flow.key}")
    return start_triggered(app, db, principal.workspace_id, principal.user.id, flow, body,
                           sandbox=sandbox, idempotency_key=idempotency_key, trigger=trigger)


def start_triggered(app: Flask, db: Session, workspace_id: str, actor_id: str | None,
                    flow: Flow | FlowHead, body: Any, *, sandbox: bool = False,
                    idempotency_key: str | None = None,
                    trigger: Mapping[str, Any] | None = None,
                    scheduled_for: datetime | None = None,
                    claim: Callable[[RawCursor, str], None] | None = None) -> Started:
    """:func:`start` for a trigger (a schedule, an event) rather than a caller.
    ``claim`` writes, in the run's own transaction, the row that makes this start
    happen once (a schedule's tick, an event's run): it gets the new run's id, and when
    it conflicts with another process's row, nothing is started (the database's
    IntegrityError is raised)."""
    if not flow.enabled:
        raise Conflict(f"the flow {flow.key} is disabled; enable it to start runs "
                       f"(POST /api/v1/flows/{flow.key}/enable)")
    if idempotency_key is not None:
        if not 1 <= len(idempotency_key) <= 255:
            raise ValidationError([FieldError("Idempotency-Key", "must be 1 to 255 characters")])
        found = _by_idempotency_key(db, flow.id, idempotency_key)
        if found is not None:
            return Started(found, None)
    compiled = flow_service.compiled(app, db, workspace_id, flow.id, flow.version)
    values = _validate_input(compiled.input_validator, body)
    now = utcnow()
    run = RunState(id=new_id("frn"), workspace_id=workspace_id, flow_id=flow.id,
                  version=flow.version, status="running",
                  trigger=dict(trigger or {"type": "api"}), input=values, output=None,
                  error=None, sandbox=sandbox, idempotency_key=idempotency_key,
                  actor_id=actor_id, created_at=now, started_at=now,
                  finished_at=None, updated_at=now, scheduled_for=scheduled_for,
                  deadline=now + timedelta(seconds=compiled.budget_seconds))
    tasks = [_new_task(run.id, key, new_id("idk").lower()) for key in compiled.order]
    created: list[TaskState] = []
    _decide(run, compiled, {row.key: row for row in tasks}, now, created)
    loaded = flow_rows.Loaded(run, tasks, new=True)
    db.commit()  # the caller's reads end here; the run's writes are one transaction
    database = get_database(app)
    pool, reserved = executor.reserve(app, len(_made_ready(loaded, created, now)))
    claims: list[Claim] = []
    try:
        with database.raw() as cursor:
            if claim is not None:
                claim(cursor, run.id)
            taken = _claim(loaded, created, now, reserved, executor.sender(app) is not None)
            flow_rows.write(cursor, flow_rows.statements(app), loaded, created)
            loaded.tasks.extend(created)  # the items belong to the run's tasks from now on
        claims = taken  # committed: now they are this process's
    except database.engine.dialect.loaded_dbapi.IntegrityError:
        if idempotency_key is None:
            raise
        found = _by_idempotency_key(db, flow.id, idempotency_key)
        if found is None:
            raise
        return Started(found, None)
    finally:
        _hand_over(app, pool, reserved, claims, loaded, created)
    return Started(run, sorted(loaded.tasks, key=lambda row: row.id))


def _new_task(run_id: str, key: str, idempotency_key: str, item: int = -1,
              status: str = "pending", ready_at: datetime | None = None,
              input: Any = None) -> TaskState:
    """A task run as it is first written (every column given: it is inserted as is)."""
    return TaskState(id=new_id("tsk"), flow_run_id=run_id, key=key, item=item, status=status,
                   attempt=0, ready_at=ready_at, started_at=None, finished_at=None,
                   input=input, output=None, error=None, runs=[],
                   idempotency_key=idempotency_key, holder=None, lease_expires_at=None,
                   current_run=None)


def _made_ready(loaded: flow_rows.Loaded, created: list[TaskState],
                now: datetime) -> list[TaskState]:
    """The tasks this transaction made ready to run now. (Those ready before it may be
    being claimed by another process, which takes no turn on the run's row: they are
    left to the compare-and-set claim.)"""
    return [row for row in (*loaded.tasks, *created)
            if row.status == "ready" and row.ready_at is not None and row.ready_at <= now
            and not loaded.was_ready(row)]


def _claim(loaded: flow_rows.Loaded, created: list[TaskState], now: datetime,
           capacity: int, remote: bool = False) -> list[Claim]:
    """Claim up to ``capacity`` of the tasks this transaction made ready, in the rows
    it is about to write: no other process can have seen them. With ``remote`` (a
    broker), mark every one sent instead: the claims returned are to be sent after the
    commit, and a worker claims each."""
    claims: list[Claim] = []
    if loaded.run.status != "running":
        return claims
    if remote:
        name, lease = executor.mark_sent(now)
        for row in _made_ready(loaded, created, now):
            row.holder, row.lease_expires_at = name, lease
            claims.append(Claim(row.id, row.attempt, "", row.flow_run_id))
        return claims
    if capacity <= 0:
        return claims
    # A claim handed over may wait in this process's queue for one task's length first.
    name, lease = holder(), executor.lease_until(now, 2 * ACTION_LEASE)
    for row in _made_ready(loaded, created, now)[:capacity]:
        row.status, row.attempt, row.holder = "running", row.attempt + 1, name
        row.lease_expires_at, row.started_at = lease, now
        row.current_run = new_id("run")
        claims.append(Claim(row.id, row.attempt, row.current_run, context=loaded))
    return claims


def _hand_over(app: Flask, pool: executor.Executor | None, reserved: int, claims: list[Claim],
               loaded: flow_rows.Loaded, created: list[TaskState]) -> None:
    """After the commit: the claims to the threads reserved for them (none when the
    transaction failed), the rest of the reservation back, and a wake-up when work
    is ready that no thread here took. With a broker, the claims are messages to
    send."""
    remote = executor.sender(app)
    if remote is not None:
        executor.send(app, remote, [(c.task_run_id, c.attempt, c.flow_run_id or "")
                                    for c in claims])
        return
    if pool is not None:
        pool.release(reserved - len(claims))
        if claims:
            pool.hand_over(claims)
    if any(row.status == "ready" for row in (*loaded.tasks, *created)):
        executor.wake(app)


@dataclass(frozen=True, slots=True)
class Started:
    run: FlowRun | RunState
    tasks: list[TaskState] | None  # as committed; None for a run started before


def _by_idempotency_key(db: Session, flow_id: str, key: str) -> FlowRun | None:
    since = utcnow() - timedelta(hours=IDEMPOTENCY_HOURS)
    return db.execute(select(FlowRun).where(FlowRun.flow_id == flow_id,
                                            FlowRun.idempotency_key == key,
                                            FlowRun.created_at > since)).scalar_one_or_none()


# -- deciding the tasks --------------------------------------------------------------------


def _scope(run: RunState, compiled: CompiledFlow, rows: Mapping[str, TaskState]) -> dict[str, Any]:
    return {
        "input": run.input or {},
        "tasks": {key: {"output": row.output, "status": row.status,
                        "error": (row.error or {}).get("message")}
                  for key, row in rows.items()},
        "run": {"id": run.id, "startedAt": (run.started_at or run.created_at).isoformat()},
        "flow": {"key": compiled.key, "title": compiled.title},
    }


def _finish_row(row: TaskState, status: str, now: datetime, output: Any = None,
                error: dict[str, Any] | None = None) -> None:
    row.status, row.output, row.error = status, output, error
    row.finished_at = now
    row.holder, row.lease_expires_at = None, None


def _check_output(output: Any) -> dict[str, Any] | None:
    size = _json_size(output)
    if size > MAX_OUTPUT_BYTES:
        return _error(f"the task's output is {size // 1024} KB, over the limit of "
                      f"{MAX_OUTPUT_BYTES // 1024} KB a task may keep; map fewer fields "
                      "into it, or page the list")
    return None


def _decide(run: RunState, compiled: CompiledFlow, rows: dict[str, TaskState], now: datetime,
            created: list[TaskState]) -> None:
    """Make every task whose needs now decide it ready or skipped (maps and forEach
    expansions happen here, at once; a forEach's item rows go into ``created``), then
    finish the run when nothing is left."""
    while run.status == "running":
        statuses = {key: row.status for key, row in rows.items()}
        decided = advance(compiled, statuses, _scope(run, compiled, rows))
        if not decided:
            break
        for key, state in decided.items():
            row, task = rows[key], compiled.tasks[key]
            if state == "skipped":
                _finish_row(row, "skipped", now)
            elif task.kind == "map":
                _run_map(row, task.map, _scope(run, compiled, rows), now)
            elif task.kind == "forEach":
                _expand(run, compiled, task, row, rows, now, created)
            elif task.kind == "wait":
                row.status, row.ready_at = "ready", _wait_until(task, run, compiled, rows, now)
            else:
                row.status, row.ready_at = "ready", now
    _conclude(run, compiled, rows, now)


def _run_map(row: TaskState, mapping: Any, scope: Mapping[str, Any], now: datetime) -> None:
    row.started_at = now
    try:
        output = render(mapping, scope)
    except TemplateError as error:
        _finish_row(row, "failed", now, error=_error(f"the map could not be filled: {error}"))
        return
    problem = _check_output(output)
    if problem is not None:
        _finish_row(row, "failed", now, error=problem)
    else:
        _finish_row(row, "succeeded", now, output=output)


def _wait_until(task: Task, run: RunState, compiled: CompiledFlow, rows: Mapping[str, TaskState],
                now: datetime) -> datetime:
    if task.wait_seconds is not None:  # past the deadline: the run times out first
        return now + timedelta(seconds=task.wait_seconds)
    try:
        value = render(task.wait_until, _scope(run, compiled, rows))
        moment = datetime.fromisoformat(str(value))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=now.tzinfo)
    except (TemplateError, ValueError):
        return now  # an unreadable time does not hold the run up
    return max(now, moment)


def _expand(run: RunState, compiled: CompiledFlow, task: Task, row: TaskState,
            rows: Mapping[str, TaskState], now: datetime, created: list[TaskState]) -> None:
    """A forEach task that became ready: its items rendered, then each item mapped at
    once (a map) or made a task run of its own (an action), ``parallelism`` ready."""
    each = task.for_each
    assert each is not None
    row.started_at = now
    scope = _scope(run, compiled, rows)
    try:
        items = render(each.items, scope)
    except TemplateError as error:
        _finish_row(row, "failed", now, error=_error(f"the items could not be read: {error}"))
        return
    if items is None or items is MISSING:
        items = []
    if not isinstance(items, list):
        _finish_row(row, "failed", now, error=_error(
            f"forEach items must be a list, got {type(items).__name__}"))
        return
    if len(items) > each.max_items:
        _finish_row(row, "failed", now, error=_error(
            f"{len(items)} items are more than this forEach's maxItems of {each.max_items}"))
        return
    if each.map is not None:
        outputs = []
        for index, item in enumerate(items):
            try:
                outputs.append(render(each.map, {**scope, each.name: item, "index": index}))
            except TemplateError as error:
                _finish_row(row, "failed", now, error=_error(
                    f"item {index}: the map could not be filled: {error}", index=index))
                return
        problem = _check_output(outputs)
        _finish_row(row, "failed" if problem else "succeeded", now,
                    output=None if problem else outputs, error=problem)
        return
    if not items:
        _finish_row(row, "succeeded", now, output=[])
        return
    row.status = "running"
    for index, item in enumerate(items):
        first = index < each.parallelism
        created.append(_new_task(run.id, row.key, f"{row.idempotency_key}-{index}",
                                 item=index, status="ready" if first else "pending",
                                 ready_at=now if first else None, input={"item": item}))


def _conclude(run: RunState, compiled: CompiledFlow, rows: Mapping[str, TaskState],
              now: datetime) -> None:
    if run.status != "running":
        return
    decided = outcome(compiled, {key: row.status for key, row in rows.items()})
    if decided is None:
        return
    status, failed_task = decided
    run.status = status
    run.finished_at = run.updated_at = now
    if failed_task is not None:
        error = rows[failed_task].error or {}
        run.error = {"task": failed_task, "message": error.get("message", "the task failed")}
    if compiled.output is not None:
        try:
            output = render(compiled.output, _scope(run, compiled, rows))
        except TemplateError as error:
            output = None
            if run.status == "succeeded":
                run.status = "failed"
                run.error = {"task": None, "message": f"the flow's output could not be "
                                                      f"filled: {error}"}
        run.output = None if output is MISSING else output



@contextmanager
def _deciding(app: Flask, run_id: str) -> Iterator[tuple[Session, flow_rows.Loaded | None,
                                                         list[TaskState]]]:
    """A transaction deciding a run's tasks outside an attempt (a cancel, a retry, a
    person's answer, a recovery, a deadline): the run's row written first, so
    concurrent deciders of one run take turns (the row lock on PostgreSQL, the write
    lock on SQLite); the run and its tasks read (None: no such run); on leaving,
    what changed and the task runs put in the list written with what the session
    wrote (its audit event)."""
    found = flow_rows.statements(app)
    created: list[TaskState] = []
    with get_database(app).transaction() as tx, flow_rows.cursor_of(tx) as cursor:
        loaded = flow_rows.lock(cursor, found, run_id, utcnow())
        yield tx, loaded, created
        if loaded is not None:
            flow_rows.write(cursor, found, loaded, created)


def _compiled_for(app: Flask, db: Session, run: FlowRun | RunState) -> CompiledFlow:
    return flow_service.compiled(app, db, run.workspace_id, run.flow_id, run.version,
                                 check=False)


# -- an attempt ------------------------------------------------------------------------


def _safe_to_repeat(error: MinihostError | None, call: ActionCall) -> bool:
    """FLOWS.md §3: the connection was never made, the provider answered 429, 502, 503
    or 504, or the action may be repeated whatever happened at the provider."""
    if isinstance(error, ConnectFailed):
        return True
    if isinstance(error, RequestFailed) and error.http_status in SAFE_STATUSES:
        return True
    return call.repeatable and isinstance(error, UpstreamFailed)


def run_attempt(app: Flask, claim: Claim) -> list[Claim]:
    """Run one claimed attempt and record what came of it. Returns the claims its
    outcome took for this process (the tasks it made ready). What is logged meanwhile
    names the flow run, task run and attempt."""
    with logs.context(taskRun=claim.task_run_id, attempt=claim.attempt):
        return _run_attempt(app, claim)


def _run_attempt(app: Flask, claim: Claim) -> list[Claim]:
    loaded: flow_rows.Loaded | None = claim.context
    if loaded is None:
        loaded = _read(app, claim)
        if loaded is None:
            return []
    row = next((r for r in loaded.tasks if r.id == claim.task_run_id), None)
    if row is None:
        return []
    run = loaded.run
    logs.annotate(flowRun=run.id, task=row.key)
    record = partial(_record, app, claim, run, row.key)
    if run.status != "running":
        return record("cancelled", None, _error("the run was stopped"), None)
    with get_database(app).sessions() as db:
        try:
            compiled = _compiled_for(app, db, run)
        except MinihostError as error:
            return record("failed", None, _error(
                f"the flow no longer passes its checks: {error.detail}"), None)
        record = partial(record, compiled=compiled)
        task = compiled.tasks[row.key]
        if task.kind == "wait":
            return record("succeeded", None, None, None)
        if task.kind == "dataSource":
            assert task.data_source is not None
            return _list_records(app, db, run, task.data_source, record)
        call = task.call if task.call is not None else (
            task.for_each.call if task.for_each else None)
        assert call is not None
        scope = _scope(run, compiled, loaded.by_key() if call.reads_tasks else {})
        if row.item >= 0 and task.for_each is not None:
            scope = {**scope, task.for_each.name: (row.input or {}).get("item"),
                     "index": row.item}
        try:
            parameters = _parameters(call, scope, run.input or {}, row.key)
        except TemplateError as error:
            return record("failed", None, _error(f"an input could not be filled: {error}"),
                          None)
        found = _connection(app, db, run, call.connection)
        if isinstance(found, dict):
            return record("failed", None, found, None)
        installation, manifest = found
    action = manifest.action(call.action)
    if action is None:
        return record("failed", None, _error(
            f"{manifest.title} has no action {call.action!r} any more"), None)
    problems = validate(action.form, parameters)
    if problems:
        return record("failed", None, _error(
            "the inputs are not valid for " + action.title + ": " +
            "; ".join(f"{p.field}: {p.message}" for p in problems),
            fields=[{"field": p.field, "message": p.message} for p in problems]), None)
    if installation.status != "active":
        return record("failed", None, _error(
            f"the installation {installation.name!r} is {installation.status}: "
            f"{installation.error or 'connect it again'}"), None)
    paused = installation.paused_until
    if paused is not None and paused > utcnow():
        # The provider asked this installation to wait: the task waits too, without
        # spending an attempt, in whichever process picks it up.
        return record("ready", None, _error(
            f"waiting until {paused.isoformat()}: the provider answered 429 for "
            f"{installation.name!r} and asked to wait"), None, defer_until=paused)
    remaining = (run.deadline - utcnow()).total_seconds()
    deadline = time.monotonic() + max(0.0, min(call.timeout, remaining))
    actor = f"flow:{compiled.key}/{row.key}"
    flow_run_id = run.id

    def stop() -> str | None:
        status = get_database(app).read_raw(flow_rows.statements(app).status,
                                            {"run_id": flow_run_id})
        if status is None or status[0] == "running":
            return None
        return f"the flow run is {status[0]}"

    result, action_run = run_step(app, Step(
        installation=installation, manifest=manifest, requests=action.requests, kind="action",
        name=action.name, actor=actor, actor_id=run.actor_id, parameters=parameters,
        sandbox=run.sandbox, deadline=deadline, idempotency_key=row.idempotency_key,
        run_id=claim.run_id, stop=stop if len(action.requests) > 1 else None,
        defer_finish=True,
        keeper=Keeper(app, installation, manifest, actor=actor, reason="flow task")))
    if action_run is not None and action_run.status != "running":
        record = partial(record, finish=finish_write(app, action_run))
    if result.ok:
        output = action_run.output if action_run is not None else result.values
        problem = _check_output(output)
        if problem is None:
            return record("succeeded", output, None, None, parameters)
        return record("failed", None, problem, None, parameters)
    failure = result.error
    recorded = run_error(failure) if failure is not None else _error("the task failed")
    delay = None
    retry = call.retry
    if retry is not None and claim.attempt < retry.attempts and _safe_to_repeat(failure, call):
        delay = retry.delay(claim.attempt)
        if isinstance(failure, RateLimited) and failure.retry_after:
            delay = max(delay, float(failure.retry_after))
    return record("failed", None, recorded, delay, parameters)


def _connection(app: Flask, db: Session, run: RunState,
                connection: str) -> tuple[Installation, Manifest] | dict[str, Any]:
    """The installation a task names and its manifest, or the task's error."""
    installation = for_task(app, db, run.workspace_id, connection)
    if installation is None:
        return _error(f"no installation is called {connection!r} in this workspace any more "
                      "(renamed or uninstalled?); name one so and retry the run")
    try:
        return installation, manifest_of(app, db, installation)
    except MinihostError as error:
        return _error(error.detail)


def _list_records(app: Flask, db: Session, run: RunState, target: tuple[str, str],
                  record: Callable[..., list[Claim]]) -> list[Claim]:
    """A data source task: its records, synced first unless the last sync is fresher
    than the source's ``pollSeconds`` (a sandbox run syncs nothing: it lists what is
    kept)."""
    connection, name = target
    found = _connection(app, db, run, connection)
    if isinstance(found, dict):
        return record("failed", None, found, None)
    installation, manifest = found
    try:
        source = data_sources.data_source(manifest, name)
    except MinihostError as error:
        return record("failed", None, _error(error.detail), None)
    synced = db.execute(select(DataSourceState.synced_at).where(
        DataSourceState.installation_id == installation.id,
        DataSourceState.source == name)).scalar_one_or_none()
    fresh = synced is not None and (utcnow() - synced).total_seconds() < source.poll_seconds
    db.commit()  # hand the connection back while the provider answers
    if not fresh and not run.sandbox:
        try:
            data_sources.sync(app, installation, manifest, name,
                              actor=f"flow:{run.flow_id}", actor_id=run.actor_id)
        except MinihostError as error:
            return record("failed", None, run_error(error), None)
    kept: list[Any] = []
    after: str | None = None
    while True:
        page, after = data_sources.records(db, installation, name, 1000, after)
        kept.extend(page)
        if after is None:
            break
    output = {"records": kept, "count": len(kept)}
    problem = _check_output(output)
    if problem is not None:
        return record("failed", None, problem, None)
    return record("succeeded", output, None, None)


def _read(app: Flask, claim: Claim) -> flow_rows.Loaded | None:
    """A polled claim's run and tasks (a handed-over claim carries them)."""
    found = flow_rows.statements(app)
    with get_database(app).reading() as cursor:
        run_id = claim.flow_run_id
        if run_id is None:
            owner = cursor.rows(found.task_owner, {"task_id": claim.task_run_id})
            run_id = owner[0][0] if owner else None
        return flow_rows.load(cursor, found, run_id) if run_id else None


def _parameters(call: ActionCall, scope: Mapping[str, Any], run_input: Mapping[str, Any],
                key: str) -> dict[str, Any]:
    parameters: dict[str, Any] = {}
    for name, compiled in call.inputs:
        value = render(compiled, scope)
        if value is not MISSING:
            parameters[name] = value
    given = (run_input.get("tasks") or {}).get(key) or {}
    for name in call.blanks:
        if name in given and given[name] is not None:
            parameters[name] = given[name]
    return parameters


def _record(app: Flask, claim: Claim, run: RunState, key: str, status: str, output: Any,
            error: dict[str, Any] | None, retry_in: float | None,
            parameters: dict[str, Any] | None = None, *,
            compiled: CompiledFlow | None = None,
            finish: tuple[Prepared, dict[str, Any]] | None = None,
            defer_until: datetime | None = None) -> list[Claim]:
    """An attempt's outcome, and what it decides, in one transaction — with ``finish``,
    the attempt's action run row's outcome too — and the tasks it makes ready claimed
    for this process as far as it has threads free (this thread goes on with the first).
    Nothing else is written when the claim is no longer this attempt's (a sweep or a
    cancel took it)."""
    if compiled is None:
        with get_database(app).sessions() as db:
            compiled = _compiled_for(app, db, run)
    # This thread goes on with one task it makes ready; more need threads of their own.
    pool, reserved = executor.reserve(app, len(compiled.downstream.get(key, ())) - 1)
    remote = executor.sender(app) is not None
    claims: list[Claim] = []
    loaded: flow_rows.Loaded | None = None
    created: list[TaskState] = []
    found = flow_rows.statements(app)
    now = utcnow()
    try:
        with get_database(app).raw() as cursor:
            if finish is not None:
                cursor.execute(*finish)
            loaded = flow_rows.lock(cursor, found, run.id, now, run)
            if loaded is None:
                return []
            locked = loaded.run
            row = next((r for r in loaded.tasks if r.id == claim.task_run_id), None)
            if row is None or row.status != "running" or row.attempt != claim.attempt:
                loaded = None
                return []
            if parameters is not None and row.item < 0:
                row.input = parameters
            if defer_until is not None:  # the attempt did not happen: ready again then
                row.status, row.error, row.attempt = "ready", error, claim.attempt - 1
                row.ready_at = min(defer_until, locked.deadline)
                row.holder = row.lease_expires_at = row.current_run = None
            else:
                if status != "cancelled" or flow_rows.recorded(cursor, found, claim.run_id):
                    row.runs = [*(row.runs or []), claim.run_id]
                if retry_in is not None and locked.status == "running":
                    row.status, row.error = "ready", error
                    row.ready_at = min(now + timedelta(seconds=retry_in), locked.deadline)
                    row.holder = row.lease_expires_at = None
                else:
                    _finish_row(row, status, now, output=output, error=error)
            if row.item >= 0:
                _item_done(locked, compiled, row, loaded.tasks, now, created)
            elif locked.status == "running" and row.status in TERMINAL:
                _decide(locked, compiled, loaded.by_key(), now, created)
            taken = _claim(loaded, created, now, reserved + 1, remote)
            flow_rows.write(cursor, found, loaded, created)
            loaded.tasks.extend(created)  # the items belong to the run's tasks from now on
            if not taken and pool is not None:  # this thread would go idle: take work
                taken = _take_ready(app, cursor, found, pool)
        claims = taken  # committed: now they are this process's
    finally:
        first_here = 1 if claims and not remote else 0
        _hand_over(app, pool, reserved, claims[first_here:],
                   loaded or flow_rows.Loaded(run, []), created)
    return claims[:first_here]


def _take_ready(app: Flask, cursor: RawCursor, found: flow_rows.Statements,
                pool: executor.Executor) -> list[Claim]:
    """A task of any run that is ready now, claimed in the caller's transaction with
    its run's rows read (so the thread goes on without a poll, a commit or a read)."""
    claim = executor.take_ready(app, cursor, pool.lease_for)
    if claim is None or claim.flow_run_id is None:
        return []
    loaded = flow_rows.load(cursor, found, claim.flow_run_id)
    return [replace(claim, context=loaded)] if loaded is not None else []


def _take_sent(app: Flask, item: tuple[str, int, str]) -> list[Claim]:
    """Claim the attempt a broker message names and read its run in the same
    transaction (the worker goes on without another round trip)."""
    found = flow_rows.statements(app)
    with get_database(app).raw() as cursor:
        claims = executor.claim_on(cursor, app, [item], lambda app, task_run_id: ACTION_LEASE)
        loaded = flow_rows.load(cursor, found, item[2]) if claims else None
    return [replace(claims[0], context=loaded)] if claims and loaded is not None else claims


def _item_done(run: RunState, compiled: CompiledFlow, item_row: TaskState, tasks: list[TaskState],
               now: datetime, created: list[TaskState]) -> None:
    """One forEach item ended (or waits for a retry): start the next waiting item, and
    when every item has ended, end the forEach task with the outputs in order."""
    if item_row.status not in TERMINAL:
        return
    items = sorted((row for row in tasks if row.key == item_row.key and row.item >= 0),
                   key=lambda row: row.item)
    waiting = [row for row in items if row.status == "pending"]
    if waiting and run.status == "running":
        waiting[0].status, waiting[0].ready_at = "ready", now
    if any(row.status not in TERMINAL for row in items):
        return
    parent = next(row for row in tasks if row.key == item_row.key and row.item < 0)
    failed = [row for row in items if row.status != "succeeded"]
    if failed:
        first = failed[0]
        message = (first.error or {}).get("message", first.status)
        _finish_row(parent, "failed", now, error=_error(f"item {first.item}: {message}",
                                                        index=first.item))
    else:
        outputs = [row.output for row in items]
        problem = _check_output(outputs)
        _finish_row(parent, "failed" if problem else "succeeded", now,
                    output=None if problem else outputs, error=problem)
    if run.status == "running":
        _decide(run, compiled, {row.key: row for row in tasks if row.item < 0}, now, created)


# -- timers: claims whose holder is gone, deadlines, old idempotency keys ------------------


def sweep(app: Flask) -> None:
    """Claims whose process is gone (its lease ran out, or it is a dead process on this
    machine), runs past their deadline, idempotency keys past 24 hours."""
    now = utcnow()
    database = get_database(app)
    with database.sessions() as db:
        stale = [(task_id, attempt) for task_id, attempt, name, until in db.execute(
            select(TaskRun.id, TaskRun.attempt, TaskRun.holder, TaskRun.lease_expires_at)
            .where(TaskRun.status == "running", TaskRun.holder.is_not(None))).all()
            if (until is not None and until < now) or (name and holder_dead(name))]
        late = list(db.execute(select(FlowRun.id).where(
            FlowRun.status == "running", FlowRun.deadline < now)).scalars())
    for task_id, attempt in stale:
        _recover(app, task_id, attempt, now)
    for run_id in late:
        _time_out(app, run_id, now)
    with database.transaction() as db:
        db.execute(update(FlowRun).where(
            FlowRun.idempotency_key.is_not(None),
            FlowRun.created_at < now - timedelta(hours=IDEMPOTENCY_HOURS))
            .values(idempotency_key=None))
    prune(app, now)


PRUNE_EVERY = 600.0  # seconds between two looks for flow runs past their retention
PRUNE_BATCH = 200
_PRUNED = "minihost.flow_runs_pruned"


def prune(app: Flask, now: datetime | None = None, force: bool = False) -> int:
    """Delete finished flow runs (with their task runs) that ended more than
    ``FLOW_RUN_RETENTION_DAYS`` ago, a batch at a time; unfinished runs never. At most
    every ten minutes per process unless ``force``. Returns how many went."""
    days = int(app.config["FLOW_RUN_RETENTION_DAYS"])
    clock = time.monotonic()
    if days == 0 or (not force and clock - app.extensions.get(_PRUNED, float("-inf"))
                     < PRUNE_EVERY):
        return 0
    app.extensions[_PRUNED] = clock
    cutoff = (now or utcnow()) - timedelta(days=days)
    removed = 0
    while True:
        with get_database(app).transaction() as db:
            ids = list(db.execute(select(FlowRun.id).where(
                FlowRun.status.in_(FINISHED_RUN), FlowRun.finished_at < cutoff)
                .limit(PRUNE_BATCH)).scalars())
            if not ids:
                break
            db.execute(delete(TaskRun).where(TaskRun.flow_run_id.in_(ids)))
            db.execute(delete(FlowRun).where(FlowRun.id.in_(ids)))
        removed += len(ids)
    _prune_triggers(app, cutoff)
    workers.prune(app)
    return removed


def _prune_triggers(app: Flask, cutoff: datetime) -> None:
    """Events (with the runs they started) and schedule ticks kept as long as runs: a
    replay is recognised for the whole retention. An event not yet dispatched stays."""
    while True:
        with get_database(app).transaction() as db:
            ids = list(db.execute(select(InboundEvent.id).where(
                InboundEvent.received_at < cutoff, InboundEvent.status != "received")
                .limit(PRUNE_BATCH)).scalars())
            if ids:
                db.execute(delete(EventRun).where(EventRun.event_id.in_(ids)))
                db.execute(delete(InboundEvent).where(InboundEvent.id.in_(ids)))
            db.execute(delete(ScheduleTick).where(ScheduleTick.created_at < cutoff))
        if len(ids) < PRUNE_BATCH:
            return


def _recover(app: Flask, task_id: str, attempt: int, now: datetime) -> None:
    owner = get_database(app).read_raw(flow_rows.statements(app).task_owner,
                                       {"task_id": task_id})
    if owner is None:
        return
    with _deciding(app, owner[0]) as (db, loaded, _):
        row = next((r for r in loaded.tasks if r.id == task_id), None) if loaded else None
        if loaded is None or row is None or row.status != "running" or row.attempt != attempt:
            return
        run = loaded.run
        current = row.current_run
        with flow_rows.cursor_of(db) as cursor:
            sent = current is not None and flow_rows.recorded(
                cursor, flow_rows.statements(app), current)
        repeatable = False
        if sent and current is not None:
            try:
                compiled = _compiled_for(app, db, run)
                task = compiled.tasks[row.key]
                call = task.call or (task.for_each.call if task.for_each else None)
                repeatable = call is not None and call.repeatable
            except MinihostError:
                repeatable = False
            row.runs = [*(row.runs or []), current]
        if not sent or repeatable:
            row.status, row.ready_at = "ready", now
            row.holder = row.lease_expires_at = None
            if not sent:
                row.attempt = attempt - 1  # no request left: the attempt did not happen
        else:
            row.status = "unknown"
            row.holder = row.lease_expires_at = None
            row.error = _error(
                "the process running this task stopped after a request may have reached the "
                "provider; check there whether it happened, then mark the task succeeded or "
                "failed, or retry it")
        audit.record(db, "flow_task_recovered", actor="system", app=app,
                     workspace_id=run.workspace_id,
                     detail={"run": run.id, "task": row.key, "item": row.item,
                             "became": row.status})
    executor.wake(app)


def _time_out(app: Flask, run_id: str, now: datetime) -> None:
    with _deciding(app, run_id) as (_, loaded, _created):
        if loaded is None or loaded.run.status != "running" or loaded.run.deadline >= now:
            return
        run = loaded.run
        run.status, run.finished_at = "timed_out", now
        seconds = int((run.deadline - (run.started_at or run.created_at)).total_seconds())
        run.error = {"task": None, "message": f"the run passed its budget of {seconds} s"}
        for row in loaded.tasks:
            if row.status not in TERMINAL:
                _finish_row(row, "cancelled", now, error=_error("the run passed its budget"))


# -- control ------------------------------------------------------------------------------


def get_run(db: Session, principal: Principal, run_id: str) -> FlowRun:
    run = db.get(FlowRun, run_id)
    if run is None or run.workspace_id != principal.workspace_id:
        raise NotFound(f"no flow run {run_id}")
    return run


def cancel(app: Flask, db: Session, principal: Principal, run: FlowRun) -> FlowRun:
    """Stop a run: tasks not yet running are cancelled; a running attempt stops before
    its next request (its chain asks between requests) and starts nothing after it."""
    run_id = run.id
    db.commit()
    with _deciding(app, run_id) as (tx, loaded, _):
        if loaded is None:
            raise NotFound(f"no flow run {run_id}")
        locked = loaded.run
        if locked.status not in ("queued", "running"):
            raise Conflict(f"the run is {locked.status} already")
        now = utcnow()
        locked.status, locked.finished_at = "cancelled", now
        locked.error = {"task": None, "message": f"cancelled by {principal.user.email}"}
        for row in loaded.tasks:
            if row.status in ("pending", "ready", "unknown"):
                _finish_row(row, "cancelled", now)
            elif row.status == "running" and row.holder is None:  # a forEach's own row
                _finish_row(row, "cancelled", now)
        audit.record(tx, "flow_run_cancelled", actor=principal.actor, app=app,
                     workspace_id=locked.workspace_id, detail={"run": run_id})
    db.expire_all()
    return get_run(db, principal, run_id)


def retry_run(app: Flask, db: Session, principal: Principal, run: FlowRun) -> FlowRun:
    """Run a finished run's failed, cancelled and unknown tasks again, with what
    depends on them; tasks that succeeded keep their outputs."""
    run_id = run.id
    db.commit()
    with _deciding(app, run_id) as (tx, loaded, created):
        if loaded is None:
            raise NotFound(f"no flow run {run_id}")
        locked = loaded.run
        if locked.status in ("queued", "running"):
            raise Conflict("the run is still running; cancel it first or wait for it to end")
        compiled = _compiled_for(app, tx, locked)
        rows = loaded.by_key()
        redo = {key for key, row in rows.items()
                if row.status in ("failed", "cancelled", "unknown")}
        todo = list(redo)
        while todo:
            for after in compiled.downstream.get(todo.pop(), ()):
                if after not in redo:
                    redo.add(after)
                    todo.append(after)
        if not redo:
            raise Conflict("nothing to retry: every task succeeded or was skipped")
        now = utcnow()
        tx.execute(delete(TaskRun).where(TaskRun.flow_run_id == run_id, TaskRun.item >= 0,
                                         TaskRun.key.in_(redo)))
        loaded.tasks = [row for row in loaded.tasks if row.item < 0 or row.key not in redo]
        for key in redo:
            row = rows[key]
            keep_key = row.status == "unknown"  # its request may have happened: same key
            row.status, row.output, row.error = "pending", None, None
            row.ready_at = row.started_at = row.finished_at = None
            row.holder = row.lease_expires_at = row.current_run = None
            row.attempt = 0
            if not keep_key:
                row.idempotency_key = new_id("idk").lower()
        locked.status, locked.finished_at, locked.error, locked.output = "running", None, None, None
        locked.deadline = now + timedelta(seconds=compiled.budget_seconds)
        audit.record(tx, "flow_run_retried", actor=principal.actor, app=app,
                     workspace_id=locked.workspace_id,
                     detail={"run": run_id, "tasks": sorted(redo)})
        _decide(locked, compiled, rows, now, created)
    executor.wake(app)
    db.expire_all()
    return get_run(db, principal, run_id)


def resolve(app: Flask, db: Session, principal: Principal, run: FlowRun, task_key: str,
            body: Any) -> FlowRun:
    """A person's answer for an ``unknown`` task: it ``succeeded`` (with the output they
    saw at the provider), ``failed``, or should be tried again (same idempotency key)."""
    if not isinstance(body, dict) or body.get("as") not in ("succeeded", "failed", "retry"):
        raise ValidationError([FieldError("as", "must be succeeded, failed or retry")])
    answer = body["as"]
    output = body.get("output")
    if answer == "succeeded" and _check_output(output) is not None:
        raise ValidationError([FieldError("output", "is larger than 256 KB")])
    run_id = run.id
    db.commit()
    with _deciding(app, run_id) as (tx, loaded, created):
        if loaded is None:
            raise NotFound(f"no flow run {run_id}")
        locked, every = loaded.run, loaded.tasks
        row = next((row for row in every if row.key == task_key and row.status == "unknown"),
                   None)
        if row is None:
            raise Conflict(f"the task {task_key!r} of this run is not waiting to be resolved")
        now = utcnow()
        if answer == "retry":
            row.status, row.ready_at, row.error = "ready", now, None
        elif answer == "succeeded":
            _finish_row(row, "succeeded", now, output=output)
        else:
            _finish_row(row, "failed", now, error=_error(
                f"marked failed by {principal.user.email} after an unknown outcome"))
        audit.record(tx, "flow_task_resolved", actor=principal.actor, app=app,
                     workspace_id=locked.workspace_id,
                     detail={"run": run_id, "task": task_key, "item": row.item, "as": answer})
        if locked.status == "running" and row.status in TERMINAL:
            compiled = _compiled_for(app, tx, locked)
            if row.item >= 0:
                _item_done(locked, compiled, row, every, now, created)
            else:
                _decide(locked, compiled, loaded.by_key(), now, created)
    executor.wake(app)
    db.expire_all()
    return get_run(db, principal, run_id)


def wait_for(app: Flask, run_id: str, seconds: float) -> bool:
    """Wait up to ``seconds`` for a run to end (``Prefer: wait``); True when it did."""
    end = time.monotonic() + seconds
    pause = 0.01
    while True:
        with get_database(app).sessions() as db:
            status = db.execute(select(FlowRun.status).where(FlowRun.id == run_id)).scalar()
        if status not in ("queued", "running"):
            return True
        if time.monotonic() >= end:
            return False
        time.sleep(min(pause, max(0.0, end - time.monotonic())))
        pause = min(pause * 2, 0.2)


# -- reading ------------------------------------------------------------------------------


class FlowRunFilter:
    __slots__ = ("flow_id", "status")

    def __init__(self, flow_id: str | None = None, status: str | None = None) -> None:
        if status is not None and status not in RUN_STATUSES:
            raise ValidationError([FieldError("status", "must be one of " +
                                              ", ".join(RUN_STATUSES))])
        self.flow_id, self.status = flow_id, status


def list_runs(db: Session, principal: Principal, where: FlowRunFilter,
              page: Page | None = None) -> tuple[list[FlowRun], str | None]:
    query = select(FlowRun).where(FlowRun.workspace_id == principal.workspace_id)
    if where.flow_id is not None:
        query = query.where(FlowRun.flow_id == where.flow_id)
    if where.status is not None:
        query = query.where(FlowRun.status == where.status)
    return page_of(db, query, FlowRun.id, page)


def flow_key(db: Session, flow_id: str) -> str:
    return db.execute(select(Flow.key).where(Flow.id == flow_id)).scalar() or ""


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _task_object(row: TaskRun | TaskState, items: list[TaskRun | TaskState]) -> dict[str, Any]:
    body: dict[str, Any] = {
        "key": row.key, "status": row.status, "attempts": row.attempt,
        "startedAt": _iso(row.started_at), "finishedAt": _iso(row.finished_at),
        "input": row.input, "output": row.output, "error": row.error,
        "runs": list(row.runs or []),
    }
    if row.status == "ready" and row.ready_at is not None:
        body["readyAt"] = row.ready_at.isoformat()
    if items:
        body["items"] = [{"index": item.item, "status": item.status, "output": item.output,
                          "error": item.error, "runs": list(item.runs or []),
                          "attempts": item.attempt} for item in items]
    return body


def run_object(db: Session, run: FlowRun | RunState, key: str | None = None,
               with_tasks: bool = True,
               tasks: Sequence[TaskRun | TaskState] | None = None) -> dict[str, Any]:
    """The Flow run object of FLOWS.md §10 (``key``: the flow's, when the caller knows
    it; ``tasks``: its task runs, when the caller has them)."""
    if key is None:
        key = flow_key(db, run.flow_id)
    body: dict[str, Any] = {
        "id": run.id, "flow": key, "version": run.version, "status": run.status,
        "trigger": run.trigger, "input": run.input, "output": run.output, "error": run.error,
        "sandbox": run.sandbox, "createdAt": run.created_at.isoformat(),
        "startedAt": _iso(run.started_at), "finishedAt": _iso(run.finished_at),
        "deadline": run.deadline.isoformat(), "scheduledFor": _iso(run.scheduled_for),
        "idempotencyKey": run.idempotency_key,
        "links": {"self": f"/api/v1/flow-runs/{run.id}"},
    }
    if with_tasks:
        rows = tasks if tasks is not None else list(db.execute(
            select(TaskRun).where(TaskRun.flow_run_id == run.id).order_by(TaskRun.id)).scalars())
        items: dict[str, list[TaskRun | TaskState]] = {}
        for row in rows:
            if row.item >= 0:
                items.setdefault(row.key, []).append(row)
        body["tasks"] = [_task_object(row, sorted(items.get(row.key, []), key=lambda r: r.item))
                         for row in rows if row.item < 0]
    return body


# -- wiring ------------------------------------------------------------------------------


def start_executor(app: Flask) -> None:
    """Run flow work in this process now (``FLOW_WORKERS`` threads; none when 0): what
    ``minihost serve`` does at start, so a restart resumes every unfinished run."""
    executor.get_executor(app)


def init_app(app: Flask, timers: Sequence[executor.Timer] = ()) -> None:
    """Give the executor its work: task attempts, and the timers (this module's sweep,
    and ``timers``: the schedules). A serving process starts it with its first request
    (``minihost serve`` at once); a command starts it only when it starts a run, so a
    short command never holds a claim when it exits."""
    executor.configure(app, run_attempt, lambda app, task_run_id: ACTION_LEASE,
                       [sweep, *timers], take=_take_sent)
    if app.testing:
        return

    @app.before_request
    def _start_executor() -> None:
        if "minihost.executor" not in app.extensions:
            executor.get_executor(app)
