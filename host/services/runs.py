"""Runs: running an action for a person, and the history of every run.

Recording a run — the row committed before the first request leaves, the
outcome after — is :mod:`host.execution`'s; this module is the use case around
it (validate the parameters, run with the installation's credentials, tell the
plugins) and the queries every interface shares. It also finishes runs whose
process died (``interrupted``): at start-up and, at most once a minute, before
a run starts or a history is read; and on the same paths starts the purge of
runs past ``RUN_RETENTION_DAYS`` (:mod:`.retention`) in the background.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import Flask
from sqlalchemy import select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from .. import audit
from ..auth.refresh import Keeper
from ..db import Installation, Run, RunRecord, changed, get_database, utcnow
from ..errors import FieldError, Interrupted, NotFound, NotReady, ValidationError, run_error
from ..execution import Step, run_step
from ..forms import coerce, validate
from ..plugins import get_plugins, notify
from ..principal import Principal
from ..processes import holder_dead
from .catalog import get_catalog
from .installations import manifest_of
from .paging import Page, page_of
from .retention import purge_soon

__all__ = [
    "KINDS",
    "STATUSES",
    "RunFilter",
    "get_run",
    "list_runs",
    "run_action",
    "sweep_interrupted",
]

logger = logging.getLogger(__name__)

STATUSES = ("running", "succeeded", "failed", "interrupted")
KINDS = ("action", "source", "auth")


# -- running an action -------------------------------------------------------------------


def run_action(app: Flask, db: Session, principal: Principal, installation: Installation,
               action_name: str, submitted: Any, *, from_form: bool = False,
               sandbox: bool = False) -> RunRecord:
    """Validate an action's parameters (nothing is sent when any is invalid), run it
    with the installation's credentials, and return the recorded Run.

    A form's values arrive as text and are coerced first; when any is invalid the
    :class:`ValidationError` carries in ``values`` what to show again: the values as
    understood, and as typed where they could not be."""
    manifest = manifest_of(app, db, installation)
    action = manifest.action(action_name)
    if action is None:
        raise NotFound(f"{manifest.title} has no action {action_name!r}")
    if installation.status != "active":
        raise NotReady.of(installation.status, installation.error)
    if from_form:
        values, errors = coerce(action.form, submitted)
        shown = {**values, **{e.field: submitted.get(e.field) for e in errors}}
    else:
        if submitted is None:
            submitted = {}
        if not isinstance(submitted, dict):
            raise ValidationError([FieldError("parameters", "must be an object")])
        values, errors = dict(submitted), []
        shown = values
    errors += validate(action.form, values)
    if errors:
        raise ValidationError(errors, values=shown)
    db.commit()  # hand the caller's connection back to the pool while the chain runs
    sweep_interrupted(app, every=SWEEP_SECONDS)
    purge_soon(app)
    _, run = run_step(app, Step(
        installation=installation, manifest=manifest, requests=action.requests, kind="action",
        name=action.name, actor=principal.actor, actor_id=principal.user.id,
        parameters=values, sandbox=sandbox,
        keeper=Keeper(app, installation, manifest, actor=principal.actor, reason="action")))
    assert run is not None
    if get_plugins(app).hook.run_finished.get_hookimpls():
        notify(app, "run_finished", run=run.as_dict(with_trace=True))
    return run


# -- history -----------------------------------------------------------------------------


def get_run(app: Flask, db: Session, principal: Principal, run_id: str) -> Run:
    """One of the workspace's runs (another workspace's answers 404)."""
    sweep_interrupted(app, every=SWEEP_SECONDS)
    run = db.get(Run, run_id)
    if run is None or run.workspace_id != principal.workspace_id:
        raise NotFound(f"no run {run_id}")
    return run


class RunFilter:
    """Which runs a history shows: of one installation, in one status, of one kind,
    of one action (by name). Unknown statuses and kinds are refused by name."""

    __slots__ = ("action", "installation", "kind", "status")

    def __init__(self, *, installation: str | None = None, status: str | None = None,
                 kind: str | None = None, action: str | None = None) -> None:
        errors = []
        if status is not None and status not in STATUSES:
            errors.append(FieldError("status", f"must be one of {', '.join(STATUSES)}"))
        if kind is not None and kind not in KINDS:
            errors.append(FieldError("kind", f"must be one of {', '.join(KINDS)}"))
        if errors:
            raise ValidationError(errors)
        self.installation, self.status, self.kind, self.action = (installation, status, kind,
                                                                  action)


def list_runs(app: Flask, db: Session, principal: Principal, where: RunFilter,
              page: Page) -> tuple[list[Run], str | None]:
    """The workspace's runs, newest first, one page, and the key to continue after.

    An installation's runs are all in its workspace, so once the installation is
    found there the query names the installation alone, and its indexes serve it."""
    sweep_interrupted(app, every=SWEEP_SECONDS)
    purge_soon(app)
    if where.installation:
        installation = db.get(Installation, where.installation)
        if installation is None or installation.workspace_id != principal.workspace_id:
            raise NotFound(f"no installation {where.installation}")
        query = select(Run).where(Run.installation_id == where.installation)
    else:
        query = select(Run).where(Run.workspace_id == principal.workspace_id)
    if where.status:
        query = query.where(Run.status == where.status)
    if where.kind:
        query = query.where(Run.kind == where.kind)
    if where.action:
        query = query.where(Run.name == where.action)
    return page_of(db, query, Run.id, page)


def parameters_of(db: Session, installation: Installation, action: str,
                  run_id: str) -> dict[str, Any]:
    """The parameters an earlier run of ``action`` used, to fill its form again."""
    previous = db.get(Run, run_id)
    if previous is None or previous.installation_id != installation.id or \
            previous.name != action:
        raise NotFound(f"no run {run_id} of this action")
    return dict(previous.parameters or {})


def recent_runs(db: Session, installation: Installation, limit: int = 10) -> list[Run]:
    """The installation's newest runs, for its page."""
    return list(db.scalars(select(Run).where(Run.installation_id == installation.id)
                           .order_by(Run.id.desc()).limit(limit)))


# -- runs whose process died -------------------------------------------------------------

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
            ended = changed(db.execute(
                update(Run).where(Run.id == run_id, Run.status == "running")
                .values(status="interrupted", error=error, finished_at=moment,
                        holder=None, lease_expires_at=None,
                        duration_ms=int((moment - run.started_at).total_seconds() * 1000))
            ))
            if ended:
                audit.record(db, "run_interrupted", actor="system", app=app,
                             workspace_id=run.workspace_id,
                             installation_id=run.installation_id,
                             detail={"run": run_id, "kind": run.kind, "name": run.name})
        finished += ended
        if ended:
            logger.warning("run %s (%s %s) was left running by a process that stopped; "
                           "finished as interrupted", run_id, run.kind, run.name)
    return finished


def init_app(app: Flask) -> None:
    sweep_interrupted(app)
