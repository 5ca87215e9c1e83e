"""Proactive token refresh (FLOWS.md §8): the access tokens of installations that
enabled flows use are renewed before they expire, by whichever process's timer
finds them first, so a scheduled run at 3 a.m. does not wait on a token request.

Each refresh goes through the single-flight rules of MANIFEST §3
(:func:`host.auth.refresh.refresh`): one refresh per installation across every
process, a refresh that died mid-way detected and never silently repeated with a
rotated token. Candidates come from the plaintext ``token_expires_at`` (no
decryption to find them); a token not yet due once read is remembered per process
until it is, so the timer does not read credentials every round.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta

from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from ..auth.refresh import can_refresh, load, margin, needs_refresh, refresh
from ..db import Flow, Installation, get_database, utcnow
from ..errors import MinihostError
from . import flows as flow_service
from .installations import manifest_of

__all__ = ["LOOKAHEAD", "refresh_due"]

logger = logging.getLogger(__name__)

LOOKAHEAD = timedelta(minutes=5)  # the widest refresh margin (auth.refresh.margin)
REFRESH_SECONDS = 30.0  # how long one proactive refresh may take
_KNOWN: dict[str, tuple[int, float]] = {}  # installation → (row version, refresh from)
_LOCK = threading.Lock()


def refresh_due(app: Flask) -> int:
    """Renew the tokens due for renewal of installations enabled flows use; how many
    were renewed (here or, meanwhile, by another process)."""
    now = utcnow()
    with get_database(app).sessions() as db:
        due = list(db.execute(select(Installation).where(
            Installation.deleted_at.is_(None), Installation.status == "active",
            Installation.token_expires_at.is_not(None),
            Installation.token_expires_at <= now + LOOKAHEAD)).scalars())
        if not due:
            return 0
        used = _used(app, db, {row.workspace_id for row in due})
        targets = []
        for row in due:
            if (row.workspace_id, row.name) not in used:
                continue
            with _LOCK:
                known = _KNOWN.get(row.id)
            if known is not None and known[0] == row.row_version and time.time() < known[1]:
                continue
            try:
                manifest = manifest_of(app, db, row)
            except MinihostError:
                continue
            if can_refresh(manifest):
                db.expunge(row)
                targets.append((row, manifest))
    renewed = 0
    for row, manifest in targets:
        try:
            held = load(app, row.id, actor="system", reason="proactive refresh", row=row)
            if not needs_refresh(held.values):
                expires = float(held.values.get("expiresAt") or 0)
                with _LOCK:
                    _KNOWN[row.id] = (held.version, expires - margin(held.values))
                continue
            refresh(app, row.id, manifest, held.version, actor="system",
                    deadline=time.monotonic() + REFRESH_SECONDS)
            renewed += 1
        except MinihostError as error:  # recorded on the installation by refresh itself
            logger.warning("proactive refresh of installation %s: %s", row.id, error.detail)
    return renewed


def _used(app: Flask, db: Session, workspaces: set[str]) -> set[tuple[str, str]]:
    """The (workspace, connection name) pairs enabled flows of ``workspaces`` use."""
    used: set[tuple[str, str]] = set()
    for flow in db.execute(select(Flow).where(Flow.enabled.is_(True),
                                              Flow.workspace_id.in_(workspaces))).scalars():
        try:
            compiled = flow_service.compiled(app, db, flow.workspace_id, flow.id, flow.version,
                                             check=False)
        except MinihostError:
            continue
        used.update((flow.workspace_id, name) for name in compiled.connections)
    return used
