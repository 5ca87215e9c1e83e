"""``/api/v1/installations`` and ``/api/v1/audit``."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, request
from sqlalchemy import select

from ..audit import as_dict as audit_dict
from ..auth import oauth2
from ..db import AuditEvent, Installation
from ..db import session as db_session
from ..identity import require_principal
from ..services import installations
from .body import json_object
from .pagination import paginate_rows
from .schemas import validate_request


def create() -> tuple[dict[str, Any], int]:
    body = validate_request("InstallationCreate", json_object())
    db = db_session()
    principal = require_principal()
    installation = installations.install(
        current_app, db, principal, body["miniapp"], config=body.get("config"),
        credentials=body.get("credentials"), sandbox=body.get("sandbox", False))
    answer = installations.as_dict(installation)
    manifest = installations.manifest_of(current_app, db, installation)
    if manifest.auth.type == "oauth2":
        answer["authorizeUrl"] = oauth2.start_connect(current_app, db, principal, installation,
                                                      manifest)
    return answer, 201


def list_all() -> dict[str, Any]:
    principal = require_principal()
    db = db_session()
    query = select(Installation).where(Installation.workspace_id == principal.workspace_id,
                                       Installation.deleted_at.is_(None))
    rows, next_cursor = paginate_rows(db, query, Installation.id)
    return {"items": [installations.as_dict(row) for row in rows], "next": next_cursor}


def get_one(installation_id: str) -> dict[str, Any]:
    installation = installations.get_installation(db_session(), require_principal(),
                                                  installation_id)
    return installations.as_dict(installation)


def delete(installation_id: str) -> tuple[str, int]:
    principal = require_principal()
    db = db_session()
    installation = installations.get_installation(db, principal, installation_id)
    installations.uninstall(current_app, db, principal, installation)
    return "", 204


def connect(installation_id: str) -> dict[str, Any]:
    principal = require_principal()
    db = db_session()
    installation = installations.get_installation(db, principal, installation_id)
    manifest = installations.manifest_of(current_app, db, installation)
    if manifest.auth.type == "oauth2":
        return {"authorizeUrl": oauth2.start_connect(current_app, db, principal, installation,
                                                     manifest)}
    body = validate_request("Connect", json_object())
    installations.reconnect(current_app, db, principal, installation, body.get("credentials"))
    return installations.as_dict(installation)


def usage(installation_id: str) -> dict[str, Any]:
    db = db_session()
    installation = installations.get_installation(db, require_principal(), installation_id)
    return installations.usage(db, installation)


def audit_list() -> dict[str, Any]:
    principal = require_principal()
    db = db_session()
    query = select(AuditEvent).where(AuditEvent.workspace_id == principal.workspace_id)
    installation_id = request.args.get("installation")
    if installation_id:
        # Another workspace's (or an unknown) id answers 404, like everywhere else.
        installation = db.get(Installation, installation_id)
        if installation is None or installation.workspace_id != principal.workspace_id:
            installations.get_installation(db, principal, installation_id)
        query = query.where(AuditEvent.installation_id == installation_id)
    rows, next_cursor = paginate_rows(db, query, AuditEvent.id)
    items = []
    for event in rows:
        item = audit_dict(event)
        items.append({"at": item["at"], "actor": item["actor"],
                      "installation": item["installation"], "kind": item["kind"],
                      "detail": item["detail"], "id": item["id"]})
    return {"items": items, "next": next_cursor}


def register(blueprint: Blueprint) -> None:
    blueprint.add_url_rule("/installations", view_func=create, methods=["POST"],
                           endpoint="installations_create")
    blueprint.add_url_rule("/installations", view_func=list_all, methods=["GET"],
                           endpoint="installations_list")
    blueprint.add_url_rule("/installations/<installation_id>", view_func=get_one,
                           methods=["GET"], endpoint="installation_get")
    blueprint.add_url_rule("/installations/<installation_id>", view_func=delete,
                           methods=["DELETE"], endpoint="installation_delete")
    blueprint.add_url_rule("/installations/<installation_id>/connect", view_func=connect,
                           methods=["POST"], endpoint="installation_connect")
    blueprint.add_url_rule("/installations/<installation_id>/usage", view_func=usage,
                           methods=["GET"], endpoint="installation_usage")
    blueprint.add_url_rule("/audit", view_func=audit_list, methods=["GET"], endpoint="audit")
