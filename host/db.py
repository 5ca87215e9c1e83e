"""Database setup and the data model (SQLAlchemy 2.0, typed ``Mapped`` columns).

The engine and session factory live in ``app.extensions["minihost.db"]``;
nothing here is a module global, so two apps in one process never share a
database. The schema changes only through the Alembic revisions in
``host/migrations`` (a test proves they produce exactly these models).

Ids are strings: a short type prefix, then 26 characters of Crockford base32
whose first ten encode the creation time in milliseconds. They sort by
creation time, which gives stable cursor pagination, and reveal nothing about
how many objects exist.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any, cast

from flask import Flask, g
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    bindparam,
    case,
    create_engine,
    event,
    literal_column,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, CursorResult, Engine, Result, make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.types import TypeDecorator

__all__ = [
    "ActionUsage",
    "ApiToken",
    "AppClient",
    "AuditEvent",
    "Base",
    "CatalogError",
    "DataRecord",
    "DataSourceState",
    "Database",
    "EventRun",
    "FlowEventTrigger",
    "FlowSchedule",
    "InboundEvent",
    "Installation",
    "LoginSession",
    "Membership",
    "MiniApp",
    "OAuthState",
    "Run",
    "ScheduleTick",
    "User",
    "Workspace",
    "action_use_statement",
    "exclusive",
    "first_id_at",
    "get_database",
    "insert_ignoring",
    "new_id",
    "record_action_use",
    "session",
    "utcnow",
]

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def _crockford(value: int) -> str:
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def new_id(prefix: str) -> str:
    """A time-ordered unique id such as ``ins_01JD…`` (ULID layout)."""
    value = (int(time.time() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
    return f"{prefix}_{_crockford(value)}"


def first_id_at(prefix: str, moment: datetime) -> str:
    """The smallest id :func:`new_id` can give at ``moment``: every id made before it
    sorts lower, so "created before" is a range of the primary key."""
    return f"{prefix}_{_crockford(int(moment.timestamp() * 1000) << 80)}"


def changed(result: Result[Any]) -> int:
    """How many rows an UPDATE or DELETE changed: its compare-and-set outcome.
    (SQLAlchemy types ``execute`` as returning a plain Result.)"""
    return cast(CursorResult[Any], result).rowcount


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite drops the offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None:
            if value.tzinfo is None:
                raise ValueError("naive datetime given to the database; use host.db.utcnow()")
            value = value.astimezone(UTC)
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ID = String(32)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON(), str: Text()}


class User(Base):
    __tablename__ = "user"

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=lambda: new_id("usr"))
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str | None]
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Workspace(Base):
    __tablename__ = "workspace"

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=lambda: new_id("wsp"))
    name: Mapped[str]
    personal: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Membership(Base):
    __tablename__ = "membership"
    __table_args__ = (UniqueConstraint("user_id", "workspace_id"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=lambda: new_id("mem"))
    user_id: Mapped[str] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), index=True)
    workspace_id: Mapped[str] = mapped_column(
        ForeignKey("workspace.id", ondelete="CASCADE"), index=True
    )
    role: Mapped[str] = mapped_column(String(16))  # owner | member
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiToken(Base):
    """A program's credential. Only a hash of the secret is kept."""

    __tablename__ = "api_token"

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=lambda: new_id("tok"))
    user_id: Mapped[str] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), index=True)
    workspace_id: Mapped[str] = mapped_column(
        ForeignKey("workspace.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str]
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    # A flow token: it may only start this flow (FLOWS.md §4).
    flow_id: Mapped[str | None] = mapped_column(ForeignKey("flow.id", ondelete="CASCADE"))


class LoginSession(Base):
    """A person's signed-in browser. The cookie holds a random secret whose hash is
    kept here, so a session survives restarts, can be listed and revoked, and a
    replayed cookie stops working the moment its row is revoked."""

    __tablename__ = "login_session"

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=lambda: new_id("ses"))
    user_id: Mapped[str] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), index=True)
    workspace_id: Mapped[str] = mapped_column(
        ForeignKey("workspace.id", ondelete="CASCADE")
    )
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_agent: Mapped[str] = mapped_column(String(256), default="")
    address: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class MiniApp(Base):
    """A catalog entry: one valid manifest per name and version."""

    __tablename__ = "miniapp"
    __table_args__ = (UniqueConstraint("name", "version"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=lambda: new_id("app"))
    name: Mapped[str] = mapped_column(String(64), index=True)
    version: Mapped[str] = mapped_column(String(64))
    title: Mapped[str]
    manifest: Mapped[dict[str, Any]]
    digest: Mapped[str] = mapped_column(String(64))
    origin: Mapped[str] = mapped_column(String(16))  # folder | plugin | upload
    location: Mapped[str]
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    synced_at: Mapped[datetime] = mapped_column(default=utcnow)


class CatalogError(Base):
    """A manifest the last catalog sync refused, kept so operators can see why."""

    __tablename__ = "catalog_error"

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=lambda: new_id("cer"))
    origin: Mapped[str] = mapped_column(String(16))
    location: Mapped[str]
    problems: Mapped[list[dict[str, str]]] = mapped_column(JSON)
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)


