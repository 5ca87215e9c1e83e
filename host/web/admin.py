"""Operator pages: OAuth clients, catalog errors, plugin problems and workers."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from ..db import session as db_session
from ..errors import ValidationError
from ..identity import admin_required, require_principal
from ..plugins import describe, get_plugins
from ..services import catalog, clients, workers

blueprint = Blueprint("admin", __name__, url_prefix="/admin")
meta = Blueprint("meta", __name__, url_prefix="/-")


@meta.get("/plugins")
@admin_required
def plugin_page() -> str:
    """Every plugin, the hooks it implements, and what failed (operators only)."""
    return render_template("admin/plugins.html", found=describe(get_plugins(current_app)))


@meta.get("/plugins.json")
@admin_required
def plugin_json() -> dict[str, Any]:
    return describe(get_plugins(current_app))


@meta.get("/workers")
@admin_required
def workers_page() -> str:
    """The Celery workers, what each runs, and the queue (operators only)."""
    return render_template("admin/workers.html", found=workers.overview(current_app))


@meta.get("/workers.json")
@admin_required
def workers_json() -> dict[str, Any]:
    return workers.overview(current_app)


@blueprint.get("/")
@admin_required
def index() -> str:
    db = db_session()
    _, errors = catalog.entries(db)
    plugins = get_plugins(current_app)
    return render_template("admin/index.html", catalog_errors=errors, plugins=plugins)


def _clients_page(errors: dict[str, str] | None = None, status: int = 200) -> tuple[str, int]:
    db = db_session()
    snapshot = catalog.get_catalog(current_app).snapshot(db)
    oauth = [m for m in snapshot.latest if m.auth_type == "oauth2"]
    return render_template("admin/clients.html", miniapps=oauth,
                           clients=clients.list_clients(db), errors=errors or {}), status


@blueprint.get("/clients")
@admin_required
def client_list() -> tuple[str, int]:
    return _clients_page()


@blueprint.post("/clients/<miniapp>")
@admin_required
def client_set(miniapp: str) -> Response | tuple[str, int]:
    try:
        clients.set_client(current_app, db_session(), miniapp, request.form.get("client_id", ""),
                           request.form.get("client_secret") or None, require_principal().actor)
    except ValidationError as error:
        return _clients_page({f"{miniapp}.{e.field}": e.message for e in error.errors}, 422)
    flash(f"The OAuth client of {miniapp} is saved.", "info")
    return redirect(url_for("admin.client_list"))
