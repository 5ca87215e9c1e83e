"""Compiled, immutable flows: what the runtime works with.

Built once by :func:`host.flows.compile_flow` after the lint passed, so a run never
parses a template, walks the document or derives the input schema again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .schedule import Schedule

__all__ = ["ActionCall", "Condition", "EventTrigger", "Flow", "ForEach", "Retry", "Task"]


@dataclass(frozen=True, slots=True)
class Condition:
    """One ``if``/``filter`` entry: ``value`` and ``to`` are compiled templates."""

    value: Any
    op: str
    to: Any


@dataclass(frozen=True, slots=True)
class EventTrigger:
    """An event trigger: the connection (None: the workspace's internal events), the
    event type ("*": any), the filter and the run's input as compiled templates."""

    index: int
    connection: str | None
    event: str
    filter: tuple[Condition, ...]
    input: Any


@dataclass(frozen=True, slots=True)
class Retry:
    attempts: int
    initial_seconds: float
    factor: float
    max_seconds: float

    def delay(self, attempt: int) -> float:
        """Seconds to wait before attempt ``attempt + 1`` (``attempt`` ≥ 1 failed)."""
        return float(min(self.max_seconds, self.initial_seconds * self.factor ** (attempt - 1)))


@dataclass(frozen=True, slots=True)
class ActionCall:
    """An action of the installation named ``connection``.

    ``inputs`` are the compiled fixed values and templates by parameter; ``blanks``
    the parameters given at each run (``tasks.<task>.<parameter>`` of the run's
    input). ``repeatable`` says whether an attempt that may have reached the provider
    can be repeated (every request a ``GET``, or the action declares itself
    idempotent or sends an idempotency key)."""

    connection: str
    action: str
    inputs: tuple[tuple[str, Any], ...]
    blanks: tuple[str, ...]
    timeout: float
    retry: Retry | None
    repeatable: bool
    reads_tasks: bool = True  # whether an input names tasks.… (their results are read)


@dataclass(frozen=True, slots=True)
class ForEach:
    items: Any
    name: str
    call: ActionCall | None
    map: Any
    parallelism: int
    max_items: int


@dataclass(frozen=True, slots=True)
class Task:
    """One task: exactly one of ``call`` (an action), ``map``, ``for_each``, or a wait
    (``wait_seconds`` or ``wait_until``). ``needs`` keeps the document's order."""

    key: str
    kind: str  # action | map | forEach | wait | dataSource
    needs: tuple[tuple[str, str], ...]
    join: str
    conditions: tuple[Condition, ...]
    call: ActionCall | None = None
    map: Any = None
    for_each: ForEach | None = None
    wait_seconds: float | None = None
    wait_until: Any = None
    # dataSource: (connection, data source name): the task lists its records.
    data_source: tuple[str, str] | None = None

    @property
    def retry(self) -> Retry | None:
        if self.call is not None:
            return self.call.retry
        if self.for_each is not None and self.for_each.call is not None:
            return self.for_each.call.retry
        return None


@dataclass(frozen=True, slots=True)
class Flow:
    """A valid flow document, compiled. ``order`` lists the task keys so that every
    task comes after the tasks it needs; ``downstream`` maps a task to the tasks that
    need it."""

    key: str
    title: str
    description: str
    enabled: bool
    budget_seconds: int
    tasks: Mapping[str, Task]
    order: tuple[str, ...]
    downstream: Mapping[str, tuple[str, ...]]
    output: Any
    input_schema: Mapping[str, Any]
    triggers: tuple[Mapping[str, Any], ...]
    document: Mapping[str, Any]
    connections: tuple[str, ...]
    # The input schema's validator, built once: every start checks its body with it.
    input_validator: Any = None
    schedules: tuple[Schedule, ...] = ()
    events: tuple[EventTrigger, ...] = ()
