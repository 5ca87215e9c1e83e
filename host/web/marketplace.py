"""The marketplace: the catalog grid with search and category filter, and detail pages."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, render_template, request, send_file
from werkzeug.wrappers import Response

from ..db import session
from ..identity import allow_form_action
from ..services.catalog import get_catalog, icon_path

blueprint = Blueprint("marketplace", __name__)


@blueprint.get("/")
def index() -> str:
    query = request.args.get("q", "").strip()
    category = request.args.get("category", "").strip()
    snapshot = get_catalog(current_app).snapshot(session())
    results = snapshot.search(query, category)
    return render_template(
        "marketplace/index.html",
        miniapps=results,
        total=len(snapshot.latest),
        categories=snapshot.categories,
        query=query,
        category=category,
    )


@blueprint.get("/miniapps/<name>")
def detail(name: str) -> str:
    catalog = get_catalog(current_app)
    snapshot = catalog.snapshot(session())
    version = request.args.get("version") or None
    manifest = catalog.require(session(), name, version)
    if manifest.auth.authorize is not None:
        allow_form_action(manifest.auth.authorize.url.source)
    return render_template(
        "marketplace/detail.html",
        manifest=manifest,
        versions=snapshot.versions(name),
    )


@blueprint.get("/miniapps/<name>/icon")
def icon(name: str) -> Response:
    manifest = get_catalog(current_app).require(session(), name)
    path = icon_path(manifest)
    if path is None:
        abort(404)
    response = send_file(path, max_age=3600)
    response.headers["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'"
    return response
