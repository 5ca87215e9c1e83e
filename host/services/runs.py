"""Runs: every action, source load and auth step, recorded with its redacted trace.

The Run row is committed *before* the first request leaves, so a crash mid-run
still leaves a record; the outcome is written when the chain ends.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any

from flask import Flask
from sqlalchemy import bindparam, select
from sqlalchemy.exc import SQLAlchemyError

from ..db import Run, get_database, new_id, utcnow
from ..engine import ChainResult, Context, run_chain
from ..engine.chain import Persist
from ..engine.redact import secret_values
from ..errors import Bug, FieldError, Interrupted, MinihostError, NotReady, run_error
from ..processes import holder, holder_dead
from .outbound import client_for, hooks_for

__all__ = ["execute"]

logger = logging.getLogger(__name__)


def execute(
    app: Flask,
    *,
    workspace_id: str,
    installation_id: str | None,
    kind: str,
    name: str,
    requests: Sequence[Any],
    ctx: Context,
    allowed_hosts: Sequence[str],
    persist: Persist = "output",
    follow_redirects: bool = True,
    sandbox: bool = False,
    actor_id: str | None = None,
    parameters: dict[str, Any] | None = None,
    record: bool = True,
    deadline: float | None = None,
    refresh: Callable[[], Mapping[str, Any]] | None = None,
    refresh_on: Any = None,
    miniapp: str | None = None,
    extra_secrets: Sequence[str] = (),
) -> tuple[ChainResult, Run | None]:
    """Run a chain for an installation and record it; returns (result, the Run).

    ``miniapp`` names the mini-app for plugins' ``prepare_request`` and
    ``response_received``; ``extra_secrets`` are values to redact besides the
    credentials (a signed assertion passed as a ``{{…}}`` value, say).

    ``deadline`` (``time.monotonic()``) defaults to ``ACTION_TIMEOUT`` from now;
    ``refresh``/``refresh_on`` let the chain refresh the token once on a 401.
    """
    database = get_database(app)
    run: Run | None = None
    sandboxed = sandbox or bool(app.config["SANDBOX"])
    if deadline is None:
        deadline = time.monotonic() + float(app.config["ACTION_TIMEOUT"])
    if record:
        sweep_interrupted(app, every=SWEEP_SECONDS)
        run = Run(id=new_id("run"), workspace_id=workspace_id, installation_id=installation_id,
                  kind=kind, name=name, status="running", parameters=parameters or {},
                  sandbox=sandboxed, actor_id=actor_id, started_at=utcnow())
        with database.write() as connection:  # a plain insert: no unit of work
            connection.execute(_INSERT_RUN, {
                "id": run.id, "workspace_id": workspace_id, "installation_id": installation_id,
                "kind": kind, "name": name, "status": "running", "parameters": run.parameters,
                "sandbox": sandboxed, "actor_id": actor_id, "started_at": run.started_at,
                "holder": holder(), "lease_expires_at": run.started_at + timedelta(
                    seconds=max(0.0, deadline - time.monotonic()) + LEASE_MARGIN)})
    try:
        result = run_chain(
            requests, ctx, client_for(app, sandboxed), allowed_hosts=allowed_hosts,
            deadline=deadline, persist=persist, follow_redirects=follow_redirects,
            refresh=refresh, refresh_on=refresh_on, extra_secrets=extra_secrets,
            hooks=hooks_for(app, miniapp, installation_id, lambda: secret_values(
                ctx.credentials, ctx.client.get("clientSecret"),
                ctx.client.get("clientBasicAuth"), *extra_secrets)) if miniapp else None)
    except MinihostError as error:
        # A refresh that needs a reconnect, say: the caller answers for it, but
        # the run must not stay "running" forever.
        if run is not None:
            _finish(database, run, ChainResult(ok=False, error=error), persist)
        raise
    except Exception:
        logger.exception("run %s (%s %s) stopped on an unexpected error",
                         run.id if run else "-", kind, name)
        result = ChainResult(ok=False, error=Bug(
            "the run stopped on an internal error, which was logged for the operator; "
            "try again, and tell the operator if it happens again"))
    if run is not None:
        _finish(database, run, result, persist)
    return result, run


# Built once: a run writes its row twice, and building and keying a statement per
# run cost more than executing it.
_RUN = Run.__table__
_INSERT_RUN = _RUN.insert()
_FINISH_RUN = _RUN.update().where(_RUN.c.id == bindparam("run_id"))


def _finish(database: Any, run: Run, result: ChainResult, persist: Persist) -> None:
    outcome = {
        "status": "succeeded" if result.ok else "failed",
        "output": _output(result, persist),
        "error": run_error(result.error) if result.error is not None else None,
        "trace": {"requests": result.trace},
        "finished_at": utcnow(),
        "duration_ms": result.duration_ms,
        "holder": None,
        "lease_expires_at": None,
    }
    with database.write() as connection:
        connection.execute(_FINISH_RUN, {"run_id": run.id, **outcome})
    for key, value in outcome.items():
        setattr(run, key, value)


# -- runs whose process died -------------------------------------------------------------

LEASE_MARGIN = 5.0  # seconds past a run's deadline before another process may finish it
SWEEP_SECONDS = 60.0
_SWEPT = "minihost.runs_swept_at"


def _interrupted_error(run: Any, side_effects: bool | None) -> dict[str, Any]:
    message = ("the host stopped while this run was in progress, so it never finished")
    if side_effects is False:
        message += "; it only reads, so running it again is safe"
    else:
        message += ("; whether it took effect at the provider is unknown, so check there "
                    "before running it again")
    return run_error(Interrupted(message))


def _side_effects(app: Flask, run: Any) -> bool | None:
    """Whether the run's requests could change something at the provider (None: unknown)."""
    if run.kind != "action" or run.installation_id is None:
        return None if run.kind == "action" else run.kind == "auth"
    from ..db import Installation
    from .catalog import get_catalog

    try:
        with get_database(app).sessions() as db:
            installation = db.get(Installation, run.installation_id)
            if installation is None:
                return None
            manifest = get_catalog(app).snapshot(db).get(installation.miniapp,
                                                         installation.miniapp_version)
    except Exception:  # the catalog cannot say: assume the worst
        return None
    action = manifest.action(run.name) if manifest is not None else None
    if action is None:
        return None
    return any(request.method != "GET" for request in action.requests)


