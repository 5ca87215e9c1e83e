"""Token refresh that never loses a token (MANIFEST §3).

One refresh per installation at a time, across threads and processes: the
refresher takes a lease on the installation row by compare-and-set (an
``UPDATE … WHERE lease is free``, which SQLite and PostgreSQL both do
atomically) and holds **no** database transaction while the token request is
in flight. Others wait, re-reading the row, and reuse what the refresher
stored. Before the request leaves, ``refresh_started_at`` is committed; it is
cleared in the same write that stores the new tokens. If a refresher dies or
cannot store what it got, that marker says the outcome is unknown: the next
attempt tries once more (a provider that does not rotate refresh tokens then
simply answers), and when the provider refuses the old refresh token the
installation becomes ``reconnect_required`` with the reason — never a silent
loss, never a retry loop.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from flask import Flask
from sqlalchemy import or_, update
from sqlalchemy.exc import SQLAlchemyError

from .. import audit, vault
from ..db import Installation, changed, get_database, utcnow
from ..errors import (
    BadInput,
    ConnectFailed,
    EgressDenied,
    PluginFailed,
    ReconnectRequired,
    RefreshInProgress,
    RefreshOutcomeUnknown,
    RenderFailed,
    RequestFailed,
)
from ..faults import fault
from ..manifest import Manifest
from ..processes import holder, holder_dead
from . import flow

__all__ = [
    "Held",
    "Keeper",
    "can_refresh",
    "ensure_fresh",
    "load",
    "needs_refresh",
    "refresh",
]

log = logging.getLogger(__name__)
DEFAULT_MARGIN = 300.0
MIN_LEASE_SECONDS = 3.0
LEASE_MARGIN_SECONDS = 2.0


class _Superseded(Exception):
    """Newer credentials were stored while this refresh was in flight."""


@dataclass(frozen=True, slots=True)
class Held:
    """Credentials as read, with the row version they were read at."""

    values: dict[str, Any]
    version: int


def margin(credentials: dict[str, Any]) -> float:
    """Refresh this many seconds early: 5 minutes, or a tenth of the token's
    lifetime when that is smaller, so short-lived tokens still get used."""
    lifetime = credentials.get("expiresIn")
    if isinstance(lifetime, (int, float)) and not isinstance(lifetime, bool) and lifetime > 0:
        return min(DEFAULT_MARGIN, lifetime / 10)
    return DEFAULT_MARGIN


def needs_refresh(credentials: dict[str, Any], now: float | None = None) -> bool:
    expires_at = credentials.get("expiresAt")
    if not isinstance(expires_at, (int, float)) or isinstance(expires_at, bool):
        return False
    return expires_at - (now if now is not None else time.time()) <= margin(credentials)


def _row(app: Flask, installation_id: str) -> Installation:
    with get_database(app).sessions() as db:
        row = db.get(Installation, installation_id)
        if row is None or row.deleted_at is not None:
            raise ReconnectRequired(f"installation {installation_id} no longer exists")
        db.expunge(row)
        return row


def load(
    app: Flask, installation_id: str, *, actor: str, reason: str, row: Installation | None = None
) -> Held:
    """Read (and audit) the installation's credentials with their version; ``row``,
    when the caller just read it, saves reading it again."""
    if row is None:
        row = _row(app, installation_id)
    return Held(vault.read_credentials(app, row, actor=actor, reason=reason), row.row_version)


def ensure_fresh(
    app: Flask, installation_id: str, manifest: Manifest, held: Held, *, actor: str, deadline: float
) -> Held:
    """Refresh before use when the token expires within the margin."""
    if not can_refresh(manifest) or not needs_refresh(held.values):
        return held
    return refresh(app, installation_id, manifest, held.version, actor=actor, deadline=deadline)


def can_refresh(manifest: Manifest) -> bool:
    """Whether the manifest's auth type can renew its credentials (decided when the
    manifest was compiled: a ``refresh_token`` request, or an auth type's ``refresh``)."""
    return manifest.auth.can_refresh


class Keeper:
    """The :class:`host.execution.Credentials` of one installation for one step:
    read once, renewed before they expire and once after the provider refused them."""

    def __init__(self, app: Flask, installation: Installation, manifest: Manifest, *,
                 actor: str, reason: str) -> None:
        self.app, self.installation, self.manifest = app, installation, manifest
        self.actor, self.reason = actor, reason
        self.can_renew = can_refresh(manifest)
        self.held: Held | None = None

    def current(self, deadline: float, renew: bool) -> dict[str, Any]:
        held = load(self.app, self.installation.id, actor=self.actor, reason=self.reason,
                    row=self.installation)
        if renew:
            held = ensure_fresh(self.app, self.installation.id, self.manifest, held,
                                actor=self.actor, deadline=deadline)
        self.held = held
        return held.values

    def renew(self, deadline: float) -> dict[str, Any]:
        seen = self.held.version if self.held is not None else self.installation.row_version
        self.held = refresh(self.app, self.installation.id, self.manifest, seen,
                            actor=self.actor, deadline=deadline)
        return self.held.values


