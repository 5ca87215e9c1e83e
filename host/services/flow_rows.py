"""A flow run's rows on the driver's cursor: the reads and writes every task makes.

Each task of a flow reads its run and the run's tasks and writes what its outcome
decides. Through the ORM's unit of work that cost more than the action the task
runs; here the statements are rendered once per database (:class:`host.db.Prepared`),
rows are read into detached ``FlowRun``/``TaskRun`` objects (so the deciding code is
the same whoever loads them), and only the rows that changed are written back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from flask import Flask
from sqlalchemy import Table, bindparam, insert, select, update

from ..db import FlowRun, Prepared, RawCursor, Run, TaskRun, get_database

__all__ = ["Loaded", "load", "statements", "write"]

_RUN = cast(Table, FlowRun.__table__)
_TASK = cast(Table, TaskRun.__table__)
RUN_COLUMNS = tuple(column.key for column in _RUN.columns)
TASK_COLUMNS = tuple(column.key for column in _TASK.columns)
# What deciding may change: everything but the identity of a row.
RUN_CHANGING = ("status", "output", "error", "finished_at", "updated_at")
TASK_CHANGING = ("status", "attempt", "ready_at", "started_at", "finished_at", "input",
                 "output", "error", "runs", "holder", "lease_expires_at", "current_run")


@dataclass(frozen=True, slots=True)
class Statements:
    touch: Prepared
    run: Prepared
    tasks: Prepared
    insert_run: Prepared
    insert_task: Prepared
    update_run: Prepared
    update_task: Prepared
    task_owner: Prepared  # a task run's flow run
    action_run: Prepared  # whether an action run row exists


def statements(app: Flask) -> Statements:
    """The statements, rendered once per application for its database."""
    found: Statements | None = app.extensions.get("minihost.flow_rows")
    if found is None:
        dialect = get_database(app).engine.dialect
        run_types = {column.key: column.type for column in _RUN.columns}
        task_types = {column.key: column.type for column in _TASK.columns}
        found = Statements(
            touch=Prepared(update(_RUN).where(_RUN.c.id == bindparam("run_id")), dialect,
                           ("updated_at",), run_types),
            run=Prepared(select(_RUN).where(_RUN.c.id == bindparam("run_id")), dialect, (), {},
                         results=True),
            tasks=Prepared(select(_TASK).where(_TASK.c.flow_run_id == bindparam("run_id"))
                           .order_by(_TASK.c.id), dialect, (), {}, results=True),
            insert_run=Prepared(insert(_RUN), dialect, RUN_COLUMNS, run_types),
            insert_task=Prepared(insert(_TASK), dialect, TASK_COLUMNS, task_types),
            update_run=Prepared(update(_RUN).where(_RUN.c.id == bindparam("run_id")), dialect,
                                RUN_CHANGING, run_types),
            update_task=Prepared(update(_TASK).where(_TASK.c.id == bindparam("task_id")),
                                 dialect, TASK_CHANGING, task_types),
            task_owner=Prepared(select(_TASK.c.flow_run_id).where(
                _TASK.c.id == bindparam("task_id")), dialect, (), {}),
            action_run=Prepared(select(Run.id).where(Run.id == bindparam("id")), dialect,
                                (), {}))
        app.extensions["minihost.flow_rows"] = found
    return found


class Loaded:
    """A run and its task runs as read, and what they were when read: :func:`write`
    writes back only what changed since."""

    __slots__ = ("run", "tasks", "_run_was", "_tasks_were")

    def __init__(self, run: FlowRun, tasks: list[TaskRun], new: bool = False) -> None:
        self.run, self.tasks = run, tasks
        self._run_was = None if new else _values(run, RUN_CHANGING)
        self._tasks_were = {} if new else {row.id: _values(row, TASK_CHANGING) for row in tasks}

    def by_key(self) -> dict[str, TaskRun]:
        """The tasks (not forEach items) by key."""
        return {row.key: row for row in self.tasks if row.item < 0}


def _values(row: Any, columns: tuple[str, ...]) -> tuple[Any, ...]:
    return tuple(getattr(row, name) for name in columns)


def load(cursor: RawCursor, found: Statements, run_id: str) -> Loaded | None:
    rows = cursor.rows(found.run, {"run_id": run_id})
    if not rows:
        return None
    run = FlowRun(**dict(zip(RUN_COLUMNS, rows[0], strict=True)))
    tasks = [TaskRun(**dict(zip(TASK_COLUMNS, row, strict=True)))
             for row in cursor.rows(found.tasks, {"run_id": run_id})]
    return Loaded(run, tasks)


def write(cursor: RawCursor, found: Statements, loaded: Loaded,
          created: Sequence[TaskRun] = ()) -> None:
    """Insert a new run (loaded with ``new``) or write what changed, and insert
    ``created`` task runs."""
    run = loaded.run
    if loaded._run_was is None:
        cursor.execute(found.insert_run, {name: getattr(run, name) for name in RUN_COLUMNS})
        fresh = loaded.tasks
    else:
        fresh = []
        if _values(run, RUN_CHANGING) != loaded._run_was:
            cursor.execute(found.update_run, {"run_id": run.id, **{
                name: getattr(run, name) for name in RUN_CHANGING}})
        were = loaded._tasks_were
        cursor.execute_many(found.update_task, [
            {"task_id": row.id, **{name: getattr(row, name) for name in TASK_CHANGING}}
            for row in loaded.tasks if row.id in were
            and _values(row, TASK_CHANGING) != were[row.id]])
    cursor.execute_many(found.insert_task, [
        {name: getattr(row, name) for name in TASK_COLUMNS} for row in [*fresh, *created]])
