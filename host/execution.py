"""One step of work for an installation: values, credentials, the engine, the run record.

Every request chain the host sends for an installation — an action, a dropdown
source, an auth step (a key's test, a token exchange, a refresh, registration)
and, next, a flow task — goes through :func:`run_step`:

1. the values placeholders may name (:func:`context_for`): parameters, the
   stored or given credentials, metadata, the operator's client (its secret read
   only when a request uses it), settings and the host's own ``{{…}}`` values;
2. for stored credentials, a :class:`Credentials` keeper that renews a token
   before it expires and once after a 401 (``host.auth.refresh`` provides it: this
   layer sits below ``auth`` and receives it rather than importing it);
3. the engine's chain, through the host's one guarded client (``host.outbound``);
4. the Run row: committed *before* the first request leaves, so a crash mid-run
   still leaves a record, and finished with the outcome, the redacted output and
   trace; a step that fails before anything could be sent is recorded as failed.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol, cast

from flask import Flask
from sqlalchemy import Table, bindparam, select
from sqlalchemy.orm import Session

from . import vault
from .db import (
    AppClient,
    Database,
    Installation,
    Prepared,
    Run,
    RunRecord,
    action_use_statement,
    get_database,
    new_id,
    record_action_use,
    utcnow,
)
from .engine import ChainResult, Context, run_chain
from .engine.chain import Persist
from .engine.redact import secret_values
from .engine.render import operator_client
from .errors import Bug, MinihostError, PaceExceeded, RateLimited, run_error
from .manifest import Manifest, Request
from .outbound import client_for, hooks_for
from .pacing import Paced, pace_key, pause
from .plugins import get_plugins
from .processes import holder

__all__ = [
    "LEASE_MARGIN",
    "Credentials",
    "Step",
    "context_for",
    "finish_write",
    "operator_values",
    "run_step",
    "system_values",
]

logger = logging.getLogger(__name__)

LEASE_MARGIN = 5.0  # seconds past a run's deadline before another process may finish it
CLIENT_NAMES = frozenset({"clientId", "clientSecret", "clientBasicAuth"})
CLIENT_SECRET_NAMES = frozenset({"clientSecret", "clientBasicAuth"})


class Credentials(Protocol):
    """An installation's stored credentials, kept usable for one step.

    ``current`` reads them (audited) and, when ``renew`` is true and the token
    expires soon, renews them first; ``renew`` gets fresh ones after the provider
    refused these (a 401). ``can_renew`` says whether renewing is possible at all.
    Both raise a :class:`host.errors.MinihostError` the step then records.
    """

    can_renew: bool

    def current(self, deadline: float, renew: bool) -> Mapping[str, Any]: ...

    def renew(self, deadline: float) -> Mapping[str, Any]: ...


@dataclass
class Step:
    """What to run for ``installation``: ``requests`` of its ``manifest``.

    ``kind`` (``action``, ``source``, ``auth``) and ``name`` say what the Run row
    records; ``persist`` what its output keeps (``credentials`` keeps only their
    names). ``credentials`` given are used as they are (a connect being tested);
    otherwise ``keeper`` supplies the stored ones, or the vault when there is no
    keeper. ``system`` adds ``{{…}}`` values (a token exchange's code and
    verifier), ``secrets`` values to redact besides the credentials. ``record``
    false runs without a Run row (an installation not yet stored).
    """

    installation: Installation
    manifest: Manifest
    requests: Sequence[Request]
    kind: str
    name: str
    actor: str
    actor_id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    persist: Persist = "output"
    follow_redirects: bool = True
    sandbox: bool = False
    record: bool = True
    credentials: Mapping[str, Any] | None = None
    keeper: Credentials | None = None
    reason: str | None = None
    system: Mapping[str, Any] = field(default_factory=dict)
    secrets: Sequence[str] = ()
    deadline: float | None = None
    # The key an action's idempotency header sends: a flow task's, the same on every
    # attempt; one per run otherwise. ``run_id`` names the Run row ahead (a flow task
    # records it before the row exists, so a crash tells whether a request could
    # have been sent).
    idempotency_key: str | None = None
    run_id: str | None = None
    # Asked between requests: a reason to stop there (a cancelled flow run), or None.
    stop: Callable[[], str | None] | None = None
    # The list a paginated last request's pages hold, when its pagination names none
    # (a source's or data source's ``items``).
    pages_items: Any = None
    # The caller writes the run row's outcome in its own transaction (a flow task, with
    # the task's outcome: one commit fewer); ``finish_write`` gives it the write.
    defer_finish: bool = False


def run_step(app: Flask, step: Step) -> tuple[ChainResult, RunRecord | None]:
    """Run ``step`` and record it; returns the chain's result and the Run (``None``
    when ``record`` is false). Never raises for what a run can record: a failure
    to get credentials, a provider's error or our own bug all end as a failed Run."""
    installation, manifest = step.installation, step.manifest
    deadline = step.deadline
    if deadline is None:
        deadline = time.monotonic() + float(app.config["ACTION_TIMEOUT"])
    sandbox = step.sandbox or installation.sandbox or bool(app.config["SANDBOX"])
    paused = getattr(installation, "paused_until", None)
    if paused is not None and not sandbox and paused > utcnow():
        # The provider asked this installation to wait: nothing is sent until then.
        wait = (paused - utcnow()).total_seconds()
        error = RateLimited(
            f"the provider answered 429 for {installation.name or installation.id} and asked "
            f"to wait until {paused.isoformat(timespec='seconds')}; nothing was sent, try "
            f"again in {wait:.0f} s", "", 429, wait)
        return ChainResult(ok=False, error=error), _record_failure(app, step, sandbox, error)
    reason = step.reason or step.kind
    renew: Callable[[], Mapping[str, Any]] | None = None
    credentials = step.credentials
    if credentials is None and step.keeper is not None:
        keeper = step.keeper
        try:
            credentials = keeper.current(deadline, renew=not sandbox)
        except MinihostError as error:
            return ChainResult(ok=False, error=error), _record_failure(app, step, sandbox, error)
        if keeper.can_renew and not sandbox:
            def renew() -> Mapping[str, Any]:
                return keeper.renew(deadline)
    with get_database(app).sessions() as db:
        ctx = context_for(app, db, installation, manifest, actor=step.actor, reason=reason,
                          parameters=step.parameters,
                          credentials=dict(credentials) if credentials is not None else None,
                          requests=step.requests)
    ctx.system = {**ctx.system, **step.system,
                  "idempotencyKey": step.idempotency_key or uuid.uuid4().hex}
    return _execute(app, step, ctx, sandbox, deadline, renew)


