"""The catalog API: ``GET /api/v1/miniapps`` and ``GET /api/v1/miniapps/{name}``.

Answers without authentication, like the marketplace pages, and never carries
an operator secret (client settings live in ``AppClient``, not in manifests).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, request, url_for

from ..db import session
from ..manifest import Manifest
from ..services.catalog import Entry, get_catalog
from .pagination import paginate


def _icon(item: Entry | Manifest) -> str | None:
    if not item.icon:
        return None
    if item.icon.startswith("https://"):
        return item.icon
    return url_for("marketplace.icon", name=item.name)


def summary(item: Entry | Manifest) -> dict[str, Any]:
    """A list item: from the catalog's entry, so listing compiles nothing."""
    return {
        "name": item.name,
        "version": item.version,
        "title": item.title,
        "description": item.description,
        "categories": list(item.categories),
        "icon": _icon(item),
        "authType": item.auth_type,
        "actions": [
            {"name": a.name, "title": a.title, "description": a.description}
            for a in item.actions
        ],
    }


def detail(manifest: Manifest, versions: list[str]) -> dict[str, Any]:
    body = summary(manifest)
    body["actions"] = [
        {
            "name": a.name,
            "title": a.title,
            "description": a.description,
            "parameters": a.parameters,
            "output": a.output,
        }
        for a in manifest.actions
    ]
    body["sources"] = sorted(manifest.sources)
    body["allowedHosts"] = list(manifest.allowed_hosts)
    body["publisher"] = dict(manifest.publisher) if manifest.publisher else None
    body["versions"] = versions
    body["auth"] = _auth(manifest)
    return body


def _auth(manifest: Manifest) -> dict[str, Any]:
    auth = manifest.auth
    info: dict[str, Any] = {"type": auth.type}
    if auth.fields is not None:
        info["fields"] = auth.fields
    if auth.type == "oauth2":
        info["scope"] = auth.config.get("scope")
        info["pkce"] = bool(auth.authorize and auth.authorize.pkce)
        info["refreshes"] = auth.refresh_token is not None
    return info


def list_miniapps() -> dict[str, Any]:
    snapshot = get_catalog(current_app).snapshot(session())
    found = snapshot.search(request.args.get("q", ""), request.args.get("category", ""))
    found = sorted(found, key=lambda m: m.name)
    page, next_cursor = paginate(found, key=lambda m: m.name)
    return {"items": [summary(m) for m in page], "next": next_cursor}


def get_miniapp(name: str) -> dict[str, Any]:
    catalog = get_catalog(current_app)
    db = session()
    manifest = catalog.require(db, name, request.args.get("version") or None)
    return detail(manifest, catalog.snapshot(db).versions(name))


def register(blueprint: Blueprint) -> None:
    blueprint.add_url_rule("/miniapps", view_func=list_miniapps, methods=["GET"])
    blueprint.add_url_rule("/miniapps/<name>", view_func=get_miniapp, methods=["GET"])
