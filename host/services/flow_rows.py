"""A flow run's rows on the driver's cursor: the reads and writes every task makes.

Each task of a flow reads its run and the run's tasks and writes what its outcome
decides. Through the ORM's unit of work (and its instrumented attributes) that cost
more than the action the task runs; here the statements are rendered once per
database (:class:`host.db.Prepared`), rows are read into plain objects with the
columns' names (:class:`RunState`, :class:`TaskState`), and only the rows that
changed are written back. Every path that decides a run's tasks — a task's outcome,
a start, a cancel, a retry, a person's answer, a recovery — goes through here, on
its own cursor or on the cursor of the session it audits with (:func:`cursor_of`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from datetime import datetime
from operator import attrgetter
from typing import Any, cast

from flask import Flask
from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.orm import Session

from ..db import FlowRun, Prepared, RawCursor, Run, TaskRun, get_database, raw_cursor

__all__ = ["Loaded", "RunState", "TaskState", "cursor_of", "load", "lock", "recorded",
           "statements", "write"]

_RUN = cast(Table, FlowRun.__table__)
_TASK = cast(Table, TaskRun.__table__)
_TASK_TYPES = {column.key: column.type for column in _TASK.columns}
RUN_COLUMNS = tuple(column.key for column in _RUN.columns)
TASK_COLUMNS = tuple(column.key for column in _TASK.columns)
# What deciding may change: everything but the identity of a row.
RUN_CHANGING = ("status", "output", "error", "finished_at", "updated_at")
TASK_CHANGING = ("status", "attempt", "ready_at", "started_at", "finished_at", "input",
                 "output", "error", "runs", "holder", "lease_expires_at", "current_run")


@dataclass(slots=True, eq=False)
class RunState:
    """A ``flow_run`` row's values, in its columns' order."""

    id: str
    workspace_id: str
    flow_id: str
    version: int
    status: str
    trigger: dict[str, Any]
    input: dict[str, Any]
    output: Any
    error: dict[str, Any] | None
    sandbox: bool
    idempotency_key: str | None
    actor_id: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    deadline: datetime
    scheduled_for: datetime | None
    updated_at: datetime


@dataclass(slots=True, eq=False)
class TaskState:
    """A ``task_run`` row's values, in its columns' order."""

    id: str
    flow_run_id: str
    key: str
    item: int
    status: str
    attempt: int
    ready_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    input: Any
    output: Any
    error: dict[str, Any] | None
    runs: list[str]
    idempotency_key: str
    holder: str | None
    lease_expires_at: datetime | None
    current_run: str | None


assert tuple(f.name for f in fields(RunState)) == RUN_COLUMNS, "RunState ≠ flow_run"
assert tuple(f.name for f in fields(TaskState)) == TASK_COLUMNS, "TaskState ≠ task_run"


@dataclass(frozen=True, slots=True)
class Statements:
    touch: Prepared
    run: Prepared
    tasks: Prepared
    insert_run: Prepared
    insert_task: Prepared
    update_run: Prepared
    task_owner: Prepared  # a task run's flow run
    action_run: Prepared  # whether an action run row exists
    status: Prepared  # a run's status, read by a chain between its requests
    dialect: Any
    # A task run's update by the columns it changes: a task made ready writes two
    # columns, not twelve (four of them JSON to encode again).
    updates: dict[tuple[str, ...], Prepared]

    def update_task(self, columns: tuple[str, ...]) -> Prepared:
        found = self.updates.get(columns)
        if found is None:
            found = self.updates.setdefault(columns, Prepared(
                update(_TASK).where(_TASK.c.id == bindparam("task_id")), self.dialect,
                columns, _TASK_TYPES))
        return found


def statements(app: Flask) -> Statements:
    """The statements, rendered once per application for its database."""
    found: Statements | None = app.extensions.get("minihost.flow_rows")
    if found is None:
        dialect = get_database(app).engine.dialect
        run_types = {column.key: column.type for column in _RUN.columns}
        task_types = _TASK_TYPES
        found = Statements(
            touch=Prepared(update(_RUN).where(_RUN.c.id == bindparam("run_id"))
                           .returning(*(_RUN.c[name] for name in RUN_CHANGING)), dialect,
                           ("updated_at",), run_types, results=True),
            run=Prepared(select(_RUN).where(_RUN.c.id == bindparam("run_id")), dialect, (), {},
                         results=True),
            tasks=Prepared(select(_TASK).where(_TASK.c.flow_run_id == bindparam("run_id"))
                           .order_by(_TASK.c.id), dialect, (), {}, results=True),
            insert_run=Prepared(insert(_RUN), dialect, RUN_COLUMNS, run_types),
            insert_task=Prepared(insert(_TASK), dialect, TASK_COLUMNS, task_types),
            update_run=Prepared(update(_RUN).where(_RUN.c.id == bindparam("run_id")), dialect,
                                RUN_CHANGING, run_types),
            task_owner=Prepared(select(_TASK.c.flow_run_id).where(
                _TASK.c.id == bindparam("task_id")), dialect, (), {}),
            action_run=Prepared(select(Run.id).where(Run.id == bindparam("id")), dialect,
                                (), {}),
            status=Prepared(select(_RUN.c.status).where(_RUN.c.id == bindparam("run_id")),
                            dialect, (), {}),
            dialect=dialect, updates={})
        app.extensions["minihost.flow_rows"] = found
    return found


class Loaded:
    """A run and its task runs as read, and what they were when read: :func:`write`
    writes back only what changed since."""

    __slots__ = ("run", "tasks", "_run_was", "_tasks_were")

    def __init__(self, run: RunState, tasks: list[TaskState], new: bool = False) -> None:
        self.run, self.tasks = run, tasks
        self._run_was = None if new else _run_changing(run)
        self._tasks_were = {} if new else {row.id: _task_changing(row) for row in tasks}

    def was_ready(self, row: TaskState) -> bool:
        """Whether ``row`` was ready when read: any process may be claiming it."""
        were = self._tasks_were.get(row.id)
        return were is not None and were[0] == "ready"

    def by_key(self) -> dict[str, TaskState]:
        """The tasks (not forEach items) by key."""
        return {row.key: row for row in self.tasks if row.item < 0}


# What may have changed, as a tuple (a value changes by assignment, as in the ORM).
_run_changing = attrgetter(*RUN_CHANGING)
_task_changing = attrgetter(*TASK_CHANGING)


def lock(cursor: RawCursor, found: Statements, run_id: str, now: datetime,
         run: RunState | None = None) -> Loaded | None:
    """Write the run's row, so that concurrent deciders of one run take turns (the row
    lock on PostgreSQL, the write lock on SQLite), then read the run and its tasks.
    With ``run`` (as read earlier), only what may have changed since is read of it.
    None: no such run."""
    changing = cursor.rows(found.touch, {"run_id": run_id, "updated_at": now})
    if not changing:
        return None
    if run is None:
        run = RunState(*cursor.rows(found.run, {"run_id": run_id})[0])
    else:
        run = replace(run, **dict(zip(RUN_CHANGING, changing[0], strict=True)))
    return load_tasks(cursor, found, run)


def load(cursor: RawCursor, found: Statements, run_id: str) -> Loaded | None:
    """The run and its tasks, as they are (no turn taken: for reading)."""
    rows = cursor.rows(found.run, {"run_id": run_id})
    return load_tasks(cursor, found, RunState(*rows[0])) if rows else None


def load_tasks(cursor: RawCursor, found: Statements, run: RunState) -> Loaded:
    return Loaded(run, [TaskState(*row) for row in cursor.rows(found.tasks,
                                                                 {"run_id": run.id})])


def write(cursor: RawCursor, found: Statements, loaded: Loaded,
          created: Sequence[TaskState] = ()) -> None:
    """Insert a new run (loaded with ``new``) or write what changed, and insert
    ``created`` task runs."""
    run = loaded.run
    if loaded._run_was is None:
        cursor.execute(found.insert_run, {name: getattr(run, name) for name in RUN_COLUMNS})
        fresh = loaded.tasks
    else:
        fresh = []
        if _run_changing(run) != loaded._run_was:
            cursor.execute(found.update_run, {"run_id": run.id, **{
                name: getattr(run, name) for name in RUN_CHANGING}})
        were = loaded._tasks_were
        for row in loaded.tasks:
            was = were.get(row.id)
            now = _task_changing(row)
            if was is None or now == was:
                continue
            columns = tuple(name for name, old, new in zip(TASK_CHANGING, was, now, strict=True)
                            if old is not new and old != new)
            cursor.execute(found.update_task(columns), {
                "task_id": row.id, **{name: getattr(row, name) for name in columns}})
    cursor.execute_many(found.insert_task, [
        {name: getattr(row, name) for name in TASK_COLUMNS} for row in [*fresh, *created]])


@contextmanager
def cursor_of(db: Session) -> Iterator[RawCursor]:
    """A cursor on the connection of ``db``'s transaction: rows written through it
    commit (or roll back) with what the session writes (an audit event)."""
    with raw_cursor(db.connection().connection) as cursor:
        yield cursor


def recorded(cursor: RawCursor, found: Statements, run_id: str) -> bool:
    """Whether the action run ``run_id`` has its row: an attempt's request may have
    been sent only then."""
    return bool(cursor.rows(found.action_run, {"id": run_id}))