def _execute(app: Flask, step: Step, ctx: Context, sandbox: bool, deadline: float,
             renew: Callable[[], Mapping[str, Any]] | None
             ) -> tuple[ChainResult, RunRecord | None]:
    database = get_database(app)
    installation, manifest = step.installation, step.manifest
    run: RunRecord | None = None
    recorded_id = installation.id if step.record else None
    if step.record:
        run = RunRecord(id=step.run_id or new_id("run"), workspace_id=installation.workspace_id,
                        installation_id=recorded_id, kind=step.kind, name=step.name,
                        status="running", parameters=step.parameters, sandbox=sandbox,
                        actor_id=step.actor_id, started_at=utcnow())
        statements = _statements(app, database)
        database.execute_raw(statements.insert, {
            "id": run.id, "workspace_id": run.workspace_id, "installation_id": recorded_id,
            "kind": step.kind, "name": step.name, "status": "running",
            "parameters": run.parameters, "sandbox": sandbox, "actor_id": step.actor_id,
            "started_at": run.started_at, "holder": holder(),
            "lease_expires_at": run.started_at + timedelta(
                seconds=max(0.0, deadline - time.monotonic()) + LEASE_MARGIN)},
            *_count_use(statements, run))
    secrets = tuple(step.secrets)
    hooks = hooks_for(app, manifest.name, recorded_id, lambda: secret_values(
        ctx.credentials, ctx.client.get("clientSecret"), ctx.client.get("clientBasicAuth"),
        *secrets))
    if manifest.rate_limit is not None and not sandbox:
        hooks = Paced(hooks, app, pace_key(manifest.rate_limit, manifest.name, installation.id),
                      manifest.rate_limit, deadline)
    try:
        result = run_chain(
            step.requests, ctx, client_for(app, sandbox), allowed_hosts=manifest.allowed_hosts,
            deadline=deadline, persist=step.persist, follow_redirects=step.follow_redirects,
            refresh=renew, refresh_on=manifest.auth.refresh_on, extra_secrets=secrets,
            stop=step.stop, pages_items=step.pages_items, hooks=hooks)
    except MinihostError as error:
        # A renewal that needs a reconnect, say: recorded as the run's failure.
        result = ChainResult(ok=False, error=error)
    except Exception:
        logger.exception("run %s (%s %s) stopped on an unexpected error",
                         run.id if run else "-", step.kind, step.name)
        result = ChainResult(ok=False, error=Bug(
            "the run stopped on an internal error, which was logged for the operator; "
            "try again, and tell the operator if it happens again"))
    failure = result.error
    if isinstance(failure, RateLimited) and failure.retry_after and failure.http_status == 429 \
            and not sandbox and not isinstance(failure, PaceExceeded):
        pause(app, installation.id, failure.retry_after)
    if run is not None:
        _settle(run, result, step.persist)
        if not step.defer_finish:
            database.execute_raw(*finish_write(app, run))
    return result, run


