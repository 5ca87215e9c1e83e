"""The audit log as a workspace's members read it: every event of the workspace, or
of one installation, newest first. Writing events is :mod:`host.audit`'s alone."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..db import AuditEvent, Installation
from ..errors import NotFound
from ..principal import Principal
from .paging import Page, page_of

__all__ = ["list_events"]


def list_events(db: Session, principal: Principal, page: Page,
                installation_id: str | None = None) -> tuple[list[AuditEvent], str | None]:
    """One page of the workspace's audit events (of one installation when given: another
    workspace's or an unknown id answers 404, like everywhere else)."""
    query = select(AuditEvent).where(AuditEvent.workspace_id == principal.workspace_id)
    if installation_id:
        installation = db.get(Installation, installation_id)  # uninstalled ones included
        if installation is None or installation.workspace_id != principal.workspace_id:
            raise NotFound(f"no installation {installation_id}")
        query = query.where(AuditEvent.installation_id == installation_id)
    return page_of(db, query, AuditEvent.id, page)
