"""Flows and flow runs: ``/api/v1/flows`` and ``/api/v1/flow-runs`` (FLOWS.md §9)."""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, current_app, request

from ..db import session as db_session
from ..errors import FieldError, FlowInvalid, ValidationError
from ..identity import require_principal
from ..services import flow_runs, flows
from .body import json_object
from .pagination import next_cursor, page_args
from .schemas import validate_request

MAX_WAIT = 55
_PREFER_WAIT = re.compile(r"(?:^|[,;\s])wait\s*=\s*(\d+)", re.IGNORECASE)


def _object(flow: Any) -> dict[str, Any]:
    db = db_session()
    version = flows.current_version(db, flow)
    try:
        compiled = flows.compiled(current_app, db, flow.workspace_id, flow.id, flow.version)
        answer = flows.flow_object(current_app, flow, version, compiled)
    except FlowInvalid as error:
        answer = flows.flow_object(current_app, flow, version, None)
        answer["problems"] = error.problem_extras()["errors"]
    return answer


def _document() -> Any:
    """The document: a JSON body, or YAML sent as ``application/yaml``."""
    if request.mimetype in ("application/yaml", "application/x-yaml", "text/yaml"):
        return request.get_data(as_text=True)
    return json_object()


def create() -> tuple[dict[str, Any], int, dict[str, str]]:
    principal = require_principal()
    saved = flows.save(current_app, db_session(), principal, _document())
    status = 201 if saved.created else 200
    return _object(saved.flow), status, {"Location": f"/api/v1/flows/{saved.flow.key}"}


def list_all() -> dict[str, Any]:
    rows, after = flows.list_flows(db_session(), require_principal(), page_args())
    return {"items": [_object(row) for row in rows], "next": next_cursor(after)}


def get_one(key: str) -> dict[str, Any]:
    return _object(flows.get_flow(db_session(), require_principal(), key))


def update(key: str) -> dict[str, Any]:
    principal = require_principal()
    db = db_session()
    flows.get_flow(db, principal, key)
    saved = flows.save(current_app, db, principal, _document(), key=key)
    return _object(saved.flow)


def delete(key: str) -> tuple[str, int]:
    principal = require_principal()
    db = db_session()
    flows.delete_flow(db, principal, flows.get_flow(db, principal, key))
    return "", 204


def enable(key: str) -> dict[str, Any]:
    principal = require_principal()
    db = db_session()
    flow = flows.get_flow(db, principal, key)
    return _object(flows.set_enabled(current_app, db, principal, flow, True))


def disable(key: str) -> dict[str, Any]:
    principal = require_principal()
    db = db_session()
    flow = flows.get_flow(db, principal, key)
    return _object(flows.set_enabled(current_app, db, principal, flow, False))


def create_token(key: str) -> tuple[dict[str, Any], int]:
    principal = require_principal()
    db = db_session()
    flow = flows.get_flow(db, principal, key)
    return {"token": flows.create_token(db, principal, flow), "flow": flow.key}, 201


def _wait_seconds() -> int | None:
    match = _PREFER_WAIT.search(request.headers.get("Prefer", ""))
    return min(int(match.group(1)), MAX_WAIT) if match else None


def _sandbox_flag() -> bool:
    value = request.args.get("sandbox")
    if value is None:
        return False
    if value.lower() in ("true", "1"):
        return True
    if value.lower() in ("false", "0"):
        return False
    raise ValidationError([FieldError("sandbox", "must be true or false")])


