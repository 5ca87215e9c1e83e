"""The one writer of :class:`~host.db.AuditEvent` rows.

Every event is also offered to plugins through the ``audit_event`` hook once
its transaction commits (an event rolled back with its action never reaches
them); a plugin that fails there is reported and never stops anything.
Audit rows are append-only: nothing in the host edits or deletes them.
"""

from __future__ import annotations

import functools
from typing import Any

from flask import Flask, current_app, has_app_context
from sqlalchemy import event as orm_event
from sqlalchemy.orm import Session

from .db import AFTER_LOCK, AuditEvent, new_id, utcnow

__all__ = ["record"]


def record(
    db: Session,
    kind: str,
    *,
    actor: str,
    workspace_id: str | None = None,
    installation_id: str | None = None,
    detail: dict[str, Any] | None = None,
    app: Flask | None = None,
) -> AuditEvent:
    """Add an audit event to ``db``'s transaction (the caller commits).

    ``actor`` is who acted: ``user:<id>``, ``token:<id>``, ``cli`` or ``system``.
    ``detail`` must never hold a secret; callers pass names and reasons only.
    """
    db.flush()  # rows the event refers to go first (no ORM relationship orders them)
    event = AuditEvent(
        id=new_id("aud"),
        at=utcnow(),
        kind=kind,
        actor=actor,
        workspace_id=workspace_id,
        installation_id=installation_id,
        detail=detail or {},
    )
    db.add(event)
    application = app or (current_app._get_current_object() if has_app_context() else None)  # type: ignore[attr-defined]
    if application is not None:
        _after_commit(db, application, event)
    return event


_PENDING = "minihost.audit_pending"


def _after_commit(db: Session, app: Flask, event: AuditEvent) -> None:
    pending = db.info.get(_PENDING)
    if pending is None:
        pending = db.info[_PENDING] = []
        orm_event.listen(db, "after_commit", _offer)
        orm_event.listen(db, "after_transaction_end", _forget)
    pending.append((app, as_dict(event)))


def _offer(db: Session) -> None:
    from .plugins import notify

    pending, db.info[_PENDING] = db.info[_PENDING], []
    later = db.info.get(AFTER_LOCK)
    for app, event in pending:
        if later is not None:  # the write lock is still held: tell plugins after it
            later.append(functools.partial(notify, app, "audit_event", event=event))
        else:
            notify(app, "audit_event", event=event)


def _forget(db: Session, transaction: Any) -> None:
    """A transaction that ended without committing (rolled back, or closed):
    its events never happened. A commit has already offered and cleared them."""
    if transaction.parent is None:
        db.info[_PENDING] = []


def as_dict(event: AuditEvent) -> dict[str, Any]:
    """The public shape of an audit event (also the API's)."""
    return {
        "id": event.id,
        "at": event.at.isoformat(),
        "actor": event.actor,
        "workspace": event.workspace_id,
        "installation": event.installation_id,
        "kind": event.kind,
        "detail": event.detail,
    }
