"""The DAG rules (FLOWS.md §2–§3): which tasks become ready or skipped, and the outcome.

Pure functions of the task states (and, for ``if``, the values templates see), so
the executor can apply them inside the transaction that records a task's outcome
and commit the successors it makes ready together with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import regex

from .model import Condition, Flow, Task
from .templates import MISSING, TemplateError, render

__all__ = ["FINISHED", "TERMINAL", "advance", "condition_holds", "outcome"]

# A task in one of these states has its final result (``unknown`` waits for a person).
TERMINAL = frozenset({"succeeded", "failed", "skipped", "cancelled"})
FINISHED = frozenset({"succeeded", "failed"})
MATCH_TIMEOUT = 0.1  # seconds one `matches` may take


def _link_holds(condition: str, status: str) -> bool | None:
    """True/False once ``status`` decides the link, None while it may still hold."""
    if status not in TERMINAL:
        return None
    if condition == "completed":
        return status == "succeeded"
    if condition == "failed":
        return status == "failed"
    return status in FINISHED  # finished


def _compare(op: str, value: Any, to: Any) -> bool:
    if op == "exists":
        return value is not MISSING and value is not None
    if op == "notExists":
        return value is MISSING or value is None
    if value is MISSING:
        value = None
    if to is MISSING:
        to = None
    if op == "equals":
        return bool(value == to)
    if op == "notEquals":
        return bool(value != to)
    if op in ("in", "notIn"):
        inside = isinstance(to, list) and value in to
        return inside if op == "in" else not inside
    if op == "contains":
        if isinstance(value, str) and isinstance(to, str):
            return to in value
        if isinstance(value, list):
            return to in value
        if isinstance(value, dict) and isinstance(to, str):
            return to in value
        return False
    if op == "matches":
        if not isinstance(to, str) or value is None:
            return False
        text = value if isinstance(value, str) else str(value)
        try:
            return regex.search(to, text, timeout=MATCH_TIMEOUT) is not None
        except (regex.error, TimeoutError):
            return False
    numbers = (int, float)
    comparable = (isinstance(value, numbers) and isinstance(to, numbers)
                  and not isinstance(value, bool) and not isinstance(to, bool)) or (
        isinstance(value, str) and isinstance(to, str))
    if not comparable:
        return False
    if op == "gt":
        return bool(value > to)
    if op == "gte":
        return bool(value >= to)
    if op == "lt":
        return bool(value < to)
    return bool(value <= to)  # lte


def condition_holds(condition: Condition, scope: Mapping[str, Any]) -> bool:
    """One ``if``/``filter`` condition; a template that cannot be rendered makes it
    false rather than failing the run."""
    try:
        value = render(condition.value, scope)
        to = render(condition.to, scope)
    except TemplateError:
        return False
    return _compare(condition.op, value, to)


def _needs_decide(task: Task, statuses: Mapping[str, str]) -> bool | None:
    """Whether ``task``'s needs hold (True), can no longer hold (False), or may yet."""
    if not task.needs:
        return True
    results = [_link_holds(condition, statuses.get(other, "pending"))
               for other, condition in task.needs]
    if task.join == "any":
        if any(r is True for r in results):
            return True
        return False if all(r is False for r in results) else None
    if any(r is False for r in results):
        return False
    return True if all(r is True for r in results) else None


def advance(flow: Flow, statuses: Mapping[str, str],
            scope: Mapping[str, Any]) -> dict[str, str]:
    """The pending tasks that become ``ready`` or ``skipped`` now, given every task's
    status and the values ``if`` conditions read (``scope``). Skipping propagates: a
    skipped task can decide its own successors in the same call."""
    current = dict(statuses)
    decided: dict[str, str] = {}
    changed = True
    while changed:
        changed = False
        for key in flow.order:
            if current.get(key, "pending") != "pending":
                continue
            task = flow.tasks[key]
            holds = _needs_decide(task, current)
            if holds is None:
                continue
            if holds and all(condition_holds(c, scope) for c in task.conditions):
                state = "ready"
            else:
                state = "skipped"
            current[key] = decided[key] = state
            changed = changed or state == "skipped"
    return decided


def outcome(flow: Flow, statuses: Mapping[str, str]) -> tuple[str, str | None] | None:
    """``("succeeded", None)`` or ``("failed", task)`` once every task is final, else
    None. A run fails when a task failed and no task has a ``failed`` or ``finished``
    link to it (nothing handles the failure); the first such task in order names it."""
    if any(statuses.get(key, "pending") not in TERMINAL for key in flow.order):
        return None
    handled = {other for task in flow.tasks.values() for other, condition in task.needs
               if condition in ("failed", "finished")}
    for key in flow.order:
        if statuses[key] == "failed" and key not in handled:
            return "failed", key
    return "succeeded", None