def _owner() -> str:
    """Who holds a lease: the process (so a dead holder can be recognised), then the
    thread and a counter (so each attempt is its own)."""
    return (f"{holder(labelled=False)}|{threading.get_ident() % 10**6}|"
            f"{time.monotonic_ns() % 10**12}")


def _break_lease(app: Flask, installation_id: str, owner: str) -> None:
    """Free a dead holder's lease at once (compare-and-set on its owner); its
    ``refresh_started_at`` marker stays, so the next refresher knows the outcome of
    the dead one's request is unknown."""
    with get_database(app).transaction() as db:
        freed = changed(db.execute(
            update(Installation)
            .where(Installation.id == installation_id, Installation.lease_owner == owner)
            .values(lease_owner=None, lease_expires_at=None)
        ))
    if freed:
        log.warning("installation %s: the refresh lease of %s was freed because that "
                    "process is gone", installation_id, owner)


def _lease_seconds(deadline: float) -> float:
    """The lease outlives the refresh request: it lasts until the caller's deadline
    (when that request is abandoned at the latest), plus a margin."""
    return max(MIN_LEASE_SECONDS, deadline - time.monotonic() + LEASE_MARGIN_SECONDS)


def _take_lease(app: Flask, installation_id: str, owner: str, deadline: float) -> bool:
    now = utcnow()
    with get_database(app).transaction() as db:
        taken = changed(db.execute(
            update(Installation)
            .where(
                Installation.id == installation_id,
                Installation.deleted_at.is_(None),
                or_(Installation.lease_expires_at.is_(None), Installation.lease_expires_at < now),
            )
            .values(
                lease_owner=owner,
                lease_expires_at=now + timedelta(seconds=_lease_seconds(deadline)),
            )
        ))
    return taken == 1


def _release(app: Flask, installation_id: str, owner: str, **values: Any) -> int:
    with get_database(app).transaction() as db:
        return changed(db.execute(
            update(Installation)
            .where(Installation.id == installation_id, Installation.lease_owner == owner)
            .values(lease_owner=None, lease_expires_at=None, **values)
        ))


def _reconnect(app: Flask, installation_id: str, owner: str, reason: str) -> ReconnectRequired:
    message = f"{reason}; connect this installation again"
    with get_database(app).transaction() as db:
        db.execute(
            update(Installation)
            .where(Installation.id == installation_id)
            .values(
                status="reconnect_required",
                error=message,
                updated_at=utcnow(),
                lease_owner=None,
                lease_expires_at=None,
                refresh_started_at=None,
            )
        )
        row = db.get(Installation, installation_id)
        audit.record(
            db,
            "reconnect_required",
            actor="system",
            app=app,
            workspace_id=row.workspace_id if row else None,
            installation_id=installation_id,
            detail={"reason": reason},
        )
    return ReconnectRequired(f"installation {installation_id}: {message}")


def refresh(
    app: Flask,
    installation_id: str,
    manifest: Manifest,
    seen_version: int,
    *,
    actor: str,
    deadline: float,
) -> Held:
    """Fresh credentials for the installation, refreshed by exactly one caller.

    ``seen_version`` is the row version of the credentials the caller found
    stale: if the row has moved on, someone already refreshed and those are used.
    """
    owner = _owner()
    delay = 0.02
    while True:
        row = _row(app, installation_id)
        if row.status == "reconnect_required":
            raise ReconnectRequired(f"installation {installation_id}: {row.error}")
        if row.row_version != seen_version:
            return load(app, installation_id, actor=actor, reason="refresh")
        if row.lease_owner and holder_dead(row.lease_owner):
            _break_lease(app, installation_id, row.lease_owner)
        if _take_lease(app, installation_id, owner, deadline):
            return _lead(app, installation_id, manifest, seen_version, owner, actor, deadline)
        if time.monotonic() + delay >= deadline:
            raise RefreshInProgress(
                f"installation {installation_id}: another request is refreshing its token; "
                "try again in a moment"
            )
        time.sleep(delay)
        delay = min(delay * 2, 0.25)