def sweep_interrupted(app: Flask, every: float = 0.0) -> int:
    """Finish as ``interrupted`` every run whose process is gone: its lease ran out
    (any machine), or its holder is a dead process on this one. Runs at start-up and,
    at most every ``every`` seconds, before a run starts, in every process; the
    compare-and-set on ``status = 'running'`` makes concurrent sweeps harmless.
    Returns how many runs it finished."""
    now = time.monotonic()
    if every and now - app.extensions.get(_SWEPT, float("-inf")) < every:
        return 0
    app.extensions[_SWEPT] = now
    from .. import audit

    database = get_database(app)
    moment = utcnow()
    try:
        with database.sessions() as db:
            running = db.execute(select(Run.id, Run.holder, Run.lease_expires_at)
                                 .where(Run.status == "running")).all()
    except SQLAlchemyError:
        return 0  # no schema yet: `init` comes first
    stale = [run_id for run_id, name, until in running
             if (until is not None and until < moment) or (name and holder_dead(name))]
    finished = 0
    for run_id in stale:
        with database.sessions() as db:
            run = db.get(Run, run_id)
            if run is None or run.status != "running":
                continue
            db.expunge(run)
        error = _interrupted_error(run, _side_effects(app, run))
        with database.transaction() as db:
            changed = db.execute(
                _RUN.update().where(_RUN.c.id == run_id, _RUN.c.status == "running")
                .values(status="interrupted", error=error, finished_at=moment,
                        holder=None, lease_expires_at=None,
                        duration_ms=int((moment - run.started_at).total_seconds() * 1000))
            ).rowcount
            if changed:
                audit.record(db, "run_interrupted", actor="system", app=app,
                             workspace_id=run.workspace_id,
                             installation_id=run.installation_id,
                             detail={"run": run_id, "kind": run.kind, "name": run.name})
        finished += changed
        if changed:
            logger.warning("run %s (%s %s) was left running by a process that stopped; "
                           "finished as interrupted", run_id, run.kind, run.name)
    return finished


def init_app(app: Flask) -> None:
    sweep_interrupted(app)


def _output(result: ChainResult, persist: Persist) -> Any:
    if not result.ok:
        return None
    if persist == "credentials":
        return {"credentialKeys": sorted(result.values)}
    return result.values


