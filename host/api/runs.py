"""Action forms, source options and runs: ``/api/v1/installations/{id}/…`` and
``/api/v1/runs``."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, request
from sqlalchemy import select

from ..db import Installation, Run
from ..db import session as db_session
from ..errors import FieldError, NotFound, ValidationError
from ..identity import require_principal
from ..services import installations, runs
from ..services.actions import form_state
from ..services.sources import load_options
from .body import json_object
from .pagination import paginate_rows
from .schemas import validate_request

RUN_STATUSES = ("running", "succeeded", "failed", "interrupted")
RUN_KINDS = ("action", "source", "auth")


def _choice(name: str, allowed: tuple[str, ...]) -> str | None:
    """A filter from the query string: absent, or one of ``allowed`` (never empty)."""
    if name not in request.args:
        return None
    value = request.args[name]
    if value not in allowed:
        raise ValidationError([FieldError(name, f"must be one of {', '.join(allowed)}")])
    return value


def action_form(installation_id: str, action: str) -> dict[str, Any]:
    principal = require_principal()
    db = db_session()
    installation = installations.get_installation(db, principal, installation_id)
    state = form_state(current_app, db, principal, installation, action, request.args)
    return {"schema": state.action.parameters,
            "fields": [field.as_dict() for field in state.fields]}


def source_options(installation_id: str, source: str) -> dict[str, Any]:
    principal = require_principal()
    db = db_session()
    installation = installations.get_installation(db, principal, installation_id)
    return {"options": load_options(current_app, db, principal, installation, source,
                                    request.args)}


def create_run(installation_id: str, action: str) -> tuple[dict[str, Any], int]:
    principal = require_principal()
    db = db_session()
    installation = installations.get_installation(db, principal, installation_id)
    body = validate_request("RunCreate", json_object())
    run = runs.run_action(current_app, db, principal, installation, action,
                          body.get("parameters", {}), sandbox=body.get("sandbox", False))
    return runs.as_dict(run), 201


def list_runs() -> dict[str, Any]:
    principal = require_principal()
    db = db_session()
    query = select(Run).where(Run.workspace_id == principal.workspace_id)
    installation_id = request.args.get("installation")
    if installation_id:
        installation = db.get(Installation, installation_id)
        if installation is None or installation.workspace_id != principal.workspace_id:
            raise NotFound(f"no installation {installation_id}")
        query = query.where(Run.installation_id == installation_id)
    status = _choice("status", RUN_STATUSES)
    if status:
        query = query.where(Run.status == status)
    kind = _choice("kind", RUN_KINDS)
    if kind:
        query = query.where(Run.kind == kind)
    rows, next_cursor = paginate_rows(db, query, Run.id)
    return {"items": [runs.as_dict(row) for row in rows], "next": next_cursor}


def get_run(run_id: str) -> dict[str, Any]:
    principal = require_principal()
    run = db_session().get(Run, run_id)
    if run is None or run.workspace_id != principal.workspace_id:
        raise NotFound(f"no run {run_id}")
    return runs.as_dict(run, with_trace=True)


def register(blueprint: Blueprint) -> None:
    prefix = "/installations/<installation_id>"
    blueprint.add_url_rule(f"{prefix}/actions/<action>/form", view_func=action_form,
                           methods=["GET"], endpoint="action_form")
    blueprint.add_url_rule(f"{prefix}/sources/<source>", view_func=source_options,
                           methods=["GET"], endpoint="source_options")
    blueprint.add_url_rule(f"{prefix}/actions/<action>/runs", view_func=create_run,
                           methods=["POST"], endpoint="run_create")
    blueprint.add_url_rule("/runs", view_func=list_runs, methods=["GET"], endpoint="runs_list")
    blueprint.add_url_rule("/runs/<run_id>", view_func=get_run, methods=["GET"],
                           endpoint="run_get")