_RUN = cast(Table, Run.__table__)
_INSERTED = ("id", "workspace_id", "installation_id", "kind", "name", "status", "parameters",
             "sandbox", "actor_id", "started_at", "holder", "lease_expires_at")
_FINISHED = ("status", "output", "error", "trace", "finished_at", "duration_ms", "holder",
             "lease_expires_at")


@dataclass(frozen=True, slots=True)
class _RunStatements:
    insert: Prepared
    finish: Prepared
    count_use: Prepared


def _statements(app: Flask, database: Database) -> _RunStatements:
    """The run row's two writes (and its usage count), rendered once per application
    for its database."""
    found: _RunStatements | None = app.extensions.get("minihost.run_statements")
    if found is None:
        dialect = database.engine.dialect
        types = {column.key: column.type for column in _RUN.c}
        found = _RunStatements(
            Prepared(_RUN.insert(), dialect, _INSERTED, types),
            Prepared(_RUN.update().where(_RUN.c.id == bindparam("run_id")), dialect,
                     _FINISHED, types),
            action_use_statement(dialect))
        app.extensions["minihost.run_statements"] = found
    return found


def _count_use(statements: _RunStatements,
               run: RunRecord) -> tuple[tuple[Prepared, dict[str, Any]], ...]:
    """The write that counts an action run in its installation's usage from the moment
    it is recorded, for the transaction that inserts the run's row (none for a source
    load or an auth step)."""
    if run.kind != "action" or run.installation_id is None:
        return ()
    return ((statements.count_use, {"installation_id": run.installation_id,
                                    "action": run.name, "at": run.started_at}),)


def _settle(run: RunRecord, result: ChainResult, persist: Persist) -> None:
    run.status = "succeeded" if result.ok else "failed"
    run.output = _output(result, persist)
    run.error = run_error(result.error) if result.error is not None else None
    run.trace = {"requests": result.trace}
    run.finished_at = utcnow()
    run.duration_ms = result.duration_ms


def finish_write(app: Flask, run: RunRecord) -> tuple[Prepared, dict[str, Any]]:
    """The write that records a finished run's outcome, for :meth:`Database.execute_raw`
    or the caller's own transaction (``Step.defer_finish``)."""
    return _statements(app, get_database(app)).finish, {
        "run_id": run.id, "status": run.status, "output": run.output, "error": run.error,
        "trace": run.trace, "finished_at": run.finished_at, "duration_ms": run.duration_ms,
        "holder": None, "lease_expires_at": None}


def _output(result: ChainResult, persist: Persist) -> Any:
    if not result.ok:
        return None
    if persist == "credentials":
        return {"credentialKeys": sorted(result.values)}
    return result.values


