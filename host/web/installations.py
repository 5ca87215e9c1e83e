"""Installing, connecting, viewing and uninstalling mini-apps, and the audit pages."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from ..audit import as_dict as audit_dict
from ..db import Installation
from ..db import session as db_session
from ..errors import BadInput, CallbackRejected, ConnectRefused, ValidationError
from ..identity import (
    allow_form_action,
    current_principal,
    login_required,
    require_principal,
)
from ..manifest import Manifest
from ..services import audit_events, catalog, installations, runs
from ..services.paging import Page

blueprint = Blueprint("installations", __name__)


def _errors(error: ValidationError) -> dict[str, str]:
    found: dict[str, str] = {}
    for item in error.errors:
        found.setdefault(item.field, item.message)
    return found


def _connect_page(manifest: Manifest, action: str, values: dict[str, Any] | None = None,
                  errors: dict[str, str] | None = None, refused: str | None = None,
                  installation: Installation | None = None,
                  status: int = 200) -> tuple[str, int]:
    return render_template(
        "installations/connect.html", manifest=manifest, action=action, values=values or {},
        errors=errors or {}, refused=refused, installation=installation,
    ), status


def _submitted_values(manifest: Manifest) -> dict[str, Any]:
    """What to show again after an error: never a secret field's value.

    Only the built-in plain widgets are filled back in; a password field or a
    widget a plugin draws might hold a key, and a person retypes those."""
    form = manifest.auth.form
    if form is None:
        return {}
    return {f.name: request.form.get(f.name) for f in form.fields
            if f.widget in _PLAIN_WIDGETS and not f.secret}


_PLAIN_WIDGETS = frozenset({"text", "textarea", "select", "number", "toggle", "source"})


@blueprint.post("/miniapps/<name>/install")
@login_required
def install(name: str) -> Response | tuple[str, int]:
    """Install from the marketplace: at once for ``none``, else via the connect form."""
    db = db_session()
    manifest = catalog.get_catalog(current_app).require(db, name)
    if manifest.auth.form is not None:  # API key, password, or a plugin's connect form
        return redirect(url_for("installations.connect_new", name=name))
    connecting = installations.install(current_app, db, require_principal(), name,
                                       sandbox=request.form.get("sandbox") == "true")
    if connecting.authorize_url is not None:
        return redirect(connecting.authorize_url)
    flash(f"{manifest.title} is installed.", "info")
    return redirect(url_for("installations.detail",
                            installation_id=connecting.installation.id))


@blueprint.route("/miniapps/<name>/connect", methods=["GET", "POST"])
@login_required
def connect_new(name: str) -> Response | tuple[str, int]:
    db = db_session()
    manifest = catalog.get_catalog(current_app).require(db, name)
    action = url_for("installations.connect_new", name=name)
    if request.method == "GET":
        return _connect_page(manifest, action)
    try:
        installation = installations.install(
            current_app, db, require_principal(), name, credentials=request.form,
            sandbox=request.form.get("sandbox") == "true", from_form=True).installation
    except ValidationError as error:
        return _connect_page(manifest, action, _submitted_values(manifest), _errors(error),
                             status=422)
    except ConnectRefused as error:
        return _connect_page(manifest, action, _submitted_values(manifest),
                             refused=error.detail, status=422)
    flash(f"{manifest.title} is connected.", "info")
    return redirect(url_for("installations.detail", installation_id=installation.id))


@blueprint.get("/connect/<name>/callback")
def callback(name: str) -> Response | tuple[str, int, dict[str, str]]:
    """Where the provider sends the browser back. It never shows a token, loads
    nothing from elsewhere, and leaks no code through the Referer header."""
    no_referrer = {"Referrer-Policy": "no-referrer"}
    db = db_session()
    try:
        finished = installations.finish_connect(current_app, db, name, request.args,
                                                current_principal())
    except CallbackRejected as error:
        return (render_template("error.html", status=400, title="Connect not finished",
                                detail=error.detail), 400, no_referrer)
    if finished.error:
        flash(finished.error, "error")
    else:
        flash("Connected.", "info")
    response = redirect(url_for("installations.detail", installation_id=finished.installation_id))
    response.headers.update(no_referrer)
    return response


@blueprint.get("/installations")
@login_required
def index() -> str:
    principal = require_principal()
    db = db_session()
    found, _ = installations.list_installations(db, principal)
    snapshot = catalog.get_catalog(current_app).snapshot(db)
    return render_template("installations/list.html", installations=found, snapshot=snapshot)


@blueprint.get("/installations/<installation_id>")
@login_required
def detail(installation_id: str) -> str:
    principal = require_principal()
    db = db_session()
    installation = installations.get_installation(db, principal, installation_id)
    manifest = catalog.get_catalog(current_app).snapshot(db).get(
        installation.miniapp, installation.miniapp_version)
    if manifest is not None and manifest.auth.authorize is not None:
        allow_form_action(manifest.auth.authorize.url.source)
    return render_template(
        "installations/detail.html", installation=installation, manifest=manifest,
        credential_keys=list(installation.credential_keys or []),
        runs=runs.recent_runs(db, installation),
        usage=installations.usage(db, installation),
        webhook_url=installations.webhook_url(current_app, installation),
    )


@blueprint.route("/installations/<installation_id>/connect", methods=["GET", "POST"])
@login_required
def reconnect(installation_id: str) -> Response | tuple[str, int]:
    principal = require_principal()
    db = db_session()
    installation = installations.get_installation(db, principal, installation_id)
    manifest = installations.manifest_of(current_app, db, installation)
    action = url_for("installations.reconnect", installation_id=installation.id)
    if request.method == "GET":
        if manifest.auth.authorize is not None:  # its page has the button that posts here
            return redirect(url_for("installations.detail", installation_id=installation.id))
        if manifest.auth.form is None:
            raise BadInput(f"{manifest.title} has no credentials to enter")
        return _connect_page(manifest, action, installation=installation)
    try:
        connecting = installations.connect(current_app, db, principal, installation,
                                           lambda: request.form, from_form=True)
    except ValidationError as error:
        return _connect_page(manifest, action, _submitted_values(manifest), _errors(error),
                             installation=installation, status=422)
    except ConnectRefused as error:
        return _connect_page(manifest, action, _submitted_values(manifest),
                             refused=error.detail, installation=installation, status=422)
    if connecting.authorize_url is not None:
        return redirect(connecting.authorize_url)
    flash(f"{manifest.title} is connected again.", "info")
    return redirect(url_for("installations.detail", installation_id=installation.id))


@blueprint.post("/installations/<installation_id>/rename")
@login_required
def rename(installation_id: str) -> Response:
    principal = require_principal()
    db = db_session()
    installation = installations.get_installation(db, principal, installation_id)
    try:
        installations.rename(current_app, db, principal, installation,
                             request.form.get("name", "").strip())
    except ValidationError as error:
        message = error.errors[0].message
        flash(f"Not renamed: {'the name ' if message.startswith('must') else ''}{message}.",
              "error")
    else:
        flash(f"Renamed to {installation.name}.", "info")
    return redirect(url_for("installations.detail", installation_id=installation.id))


@blueprint.post("/installations/<installation_id>/uninstall")
@login_required
def uninstall(installation_id: str) -> Response:
    principal = require_principal()
    db = db_session()
    installation = installations.get_installation(db, principal, installation_id)
    outcome = installations.uninstall(current_app, db, principal, installation)
    message = f"{installation.miniapp} is uninstalled and its credentials are erased."
    if outcome.startswith("failed"):
        message += f" Unregistering at the provider {outcome}."
    flash(message, "info")
    return redirect(url_for("installations.index"))


AUDIT_PAGE_SIZE = 200


def _audit_page(installation: Installation | None = None) -> str:
    events, _ = audit_events.list_events(db_session(), require_principal(),
                                         Page(AUDIT_PAGE_SIZE),
                                         installation.id if installation else None)
    return render_template("installations/audit.html", events=[audit_dict(e) for e in events],
                           installation=installation)


@blueprint.get("/audit")
@login_required
def workspace_audit() -> str:
    return _audit_page()


@blueprint.get("/installations/<installation_id>/audit")
@login_required
def installation_audit(installation_id: str) -> str:
    installation = installations.get_installation(db_session(), require_principal(),
                                                  installation_id)
    return _audit_page(installation)
