"""Action forms, source options and runs: ``/api/v1/installations/{id}/…`` and
``/api/v1/runs``."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, request

from ..db import session as db_session
from ..identity import require_principal
from ..services import installations, runs
from ..services.actions import form_state
from ..services.sources import load_options
from .body import json_object
from .pagination import next_cursor, page_args
from .schemas import validate_request


def action_form(installation_id: str, action: str) -> dict[str, Any]:
    principal = require_principal()
    db = db_session()
    installation = installations.for_run(current_app, db, principal, installation_id)
    state = form_state(current_app, db, principal, installation, action, request.args)
    return {"schema": state.action.parameters,
            "fields": [field.as_dict() for field in state.fields]}


def source_options(installation_id: str, source: str) -> dict[str, Any]:
    principal = require_principal()
    db = db_session()
    installation = installations.for_run(current_app, db, principal, installation_id)
    return {"options": load_options(current_app, db, principal, installation, source,
                                    request.args)}


def create_run(installation_id: str, action: str) -> tuple[dict[str, Any], int]:
    principal = require_principal()
    db = db_session()
    installation = installations.for_run(current_app, db, principal, installation_id)
    body = validate_request("RunCreate", json_object())
    run = runs.run_action(current_app, db, principal, installation, action,
                          body.get("parameters", {}), sandbox=body.get("sandbox", False))
    return run.as_dict(), 201


def list_runs() -> dict[str, Any]:
    where = runs.RunFilter(installation=request.args.get("installation") or None,
                           status=request.args.get("status"), kind=request.args.get("kind"))
    rows, after = runs.list_runs(current_app, db_session(), require_principal(), where,
                                 page_args())
    return {"items": [row.as_dict() for row in rows], "next": next_cursor(after)}


def get_run(run_id: str) -> dict[str, Any]:
    run = runs.get_run(current_app, db_session(), require_principal(), run_id)
    return run.as_dict(with_trace=True)


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