def _record_failure(app: Flask, step: Step, sandbox: bool,
                    error: MinihostError) -> RunRecord | None:
    """A step that failed before any request could be sent (its credentials could not
    be renewed, say)."""
    if not step.record:
        return None
    now = utcnow()
    run = Run(id=step.run_id or new_id("run"), workspace_id=step.installation.workspace_id,
              installation_id=step.installation.id, kind=step.kind, name=step.name,
              status="failed", parameters=step.parameters, error=run_error(error),
              trace={"requests": []}, sandbox=sandbox, actor_id=step.actor_id,
              started_at=now, finished_at=now, duration_ms=0)
    with get_database(app).transaction() as db:
        db.add(run)
        if run.kind == "action":
            record_action_use(db.connection(), step.installation.id, run.name, now)
    return RunRecord(id=run.id, workspace_id=run.workspace_id,
                     installation_id=run.installation_id, kind=run.kind, name=run.name,
                     status=run.status, parameters=run.parameters, sandbox=sandbox,
                     actor_id=run.actor_id, started_at=now, output=None, error=run.error,
                     trace=run.trace, finished_at=now, duration_ms=0)


# -- the values placeholders may name ----------------------------------------------------


def system_values(app: Flask, installation: Installation) -> dict[str, Any]:
    """The ``{{…}}`` values the host fills in, and those plugins add."""
    base = app.config["PUBLIC_URL"]
    values = {
        "hostUrl": base,
        "installationId": installation.id,
        "webhookUrl": f"{base}/hooks/{installation.id}/{installation.webhook_token}",
    }
    if installation.created_by:
        values["uid"] = installation.created_by
    subdomain = (installation.config or {}).get("subdomain")
    if subdomain:
        values["subdomain"] = subdomain
    contributed = app.extensions.get("minihost.system_values")
    if contributed:
        shape = installation.as_dict()
        for name, (plugin, function) in contributed.items():
            try:
                values[name] = function(shape)
            except Exception as error:  # left out: a request needing it names the gap
                get_plugins(app).report(plugin, "system_values", error)
    return values


def operator_values(app: Flask, db: Session, manifest: Manifest,
                    installation: Installation | None, actor: str, reason: str,
                    requests: Sequence[Request] | None) -> dict[str, str]:
    """The operator's client values, read only when the requests about to run use
    them — and the secret decrypted (and audited) only when they use it."""
    if requests is None:
        uses, uses_secret = manifest.uses_client, manifest.uses_client_secret
    else:
        roots = frozenset().union(*(r.secret_roots for r in requests))
        uses, uses_secret = bool(roots & CLIENT_NAMES), bool(roots & CLIENT_SECRET_NAMES)
    if not uses:
        return {}
    client = db.scalar(select(AppClient).where(AppClient.miniapp == manifest.name))
    if client is None:
        return {}
    secret = None
    if uses_secret:
        secret = vault.read_client_secret(
            app, client, actor=actor, reason=reason,
            workspace_id=installation.workspace_id if installation else None,
            installation_id=installation.id if installation else None)
    return operator_client(client.client_id, secret)


def context_for(app: Flask, db: Session, installation: Installation, manifest: Manifest, *,
                actor: str, reason: str, parameters: dict[str, Any] | None = None,
                credentials: dict[str, Any] | None = None,
                requests: Sequence[Request] | None = None) -> Context:
    """Everything placeholders may name for this installation.

    Reading the stored credentials is audited (``reason`` says why); passing
    ``credentials`` uses those instead (a connect being tested).
    """
    if credentials is None:
        credentials = vault.read_credentials(app, installation, actor=actor, reason=reason)
    config = {**dict(manifest.auth.config), **(installation.config or {})}
    system = system_values(app, installation)
    for name in app.extensions.get("minihost.system_values", ()):
        config.pop(name, None)  # settings made before a plugin added the name: it wins
    return Context(
        parameters=parameters or {},
        credentials=credentials,
        metadata=dict(installation.meta or {}),
        client=operator_values(app, db, manifest, installation, actor, reason, requests),
        config=config,
        system=system,
    )
