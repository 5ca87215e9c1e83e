"""Running actions from a form, run pages and run history."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from ..db import Installation
from ..db import session as db_session
from ..errors import ValidationError
from ..identity import login_required, require_principal
from ..services import catalog, installations, runs
from ..services.actions import form_state
from ..services.paging import Page

blueprint = Blueprint("runs", __name__)
PAGE_SIZE = 50


def _form_page(installation: Installation, action_name: str, values: dict[str, Any],
               errors: dict[str, str] | None = None, status: int = 200) -> tuple[str, int]:
    principal = require_principal()
    db = db_session()
    state = form_state(current_app, db, principal, installation, action_name, values)
    urls = {f.field.name: url_for("api.source_options", installation_id=installation.id,
                                  source=f.field.source)
            for f in state.fields if f.field.source}
    return render_template(
        "runs/action.html", installation=installation, manifest=state.manifest,
        action=state.action, states=state.by_name(), source_urls=urls, values=values,
        errors=errors or {},
    ), status


@blueprint.route("/installations/<installation_id>/actions/<action>", methods=["GET", "POST"])
@login_required
def action_form(installation_id: str, action: str) -> Response | tuple[str, int]:
    principal = require_principal()
    db = db_session()
    installation = installations.for_run(current_app, db, principal, installation_id)
    if request.method == "GET":
        rerun = request.args.get("rerun")
        values = runs.parameters_of(db, installation, action, rerun) if rerun else {}
        return _form_page(installation, action, values)
    try:
        run = runs.run_action(current_app, db, principal, installation, action, request.form,
                              from_form=True, sandbox=request.form.get("__sandbox") == "true")
    except ValidationError as error:
        found: dict[str, str] = {}
        for item in error.errors:
            found.setdefault(item.field, item.message)
        return _form_page(installation, action, dict(error.values or {}), found, 422)
    return redirect(url_for("runs.run_page", run_id=run.id))


@blueprint.get("/runs/<run_id>")
@login_required
def run_page(run_id: str) -> str:
    db = db_session()
    run = runs.get_run(current_app, db, require_principal(), run_id)
    installation = db.get(Installation, run.installation_id) if run.installation_id else None
    manifest = catalog.get_catalog(current_app).snapshot(db).get(
        installation.miniapp, installation.miniapp_version) if installation is not None else None
    return render_template("runs/run.html", run=run, installation=installation,
                           manifest=manifest, document=run.as_dict(with_trace=True))


@blueprint.get("/installations/<installation_id>/runs")
@login_required
def history(installation_id: str) -> str:
    principal = require_principal()
    db = db_session()
    installation = installations.get_installation(db, principal, installation_id)
    status = request.args.get("status", "")
    name = request.args.get("action", "")
    where = runs.RunFilter(installation=installation.id, status=status or None,
                           action=name or None)
    rows, after = runs.list_runs(current_app, db, principal, where,
                                 Page(PAGE_SIZE, request.args.get("before") or None))
    manifest = catalog.get_catalog(current_app).snapshot(db).get(
        installation.miniapp, installation.miniapp_version)
    return render_template("runs/history.html", installation=installation, manifest=manifest,
                           runs=rows, status=status, action=name, older=after)