class AppClient(Base):
    """The operator's OAuth client for a mini-app; the secret is vault-encrypted."""

    __tablename__ = "app_client"

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=lambda: new_id("cli"))
    miniapp: Mapped[str] = mapped_column(String(64), unique=True)
    client_id: Mapped[str]
    client_secret: Mapped[bytes | None] = mapped_column(LargeBinary)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Installation(Base):
    """A mini-app installed in a workspace, with its encrypted credentials.

    ``lease_owner``/``lease_expires_at`` are the single-flight refresh lease,
    taken by compare-and-set; ``refresh_started_at`` is written before a refresh
    request leaves and cleared when its tokens are stored, so a refresh whose
    outcome is unknown is detected; ``row_version`` counts credential writes.
    """

    __tablename__ = "installation"
    __table_args__ = (
        # Names are unique among the installations that exist: an uninstalled one's
        # name is free again (its row stays for the history).
        Index("uq_installation_workspace_id_name", "workspace_id", "name", unique=True,
              sqlite_where=text("deleted_at IS NULL"),
              postgresql_where=text("deleted_at IS NULL")),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=lambda: new_id("ins"))
    workspace_id: Mapped[str] = mapped_column(
        ForeignKey("workspace.id", ondelete="CASCADE"), index=True
    )
    # The connection name flows use (FLOWS.md §1); set for every installation that
    # exists (rows from before names were kept may hold none once uninstalled).
    name: Mapped[str] = mapped_column(String(64), nullable=True)
    miniapp: Mapped[str] = mapped_column(String(64), index=True)
    miniapp_version: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(24))
    error: Mapped[str | None]
    credentials: Mapped[bytes | None] = mapped_column(LargeBinary)
    credential_keys: Mapped[list[str]] = mapped_column(JSON, default=list)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    sandbox: Mapped[bool] = mapped_column(Boolean, default=False)
    webhook_token: Mapped[str] = mapped_column(String(64), unique=True)
    # The secret inbound webhooks are signed with, vault-encrypted: made by the host at
    # install, or set by the user to the one the provider gave them.
    webhook_secret: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_by: Mapped[str | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    deleted_at: Mapped[datetime | None]
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None]
    refresh_started_at: Mapped[datetime | None]
    row_version: Mapped[int] = mapped_column(Integer, default=0)
    # The provider answered 429 asking to wait this long: no flow task of this
    # installation starts before (FLOWS.md §8).
    paused_until: Mapped[datetime | None]
    # When the stored access token expires (from its ``expiresAt``), in the clear so
    # timers find tokens to renew without decrypting every installation.
    token_expires_at: Mapped[datetime | None] = mapped_column(index=True)

    def as_dict(self) -> dict[str, Any]:
        """The installation as the API and plugins see it: never a credential value,
        only the names of those stored (``credentialKeys``, kept beside them so
        showing them needs no decryption and no audit event)."""
        return {
            "id": self.id,
            "name": self.name,
            "miniapp": self.miniapp,
            "version": self.miniapp_version,
            "status": self.status,
            "error": self.error,
            "metadata": self.meta or {},
            "config": self.config or {},
            "sandbox": self.sandbox,
            "credentialKeys": list(self.credential_keys or []),
            "createdAt": self.created_at.isoformat(),
            "updatedAt": self.updated_at.isoformat(),
        }


class OAuthState(Base):
    """One pending OAuth connect; the ``state`` value itself is stored hashed."""

    __tablename__ = "oauth_state"

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=lambda: new_id("ost"))
    state_hash: Mapped[str] = mapped_column(String(64), unique=True)
    installation_id: Mapped[str] = mapped_column(
        ForeignKey("installation.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[str | None] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"))
    session_binding: Mapped[str | None] = mapped_column(String(64))
    code_verifier: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