def start(key: str) -> tuple[dict[str, Any], int, dict[str, str]]:
    principal = require_principal(flow_token=True)
    db = db_session()
    flow = flows.head(current_app, principal, key)
    body: Any = {}
    if request.get_data(cache=True).strip():
        body = json_object()
    started = flow_runs.start(current_app, db, principal, flow, body, sandbox=_sandbox_flag(),
                              idempotency_key=request.headers.get("Idempotency-Key"))
    run = started.run
    headers = {"Location": f"/api/v1/flow-runs/{run.id}"}
    wait = _wait_seconds()
    if wait and flow_runs.wait_for(current_app, run.id, wait):
        headers["Preference-Applied"] = f"wait={wait}"
        db.expire_all()
        fresh = flow_runs.get_run(db, principal, run.id)
        return flow_runs.run_object(db, fresh, flow.key), 200, headers
    if started.tasks is None:  # an Idempotency-Key's earlier run: as it is now
        return flow_runs.run_object(db, run, flow.key), 202, headers
    return flow_runs.run_object(db, run, flow.key, tasks=started.tasks), 202, headers


def list_runs() -> dict[str, Any]:
    principal = require_principal()
    db = db_session()
    flow_id = None
    if request.args.get("flow"):
        flow_id = flows.get_flow(db, principal, request.args["flow"]).id
    where = flow_runs.FlowRunFilter(flow_id, request.args.get("status"))
    rows, after = flow_runs.list_runs(db, principal, where, page_args())
    keys: dict[str, str] = {}
    items = []
    for row in rows:
        if row.flow_id not in keys:
            keys[row.flow_id] = flow_runs.flow_key(db, row.flow_id)
        items.append(flow_runs.run_object(db, row, keys[row.flow_id], with_tasks=False))
    return {"items": items, "next": next_cursor(after)}


def get_run(flow_run_id: str) -> dict[str, Any]:
    db = db_session()
    return flow_runs.run_object(db, flow_runs.get_run(db, require_principal(), flow_run_id))


def cancel(flow_run_id: str) -> dict[str, Any]:
    principal = require_principal()
    db = db_session()
    run = flow_runs.get_run(db, principal, flow_run_id)
    run = flow_runs.cancel(current_app, db, principal, run)
    return flow_runs.run_object(db, run)


def retry(flow_run_id: str) -> dict[str, Any]:
    principal = require_principal()
    db = db_session()
    run = flow_runs.retry_run(current_app, db, principal,
                              flow_runs.get_run(db, principal, flow_run_id))
    return flow_runs.run_object(db, run)


def resolve(flow_run_id: str, task: str) -> dict[str, Any]:
    principal = require_principal()
    db = db_session()
    body = validate_request("TaskResolve", json_object())
    run = flow_runs.get_run(db, principal, flow_run_id)
    run = flow_runs.resolve(current_app, db, principal, run, task, body)
    return flow_runs.run_object(db, run)


def register(blueprint: Blueprint) -> None:
    rules: list[tuple[str, Any, list[str], str]] = [
        ("/flows", create, ["POST"], "flows_create"),
        ("/flows", list_all, ["GET"], "flows_list"),
        ("/flows/<key>", get_one, ["GET"], "flow_get"),
        ("/flows/<key>", update, ["PUT"], "flow_update"),
        ("/flows/<key>", delete, ["DELETE"], "flow_delete"),
        ("/flows/<key>/enable", enable, ["POST"], "flow_enable"),
        ("/flows/<key>/disable", disable, ["POST"], "flow_disable"),
        ("/flows/<key>/tokens", create_token, ["POST"], "flow_token"),
        ("/flows/<key>/runs", start, ["POST"], "flow_start"),
        ("/flow-runs", list_runs, ["GET"], "flow_runs_list"),
        ("/flow-runs/<flow_run_id>", get_run, ["GET"], "flow_run_get"),
        ("/flow-runs/<flow_run_id>/cancel", cancel, ["POST"], "flow_run_cancel"),
        ("/flow-runs/<flow_run_id>/retry", retry, ["POST"], "flow_run_retry"),
        ("/flow-runs/<flow_run_id>/tasks/<task>/resolve", resolve, ["POST"], "flow_task_resolve"),
    ]
    for path, view, methods, endpoint in rules:
        blueprint.add_url_rule(path, view_func=view, methods=methods, endpoint=endpoint)