def record_failure(app: Flask, *, workspace_id: str, installation_id: str | None, kind: str,
                   name: str, error: MinihostError, sandbox: bool = False,
                   actor_id: str | None = None,
                   parameters: dict[str, Any] | None = None) -> Run:
    """A run that failed before any request could be sent (e.g. a refresh failed)."""
    now = utcnow()
    run = Run(id=new_id("run"), workspace_id=workspace_id, installation_id=installation_id,
              kind=kind, name=name, status="failed", parameters=parameters or {},
              error=run_error(error), trace={"requests": []},
              sandbox=sandbox or bool(app.config["SANDBOX"]), actor_id=actor_id,
              started_at=now, finished_at=now, duration_ms=0)
    with get_database(app).transaction() as db:
        db.add(run)
    return run


def run_authenticated(
    app: Flask,
    installation: Any,
    manifest: Any,
    requests: Sequence[Any],
    *,
    kind: str,
    name: str,
    parameters: dict[str, Any],
    actor: str,
    actor_id: str | None,
    persist: Persist = "output",
    sandbox: bool = False,
) -> tuple[ChainResult, Run]:
    """Run a chain with the installation's credentials, refreshing the token before
    it expires and once after a 401 (or an ``auth.refreshOn`` match)."""
    from ..auth import refresh as refresher
    from ..db import get_database as database_of
    from .installations import context_for

    deadline = time.monotonic() + float(app.config["ACTION_TIMEOUT"])
    sandbox = sandbox or installation.sandbox or bool(app.config["SANDBOX"])
    common = {"workspace_id": installation.workspace_id, "installation_id": installation.id,
              "kind": kind, "name": name, "sandbox": sandbox,
              "actor_id": actor_id, "parameters": parameters}
    try:
        held = refresher.load(app, installation.id, actor=actor, reason=kind, row=installation)
        if not sandbox:
            held = refresher.ensure_fresh(app, installation.id, manifest, held, actor=actor,
                                          deadline=deadline)
    except MinihostError as error:
        return ChainResult(ok=False, error=error), record_failure(app, error=error, **common)
    state = {"held": held}

    def refreshed() -> Mapping[str, Any]:
        state["held"] = refresher.refresh(app, installation.id, manifest, state["held"].version,
                                          actor=actor, deadline=deadline)
        return state["held"].values

    with database_of(app).sessions() as db:
        ctx = context_for(app, db, installation, manifest, actor=actor, reason=kind,
                          parameters=parameters, credentials=held.values, requests=requests)
    can_refresh = refresher.can_refresh(manifest) and not sandbox
    result, run = execute(app, ctx=ctx, requests=requests,
                          allowed_hosts=manifest.allowed_hosts, persist=persist,
                          deadline=deadline, refresh=refreshed if can_refresh else None,
                          refresh_on=manifest.auth.refresh_on, miniapp=manifest.name, **common)
    assert run is not None
    return result, run


def run_action(app: Flask, db: Any, principal: Any, installation: Any, action_name: str,
               submitted: Any, *, from_form: bool = False, sandbox: bool = False) -> Run:
    """Validate an action's parameters (nothing is sent when any is invalid), run it
    with the installation's credentials, and return the recorded Run."""
    from ..errors import NotFound, ValidationError
    from ..forms import coerce, validate
    from .installations import manifest_of

    manifest = manifest_of(app, db, installation)
    action = manifest.action(action_name)
    if action is None:
        raise NotFound(f"{manifest.title} has no action {action_name!r}")
    if installation.status != "active":
        raise NotReady.of(installation.status, installation.error)
    if from_form:
        values, errors = coerce(action.form, submitted)
    else:
        if submitted is None:
            submitted = {}
        if not isinstance(submitted, dict):
            raise ValidationError([FieldError("parameters", "must be an object")])
        values, errors = dict(submitted), []
    errors += validate(action.form, values)
    if errors:
        raise ValidationError(errors)
    db.commit()  # hand the caller's connection back to the pool while the chain runs
    _, run = run_authenticated(app, installation, manifest, action.requests, kind="action",
                               name=action.name, parameters=values, actor=principal.actor,
                               actor_id=principal.user.id, sandbox=sandbox)
    from ..plugins import get_plugins, notify

    if get_plugins(app).hook.run_finished.get_hookimpls():
        notify(app, "run_finished", run=as_dict(run, with_trace=True))
    return run


def as_dict(run: Run, with_trace: bool = False) -> dict[str, Any]:
    """A run as the API shows it; ``trace`` (already redacted) only when asked."""
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