class Run(Base):
    """One action run, source load or auth step, with its redacted trace.

    Every history lists runs newest first (by id) under equality filters, so each
    filter a history offers has an index of its columns followed by ``id``: the
    database walks it backwards and stops after one page, however many runs there
    are, instead of sorting all that match.
    """

    __tablename__ = "run"
    __table_args__ = (
        Index("ix_run_workspace_id_id", "workspace_id", "id"),
        Index("ix_run_workspace_id_status_id", "workspace_id", "status", "id"),
        Index("ix_run_workspace_id_kind_id", "workspace_id", "kind", "id"),
        Index("ix_run_installation_id_id", "installation_id", "id"),
        Index("ix_run_installation_id_status_id", "installation_id", "status", "id"),
        Index("ix_run_installation_id_kind_id", "installation_id", "kind", "id"),
        Index("ix_run_installation_id_name_id", "installation_id", "name", "id"),
        Index("ix_run_installation_id_name_status_id", "installation_id", "name", "status",
              "id"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=lambda: new_id("run"))
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspace.id", ondelete="CASCADE"))
    installation_id: Mapped[str | None] = mapped_column(
        ForeignKey("installation.id", ondelete="SET NULL")
    )
    kind: Mapped[str] = mapped_column(String(16))  # action | source | auth
    name: Mapped[str] = mapped_column(String(128))
    # running | succeeded | failed | interrupted (its process died while it ran)
    status: Mapped[str] = mapped_column(String(16), index=True)
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    output: Mapped[Any | None] = mapped_column(JSON)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    trace: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    sandbox: Mapped[bool] = mapped_column(Boolean, default=False)
    actor_id: Mapped[str | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    # While running: the process (``host|pid``) and the end of the run's deadline.
    holder: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None]

    def as_dict(self, with_trace: bool = False) -> dict[str, Any]:
        return run_document(self, with_trace)


@dataclass(slots=True)
class RunRecord:
    """A run as :mod:`host.execution` writes it on the hot path: the same columns as
    :class:`Run` without the ORM's bookkeeping (building and tracking an ORM instance
    cost a run more than writing its row)."""

    id: str
    workspace_id: str
    installation_id: str | None
    kind: str
    name: str
    status: str
    parameters: dict[str, Any]
    sandbox: bool
    actor_id: str | None
    started_at: datetime
    output: Any = None
    error: dict[str, Any] | None = None
    trace: dict[str, Any] | None = None
    finished_at: datetime | None = None
    duration_ms: int | None = None

    def as_dict(self, with_trace: bool = False) -> dict[str, Any]:
        return run_document(self, with_trace)


def run_document(run: Run | RunRecord, with_trace: bool = False) -> dict[str, Any]:
    """A run as the API and plugins see it; ``trace`` (already redacted) only when
    asked."""
    body: dict[str, Any] = {
        "id": run.id,
        "installation": run.installation_id,
        "kind": run.kind,
        "action": run.name,
        "status": run.status,
        "parameters": run.parameters,
        "output": run.output,
        "error": run.error,
        "sandbox": run.sandbox,
        "startedAt": run.started_at.isoformat(),
        "finishedAt": run.finished_at.isoformat() if run.finished_at else None,
        "durationMs": run.duration_ms,
    }
    if with_trace:
        body["trace"] = run.trace or {"requests": []}
    return body


class ActionUsage(Base):
    """How many times each action of an installation ran, and when it last did.

    Counted as each run is recorded (:func:`record_action_use`), so an installation's
    usage is a few rows to read rather than all its runs to count. The counts are for
    the installation's lifetime: purging old runs (``RUN_RETENTION_DAYS``) leaves them.
    """

    __tablename__ = "action_usage"

    installation_id: Mapped[str] = mapped_column(
        ForeignKey("installation.id", ondelete="CASCADE"), primary_key=True
    )
    action: Mapped[str] = mapped_column(String(128), primary_key=True)
    runs: Mapped[int] = mapped_column(BigInteger)
    last_run_at: Mapped[datetime]


def _usage_upsert(dialect: str) -> Any:
    """Insert the first use of an action, or add one to its count (both backends speak
    ``INSERT … ON CONFLICT``; SQLAlchemy spells it per dialect)."""
    table = cast(Table, ActionUsage.__table__)
    one: Any = literal_column("1")  # not a parameter: Prepared passes only named ones
    insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table).values(
        installation_id=bindparam("installation_id"), action=bindparam("action"), runs=one,
        last_run_at=bindparam("at"))
    return insert.on_conflict_do_update(
        index_elements=[table.c.installation_id, table.c.action],
        set_={"runs": table.c.runs + one,
              "last_run_at": case((insert.excluded.last_run_at > table.c.last_run_at,
                                   insert.excluded.last_run_at),
                                  else_=table.c.last_run_at)})


_USAGE_UPSERTS = {name: _usage_upsert(name) for name in ("postgresql", "sqlite")}


def record_action_use(connection: Connection, installation_id: str, action: str,
                      at: datetime) -> None:
    """Count one run of ``action`` in its installation's usage.

    One statement, meant for the transaction that writes the run's row, so the count
    commits or rolls back with it. Concurrent runs of the same action queue on the
    count's row only for the rest of their (short) transaction."""
    connection.execute(_USAGE_UPSERTS["postgresql" if connection.dialect.name == "postgresql"
                                      else "sqlite"],
                       {"installation_id": installation_id, "action": action, "at": at})