def _lead(
    app: Flask,
    installation_id: str,
    manifest: Manifest,
    seen_version: int,
    owner: str,
    actor: str,
    deadline: float,
) -> Held:

    try:
        row = _row(app, installation_id)
        if row.row_version != seen_version:  # refreshed while we took the lease
            _release(app, installation_id, owner)
            return load(app, installation_id, actor=actor, reason="refresh")
        unknown_since = row.refresh_started_at
        current = vault.read_credentials(app, row, actor=actor, reason="refresh")
        with get_database(app).transaction() as db:
            db.execute(
                update(Installation)
                .where(Installation.id == installation_id, Installation.lease_owner == owner)
                .values(refresh_started_at=unknown_since or utcnow())
            )
        fault("refresh.before_call")
        answer = flow.refresh(app, row, manifest, current, actor=actor, deadline=deadline)
        if answer is None:
            title = flow.auth_type_of(app, manifest)[0].title
            raise _reconnect(app, installation_id, owner,
                             f"{title} cannot renew these credentials")
        result = answer
        fault("refresh.after_token_response")
    except BaseException:
        _release(app, installation_id, owner)
        raise
    if not result.ok:
        return _failed(
            app, installation_id, owner, seen_version, result.error, unknown_since, actor
        )
    fresh = {**current, **result.values}
    try:
        with get_database(app).transaction() as db:
            stored = db.get(Installation, installation_id)
            if stored is None:
                raise RuntimeError("the installation disappeared while refreshing")
            if stored.row_version != seen_version:
                # Someone stored newer credentials meanwhile (a reconnect, a sibling whose
                # lease outlived ours): theirs win, ours are dropped.
                newer = True
            else:
                newer = False
            if newer:
                if stored.lease_owner == owner:
                    stored.lease_owner = stored.lease_expires_at = None
                raise _Superseded()
            vault.store_credentials(app, stored, fresh)
            stored.row_version += 1
            stored.refresh_started_at = None
            stored.lease_owner = stored.lease_expires_at = None
            if stored.status in ("error", "pending"):
                stored.status, stored.error = "active", None
            stored.updated_at = utcnow()
            version = stored.row_version
    except _Superseded:
        return load(app, installation_id, actor=actor, reason="refresh")
    except Exception as error:  # the database, or values that cannot be encrypted
        log.error("installation %s: new tokens could not be stored: %s", installation_id, error)
        try:
            raise _reconnect(
                app,
                installation_id,
                owner,
                "a token refresh succeeded but its tokens could not be stored "
                f"({type(error).__name__})",
            ) from None
        except SQLAlchemyError:
            raise ReconnectRequired(
                f"installation {installation_id}: a token refresh succeeded but its tokens "
                "could not be stored; connect it again"
            ) from None
    fault("refresh.after_commit")
    return Held(fresh, version)


def _invalid_grant(error: Any) -> bool:
    message = (getattr(error, "provider_message", None) or str(error)).lower()
    return "invalid_grant" in message


def _failed(
    app: Flask,
    installation_id: str,
    owner: str,
    seen_version: int,
    error: Any,
    unknown_since: Any,
    actor: str,
) -> Held:
    if isinstance(error, RequestFailed) and _invalid_grant(error):
        row = _row(app, installation_id)
        if row.row_version != seen_version:  # a sibling stored newer tokens meanwhile
            _release(app, installation_id, owner)
            return load(app, installation_id, actor=actor, reason="refresh")
        if unknown_since is not None:
            reason = (
                f"a token refresh started at {unknown_since.isoformat(timespec='seconds')} "
                "did not finish, and the provider now refuses the refresh token"
            )
        else:
            reason = f"the provider refused the refresh token ({error.provider_message or error})"
        raise _reconnect(app, installation_id, owner, reason)
    if isinstance(error, ReconnectRequired):
        # The auth type found the answer unusable (no access token in it, say).
        raise _reconnect(app, installation_id, owner, error.detail)
    if isinstance(error, BadInput):
        # A plugin's auth type refused what is stored (a key it can no longer use):
        # nothing was sent, and only new credentials will help.
        raise _reconnect(app, installation_id, owner, f"the stored credentials can no longer "
                         f"be used ({error.detail})")
    if isinstance(error, (ConnectFailed, RequestFailed, EgressDenied, RenderFailed,
                          PluginFailed)):
        # Nothing was issued: the request never left (or a plugin stopped it), never
        # arrived, or the provider answered with an error of its own.
        _release(app, installation_id, owner, refresh_started_at=unknown_since)
        raise error
    # It may have arrived (a timeout, a broken answer): keep the marker so the next
    # attempt knows the outcome is unknown.
    _release(app, installation_id, owner)
    raise RefreshOutcomeUnknown(
        f"installation {installation_id}: the token refresh may have reached the provider "
        f"but its answer was lost ({error}); the next use tries again"
    )
