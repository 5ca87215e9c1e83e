"""``/api/v1/installations`` and ``/api/v1/audit``."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, request

from ..audit import as_dict as audit_dict
from ..db import session as db_session
from ..identity import require_principal
from ..services import audit_events, data_sources, installations
from .body import json_object
from .pagination import next_cursor, page_args
from .schemas import validate_request


def _object(installation: Any) -> dict[str, Any]:
    """The Installation object: the row's own fields and where its webhooks go."""
    return {**installation.as_dict(),
            "webhookUrl": installations.webhook_url(current_app, installation)}


def create() -> tuple[dict[str, Any], int]:
    body = validate_request("InstallationCreate", json_object())
    connecting = installations.install(
        current_app, db_session(), require_principal(), body["miniapp"],
        config=body.get("config"), credentials=body.get("credentials"),
        sandbox=body.get("sandbox", False), name=body.get("name"))
    answer = _object(connecting.installation)
    if connecting.authorize_url is not None:
        answer["authorizeUrl"] = connecting.authorize_url
    return answer, 201


def list_all() -> dict[str, Any]:
    rows, after = installations.list_installations(db_session(), require_principal(),
                                                   page_args())
    return {"items": [_object(row) for row in rows], "next": next_cursor(after)}


def get_one(installation_id: str) -> dict[str, Any]:
    installation = installations.get_installation(db_session(), require_principal(),
                                                  installation_id)
    return _object(installation)


def update(installation_id: str) -> dict[str, Any]:
    principal = require_principal()
    db = db_session()
    installation = installations.get_installation(db, principal, installation_id)
    body = validate_request("InstallationUpdate", json_object())
    if "name" in body:
        installations.rename(current_app, db, principal, installation, body["name"])
    return _object(installation)


def put_credentials(installation_id: str) -> dict[str, Any]:
    """New apiKey/basic credentials: the same use case as connecting again, with the
    credentials required."""
    principal = require_principal()
    db = db_session()
    installation = installations.get_installation(db, principal, installation_id)
    body = validate_request("Credentials", json_object())
    connecting = installations.connect(current_app, db, principal, installation,
                                       lambda: body["credentials"], oauth=False)
    return _object(connecting.installation)


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
    connecting = installations.connect(
        current_app, db, principal, installation,
        lambda: validate_request("Connect", json_object()).get("credentials"))
    if connecting.authorize_url is not None:
        return {"authorizeUrl": connecting.authorize_url}
    return _object(installation)


def usage(installation_id: str) -> dict[str, Any]:
    db = db_session()
    installation = installations.get_installation(db, require_principal(), installation_id)
    return installations.usage(db, installation)


def audit_list() -> dict[str, Any]:
    rows, after = audit_events.list_events(db_session(), require_principal(), page_args(),
                                           request.args.get("installation") or None)
    items = []
    for event in rows:
        item = audit_dict(event)
        items.append({"at": item["at"], "actor": item["actor"],
                      "installation": item["installation"], "kind": item["kind"],
                      "detail": item["detail"], "id": item["id"]})
    return {"items": items, "next": next_cursor(after)}


def get_webhook_secret(installation_id: str) -> dict[str, Any]:
    principal = require_principal()
    db = db_session()
    installation = installations.get_installation(db, principal, installation_id)
    return {"secret": installations.webhook_secret(current_app, db, principal, installation),
            "webhookUrl": installations.webhook_url(current_app, installation)}


def put_webhook_secret(installation_id: str) -> dict[str, Any]:
    principal = require_principal()
    db = db_session()
    installation = installations.get_installation(db, principal, installation_id)
    body = validate_request("WebhookSecret", json_object())
    secret = installations.set_webhook_secret(current_app, db, principal, installation,
                                              body.get("secret"))
    return {"secret": secret, "webhookUrl": installations.webhook_url(current_app, installation)}


def sync_data_source(installation_id: str, data_source: str) -> dict[str, Any]:
    principal = require_principal()
    db = db_session()
    installation = installations.get_installation(db, principal, installation_id)
    manifest = installations.manifest_of(current_app, db, installation)
    data_sources.data_source(manifest, data_source)  # 404 before anything is sent
    db.commit()  # hand the connection back while the provider answers
    return data_sources.sync(current_app, installation, manifest, data_source,
                             actor=principal.actor, actor_id=principal.user.id).as_dict()


def data_source_records(installation_id: str, data_source: str) -> dict[str, Any]:
    principal = require_principal()
    db = db_session()
    installation = installations.get_installation(db, principal, installation_id)
    data_sources.data_source(installations.manifest_of(current_app, db, installation),
                             data_source)
    page = page_args()
    items, after = data_sources.records(db, installation, data_source, page.limit, page.after)
    return {"items": items, "next": next_cursor(after)}


def register(blueprint: Blueprint) -> None:
    blueprint.add_url_rule("/installations/<installation_id>/data-sources/<data_source>/sync",
                           view_func=sync_data_source, methods=["POST"],
                           endpoint="installation_data_source_sync")
    blueprint.add_url_rule("/installations/<installation_id>/data-sources/<data_source>/records",
                           view_func=data_source_records, methods=["GET"],
                           endpoint="installation_data_source_records")
    blueprint.add_url_rule("/installations/<installation_id>/webhook-secret",
                           view_func=get_webhook_secret, methods=["GET"],
                           endpoint="installation_webhook_secret")
    blueprint.add_url_rule("/installations/<installation_id>/webhook-secret",
                           view_func=put_webhook_secret, methods=["PUT"],
                           endpoint="installation_webhook_secret_set")
    blueprint.add_url_rule("/installations", view_func=create, methods=["POST"],
                           endpoint="installations_create")
    blueprint.add_url_rule("/installations", view_func=list_all, methods=["GET"],
                           endpoint="installations_list")
    blueprint.add_url_rule("/installations/<installation_id>", view_func=get_one,
                           methods=["GET"], endpoint="installation_get")
    blueprint.add_url_rule("/installations/<installation_id>", view_func=update,
                           methods=["PATCH"], endpoint="installation_update")
    blueprint.add_url_rule("/installations/<installation_id>/credentials",
                           view_func=put_credentials, methods=["PUT"],
                           endpoint="installation_credentials")
    blueprint.add_url_rule("/installations/<installation_id>", view_func=delete,
                           methods=["DELETE"], endpoint="installation_delete")
    blueprint.add_url_rule("/installations/<installation_id>/connect", view_func=connect,
                           methods=["POST"], endpoint="installation_connect")
    blueprint.add_url_rule("/installations/<installation_id>/usage", view_func=usage,
                           methods=["GET"], endpoint="installation_usage")
    blueprint.add_url_rule("/audit", view_func=audit_list, methods=["GET"], endpoint="audit")