def insert_ignoring(table: Table, dialect: Any) -> Any:
    """An INSERT that skips rows whose unique key is taken (a claim another process
    wrote first, an event already kept), in the dialect's own words."""
    insert_for = postgresql.insert if dialect.name == "postgresql" else sqlite.insert
    return insert_for(table).on_conflict_do_nothing()


def action_use_statement(dialect: Any) -> Prepared:
    """:func:`record_action_use`'s statement for :meth:`Database.execute_raw` (the run
    row's hot path), taking ``installation_id``, ``action`` and ``at``."""
    upsert = _USAGE_UPSERTS["postgresql" if dialect.name == "postgresql" else "sqlite"]
    table = cast(Table, ActionUsage.__table__)
    return Prepared(upsert, dialect, (), {"at": table.c.last_run_at.type})


class Flow(Base):
    """A flow of a workspace; its documents are its versions (``FlowVersion``)."""

    __tablename__ = "flow"
    __table_args__ = (UniqueConstraint("workspace_id", "key"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=lambda: new_id("flw"))
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspace.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(200))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_by: Mapped[str | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class FlowVersion(Base):
    """One saved document of a flow; runs record the version they ran."""

    __tablename__ = "flow_version"
    __table_args__ = (UniqueConstraint("flow_id", "version"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=lambda: new_id("flv"))
    flow_id: Mapped[str] = mapped_column(ForeignKey("flow.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    document: Mapped[dict[str, Any]] = mapped_column(JSON)
    digest: Mapped[str] = mapped_column(String(64))
    created_by: Mapped[str | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class FlowRun(Base):
    """One execution of a flow version (a session): its input, state and result."""

    __tablename__ = "flow_run"
    __table_args__ = (
        Index("ix_flow_run_workspace_id_id", "workspace_id", "id"),
        Index("ix_flow_run_workspace_id_status_id", "workspace_id", "status", "id"),
        Index("ix_flow_run_flow_id_id", "flow_id", "id"),
        Index("ix_flow_run_flow_id_status_id", "flow_id", "status", "id"),
        UniqueConstraint("flow_id", "idempotency_key"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=lambda: new_id("frn"))
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspace.id", ondelete="CASCADE"))
    flow_id: Mapped[str] = mapped_column(ForeignKey("flow.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    # queued | running | succeeded | failed | cancelled | timed_out
    status: Mapped[str] = mapped_column(String(16), index=True)
    trigger: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    input: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    output: Mapped[Any | None] = mapped_column(JSON)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    sandbox: Mapped[bool] = mapped_column(Boolean, default=False)
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    actor_id: Mapped[str | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    deadline: Mapped[datetime]
    scheduled_for: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class TaskRun(Base):
    """A task of a flow run (``item`` -1), or one item of a forEach task (0, 1, …).

    Claimed by compare-and-set on ``status`` and ``attempt``; ``holder`` and
    ``lease_expires_at`` say who runs it until when; ``current_run`` is the id the
    attempt's action run row will have, written before that row exists, so after a
    crash the row's absence proves no request was sent.
    """

    __tablename__ = "task_run"
    __table_args__ = (
        UniqueConstraint("flow_run_id", "key", "item"),
        Index("ix_task_run_status_ready_at", "status", "ready_at"),
        # What a process sends to the broker: never sent, or due to be sent again.
        Index("ix_task_run_status_holder_ready_at", "status", "holder", "ready_at"),
        Index("ix_task_run_status_lease_expires_at", "status", "lease_expires_at"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=lambda: new_id("tsk"))
    flow_run_id: Mapped[str] = mapped_column(ForeignKey("flow_run.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(64))
    item: Mapped[int] = mapped_column(Integer, default=-1)
    # pending | ready | running | succeeded | failed | skipped | cancelled | unknown
    status: Mapped[str] = mapped_column(String(16))
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    ready_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    input: Mapped[Any | None] = mapped_column(JSON)
    output: Mapped[Any | None] = mapped_column(JSON)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    runs: Mapped[list[str]] = mapped_column(JSON, default=list)
    idempotency_key: Mapped[str] = mapped_column(String(64))
    holder: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None]
    current_run: Mapped[str | None] = mapped_column(ID)


class FlowSchedule(Base):
    """A schedule trigger of a flow's current version and the first tick not yet
    handled: the scheduler looks only at rows whose ``next_fire_at`` has come."""

    __tablename__ = "flow_schedule"
    __table_args__ = (UniqueConstraint("flow_id", "trigger"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=lambda: new_id("sch"))
    flow_id: Mapped[str] = mapped_column(ForeignKey("flow.id", ondelete="CASCADE"))
    trigger: Mapped[int] = mapped_column(Integer)  # its index in the document's triggers
    cron: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64))
    next_fire_at: Mapped[datetime] = mapped_column(index=True)
    last_run_id: Mapped[str | None] = mapped_column(ID)


class ScheduleTick(Base):
    """One tick of a schedule: fired (with its run), skipped (a run still going),
    missed (nothing ran then) or failed (the run could not start). The unique key
    is the claim: a tick is written once, by the transaction that starts its run."""

    __tablename__ = "schedule_tick"
    __table_args__ = (UniqueConstraint("flow_id", "trigger", "fire_at"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=lambda: new_id("tik"))
    flow_id: Mapped[str] = mapped_column(ForeignKey("flow.id", ondelete="CASCADE"))
    trigger: Mapped[int] = mapped_column(Integer)
    fire_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(16))  # fired | skipped | missed | failed
    flow_run_id: Mapped[str | None] = mapped_column(ID)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class FlowEventTrigger(Base):
    """An event trigger of a flow's current version, kept beside the document so an
    event finds the flows it starts with one indexed read."""

    __tablename__ = "flow_event_trigger"
    __table_args__ = (UniqueConstraint("flow_id", "trigger"),
                      Index("ix_flow_event_trigger_workspace_id_event", "workspace_id", "event"))

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=lambda: new_id("etr"))
    flow_id: Mapped[str] = mapped_column(ForeignKey("flow.id", ondelete="CASCADE"))
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspace.id", ondelete="CASCADE"))
    trigger: Mapped[int] = mapped_column(Integer)
    connection: Mapped[str | None] = mapped_column(String(64))  # None: internal events
    event: Mapped[str] = mapped_column(String(200))


class InboundEvent(Base):
    """An event received: from an installation's webhook, or sent by the workspace's
    own application (``source`` "internal"). ``delivery_id`` dedupes replays;
    rejected requests are kept too (without their body), with the reason."""

    __tablename__ = "inbound_event"
    __table_args__ = (
        UniqueConstraint("workspace_id", "source", "delivery_id"),
        Index("ix_inbound_event_workspace_id_id", "workspace_id", "id"),
        Index("ix_inbound_event_status_received_at", "status", "received_at"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=lambda: new_id("evt"))
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspace.id", ondelete="CASCADE"))
    installation_id: Mapped[str | None] = mapped_column(
        ForeignKey("installation.id", ondelete="SET NULL"), index=True)
    source: Mapped[str] = mapped_column(String(40))  # the installation's id, or "internal"
    type: Mapped[str] = mapped_column(String(200))
    delivery_id: Mapped[str | None] = mapped_column(String(255))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    verified: Mapped[bool] = mapped_column(Boolean)
    # received (runs not yet started) | dispatched | rejected | challenge
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None]
    data: Mapped[Any | None] = mapped_column(JSON)
    size: Mapped[int] = mapped_column(Integer, default=0)


class EventRun(Base):
    """A run an event started (or could not start): written in the run's own
    transaction, so an event starts each matching trigger once."""

    __tablename__ = "event_run"
    __table_args__ = (UniqueConstraint("event_id", "flow_id", "trigger"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=lambda: new_id("evr"))
    event_id: Mapped[str] = mapped_column(ForeignKey("inbound_event.id", ondelete="CASCADE"))
    flow_id: Mapped[str] = mapped_column(ForeignKey("flow.id", ondelete="CASCADE"))
    trigger: Mapped[int] = mapped_column(Integer)
    flow_run_id: Mapped[str | None] = mapped_column(ID)
    error: Mapped[str | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class OutboundPace(Base):
    """The shared pacing of one installation's (or mini-app's) requests under its
    manifest's ``rateLimit``: the theoretical arrival time (epoch seconds) of the
    next request, as the generic cell rate algorithm keeps it."""

    __tablename__ = "outbound_pace"

    key: Mapped[str] = mapped_column(String(160), primary_key=True)
    tat: Mapped[float] = mapped_column(Float)


class Worker(Base):
    """A ``minihost worker`` that answered recently: written by the worker every few
    seconds, read by ``/healthz`` and the workers page."""

    __tablename__ = "worker"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    concurrency: Mapped[int] = mapped_column(Integer)
    version: Mapped[str] = mapped_column(String(32))
    started_at: Mapped[datetime]
    seen_at: Mapped[datetime] = mapped_column(index=True)


class DataSourceState(Base):
    """An installation's data source: when it was last synced (None: never — the first
    sync fills the cache and emits nothing), when next, and how the last one went."""

    __tablename__ = "data_source_state"
    __table_args__ = (UniqueConstraint("installation_id", "source"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=lambda: new_id("dss"))
    installation_id: Mapped[str] = mapped_column(
        ForeignKey("installation.id", ondelete="CASCADE"))
    source: Mapped[str] = mapped_column(String(64))
    synced_at: Mapped[datetime | None]
    next_sync_at: Mapped[datetime | None] = mapped_column(index=True)
    records: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None]


class DataRecord(Base):
    """A record of an installation's data source as last seen: its hash tells a change."""

    __tablename__ = "data_record"
    __table_args__ = (UniqueConstraint("installation_id", "source", "record_id"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=lambda: new_id("rec"))
    installation_id: Mapped[str] = mapped_column(
        ForeignKey("installation.id", ondelete="CASCADE"))
    source: Mapped[str] = mapped_column(String(64))
    record_id: Mapped[str] = mapped_column(String(255))
    hash: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[str | None] = mapped_column(String(64))
    record: Mapped[Any] = mapped_column(JSON)
    seen_at: Mapped[datetime] = mapped_column(default=utcnow)


class AuditEvent(Base):
    """Who did what to which installation. Written only by ``host.audit``."""

    __tablename__ = "audit_event"
    __table_args__ = (Index("ix_audit_event_workspace_id_id", "workspace_id", "id"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=lambda: new_id("aud"))
    workspace_id: Mapped[str | None] = mapped_column(ForeignKey("workspace.id", ondelete="CASCADE"))
    installation_id: Mapped[str | None] = mapped_column(
        ForeignKey("installation.id", ondelete="SET NULL"), index=True
    )
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


AFTER_LOCK = "minihost.after_lock"


class _NoLock:
    def __enter__(self) -> None:
        return None

    def held(self) -> bool:
        return False

    def __exit__(self, *exc: object) -> None:
        return None


@dataclass(frozen=True, slots=True)
class Database:
    """One app's engine and session factory.

    SQLite lets one writer in at a time and makes the others sleep and retry
    with growing pauses; writers of one process therefore queue on a lock
    here instead, which hands over at once. PostgreSQL needs no such lock.
    """

    engine: Engine
    sessions: sessionmaker[Session]
    write_lock: Any = field(default_factory=_NoLock)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session whose work commits on success and rolls back on any error.

        Work that must follow the commit but need not hold the write lock (telling
        plugins about audit events) goes in ``session.info[AFTER_LOCK]`` and runs
        once the lock is released, so a slow plugin never stalls other writers."""
        after: list[Callable[[], None]] = []
        with self.write_lock, self.sessions() as db_session:
            db_session.info[AFTER_LOCK] = after
            with db_session.begin():
                yield db_session
        for callback in after:
            callback()

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A Core connection in a transaction, for short writes on hot paths. (The
        connection is taken from the pool before the write lock and given back after
        it: the lock is held for the transaction only.)"""
        with self.engine.connect() as connection, self.write_lock, connection.begin():
            yield connection

    @contextmanager
    def raw(self) -> Iterator[RawCursor]:
        """A transaction on the driver's own cursor, committed on success: for the
        writes every run or flow task makes (see :class:`Prepared`)."""
        connection = self.engine.raw_connection()  # before the lock, as in write()
        try:
            with self.write_lock:
                try:
                    with raw_cursor(connection) as cursor:
                        yield cursor
                    connection.commit()
                except BaseException:
                    connection.rollback()
                    raise
        finally:
            connection.close()  # back to the pool

    def execute_raw(self, statement: Prepared, values: Mapping[str, Any],
                    *also: tuple[Prepared, Mapping[str, Any]]) -> int:
        """One write on the driver's own cursor, committed: for the statements every
        run makes (see :class:`Prepared`). Returns the rows it changed. Writes in
        ``also`` follow it in the same transaction (a run's usage count)."""
        with self.raw() as cursor:
            changed = cursor.execute(statement, values)
            for following, more in also:
                cursor.execute(following, more)
        return changed

    @contextmanager
    def reading(self) -> Iterator[RawCursor]:
        """Reads on the driver's own cursor (see :class:`Prepared`), in one snapshot."""
        connection = self.engine.raw_connection()
        try:
            with raw_cursor(connection) as cursor:
                yield cursor
            connection.rollback()  # a read: end the transaction the driver may have begun
        finally:
            connection.close()

    def read_rows(self, statement: Prepared, values: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """Every row of a read on the driver's cursor (see :class:`Prepared`)."""
        with self.reading() as cursor:
            return cursor.rows(statement, values)

    def read_raw(self, statement: Prepared, values: Mapping[str, Any]) -> tuple[Any, ...] | None:
        """The first row of a one-row read on the driver's cursor (see :class:`Prepared`)."""
        rows = self.read_rows(statement, values)
        return rows[0] if rows else None


@contextmanager
def raw_cursor(connection: Any) -> Iterator[RawCursor]:
    """A cursor of a driver connection (pooled, or a session's), closed after use; the
    transaction is the caller's to end."""
    cursor = connection.cursor()
    try:
        yield RawCursor(cursor)
    finally:
        cursor.close()


class RawCursor:
    """The driver's cursor, fed :class:`Prepared` statements."""

    __slots__ = ("cursor",)

    def __init__(self, cursor: Any) -> None:
        self.cursor = cursor

    def execute(self, statement: Prepared, values: Mapping[str, Any]) -> int:
        """Run a write; the rows it changed."""
        self.cursor.execute(statement.sql, statement.parameters(values))
        return int(self.cursor.rowcount)

    def execute_many(self, statement: Prepared, values: Iterable[Mapping[str, Any]]) -> None:
        batch = [statement.parameters(one) for one in values]
        if batch:
            self.cursor.executemany(statement.sql, batch)

    def rows(self, statement: Prepared, values: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """Every row of a read, each value through its column type's result
        processing when the statement was prepared with ``results``."""
        self.cursor.execute(statement.sql, statement.parameters(values))
        return statement.processed(self.cursor.fetchall())


class Prepared:
    """A Core statement rendered once for one database and run on the driver's cursor.

    Executing through a SQLAlchemy Connection costs about as much again as the
    database's own work for a one-row write (an execution context, result
    processing, pool events); the run row is written twice per run, so those two
    writes are rendered here once — SQL text, parameter order, and each column type's
    own bind processing (JSON, the UTC timestamps), taken from SQLAlchemy."""

    def __init__(self, statement: Any, dialect: Any, columns: Iterable[str],
                 types: Mapping[str, Any], results: bool = False) -> None:
        compiled = statement.compile(dialect=dialect, column_keys=list(columns))
        self.sql: str = compiled.string
        self.order: tuple[str, ...] | None = (tuple(compiled.positiontup)
                                               if compiled.positional else None)
        self.processors = {name: kind.dialect_impl(dialect).bind_processor(dialect)
                           for name, kind in types.items()}
        # With ``results``, a read's values come back as the ORM would give them (JSON
        # decoded, timestamps aware); without, as the driver gives them.
        self.results: tuple[Callable[[Any], Any] | None, ...] = tuple(
            column.type.dialect_impl(dialect).result_processor(dialect, None)
            for column in (statement.selected_columns if hasattr(statement, "selected_columns")
                           else statement.exported_columns)) if results else ()
        self.converting = tuple((index, process) for index, process in enumerate(self.results)
                                if process is not None)
        # Positional parameters: each name with its bind processing, in order.
        self.plan: tuple[tuple[str, Callable[[Any], Any] | None], ...] | None = (
            None if self.order is None else
            tuple((name, self.processors.get(name)) for name in self.order))

    def parameters(self, values: Mapping[str, Any]) -> Any:
        if self.plan is None:
            processors = self.processors
            return {name: value if (process := processors.get(name)) is None
                    else process(value) for name, value in values.items()}
        return tuple(values[name] if process is None else process(values[name])
                     for name, process in self.plan)

    def processed(self, rows: Iterable[Any]) -> list[tuple[Any, ...]]:
        """``rows`` as read, each value through its column type's result processing
        when prepared with ``results``."""
        if not self.converting:
            return [tuple(row) for row in rows]
        converting = self.converting
        out = []
        for row in rows:
            values = list(row)
            for index, process in converting:
                if values[index] is not None:
                    values[index] = process(values[index])
            out.append(tuple(values))
        return out


def _sqlite_pragmas(dbapi_connection: Any, record: Any) -> None:
    """WAL with ``synchronous=NORMAL``: every commit survives the process dying (what
    the refresh and rotation logic relies on); only an OS crash or power loss may
    roll back the newest commits, at which point a rotated refresh token lost with
    them shows as "reconnect required", never as silent success."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_engine(url: str) -> Engine:
    """An engine with the settings Minihost relies on for each backend."""
    # Each in-flight run holds at most a short transaction at a time, but a threaded
    # server can have many runs at once: keep enough connections at hand.
    parsed = make_url(url)
    in_memory = parsed.get_backend_name() == "sqlite" and parsed.database in (None, "",
                                                                               ":memory:")
    pooling = {} if in_memory else {"pool_size": 10, "max_overflow": 30, "pool_timeout": 30}
    engine = create_engine(url, **pooling)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        event.listen(engine, "checkin", _note_checkin)
        event.listen(engine, "checkout", partial(_ping_if_idle, engine.dialect))
    return engine


IDLE_BEFORE_PING = 5.0  # seconds


def _note_checkin(dbapi_connection: Any, record: Any) -> None:
    record.info["minihost.idle_since"] = time.monotonic()


def _ping_if_idle(dialect: Any, dbapi_connection: Any, record: Any, proxy: Any) -> None:
    """A network database can drop a connection while it sits idle in the pool (a
    restart, a proxy's timeout), so one idle for a few seconds is tested before use,
    and replaced when dead. Pinging on every checkout (``pool_pre_ping``) cost each
    run three extra round trips; a connection back within seconds is one the server
    just answered."""
    idle_since = record.info.get("minihost.idle_since")
    if idle_since is None or time.monotonic() - idle_since < IDLE_BEFORE_PING:
        return
    try:
        dialect.do_ping(dbapi_connection)
    except Exception as error:
        raise DisconnectionError(f"an idle pooled connection is gone ({error})") from error


@contextmanager
def exclusive(app: Flask, name: str, wait: bool = True) -> Iterator[bool]:
    """Hold a lock named ``name`` across every process sharing this database, for work
    that must not run twice at once (migrating, syncing the catalog, purging runs).

    PostgreSQL: a session advisory lock, so processes on many machines queue. SQLite:
    an ``flock`` on a file beside the database, so processes sharing the file queue.
    With ``wait`` false nothing queues: the block runs at once and is given False when
    another holder has the lock (work that someone else is already doing), else True.
    """
    database = get_database(app)
    engine = database.engine
    if engine.dialect.name == "postgresql":
        key = int.from_bytes(hashlib.sha256(f"minihost:{name}".encode()).digest()[:8],
                             "big", signed=True)
        with engine.connect() as connection:
            if wait:
                connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
                held = True
            else:
                held = bool(connection.execute(text("SELECT pg_try_advisory_lock(:key)"),
                                               {"key": key}).scalar())
            connection.commit()
            try:
                yield held
            finally:
                if held:
                    connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                    connection.commit()
        return
    path = make_url(str(engine.url)).database
    if not path or path == ":memory:":
        yield True  # one process owns an in-memory database
        return
    lock_path = f"{path}.{name}.lock"
    handle = open(lock_path, "a+")  # noqa: SIM115 - held for the block's duration
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
            held = True
        except BlockingIOError:
            held = False
        try:
            yield held
        finally:
            if held:
                fcntl.flock(handle, fcntl.LOCK_UN)
    finally:
        handle.close()


def get_database(app: Flask) -> Database:
    return app.extensions["minihost.db"]


def session() -> Session:
    """The request's session, closed when the request ends."""
    from flask import current_app

    if "db_session" not in g:
        g.db_session = get_database(current_app).sessions()
    return g.db_session


def _close_session(exc: BaseException | None) -> None:
    db_session = g.pop("db_session", None)
    if db_session is not None:
        db_session.close()


class _SQLiteWriters:
    """The lock SQLite writers take before writing.

    SQLite lets one writer in at a time and makes the others sleep and retry with
    growing pauses (up to 100 ms a try): time in which, often, no one writes. So the
    writers of this process queue on a thread lock, and those of every process
    sharing the file on an ``flock`` beside it, which the kernel hands to the next
    waiter the moment it is released. Reentrant within a thread. The file is opened
    for each outermost hold (a few microseconds): nothing to close when the database
    goes, and no descriptor shared across ``fork``."""

    def __init__(self, path: str | None) -> None:
        self.path = f"{path}.writer.lock" if path and path != ":memory:" else None
        self.lock = threading.RLock()
        self.depth = 0
        self.handle: Any = None

    def __enter__(self) -> None:
        self.lock.acquire()
        self.depth += 1
        if self.depth == 1 and self.path is not None:
            try:
                self.handle = open(self.path, "a+")  # noqa: SIM115 - closed in __exit__
                fcntl.flock(self.handle, fcntl.LOCK_EX)
            except BaseException:
                if self.handle is not None:
                    self.handle.close()
                    self.handle = None
                self.depth -= 1
                self.lock.release()
                raise

    def held(self) -> bool:
        """Whether this thread holds the lock."""
        return self.lock._is_owned()  # type: ignore[attr-defined]

    def __exit__(self, *exc: object) -> None:
        try:
            if self.depth == 1 and self.handle is not None:
                handle, self.handle = self.handle, None
                handle.close()  # closing the descriptor releases the flock
        finally:
            self.depth -= 1
            self.lock.release()


def init_app(app: Flask) -> None:
    engine = make_engine(app.config["DATABASE_URL"])
    lock = (_SQLiteWriters(make_url(str(engine.url)).database)
            if engine.dialect.name == "sqlite" else _NoLock())
    app.extensions["minihost.db"] = Database(
        engine, sessionmaker(engine, expire_on_commit=False), lock
    )
    app.teardown_appcontext(_close_session)
