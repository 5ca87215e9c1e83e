"""The one writer of :class:`~host.db.AuditEvent` rows.

Every event is also offered to plugins through the ``audit_event`` hook; a
plugin that fails there is logged and never stops the action being audited.
Audit rows are append-only: nothing in the host edits or deletes them.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, current_app, has_app_context
from sqlalchemy.orm import Session

from .db import AuditEvent, new_id, utcnow

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
        _notify(application, event)
    return event


def _notify(app: Flask, event: AuditEvent) -> None:
    from .plugins import notify

    notify(app, "audit_event", event=as_dict(event))


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
