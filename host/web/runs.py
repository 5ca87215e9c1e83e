"""Running actions from a form, run pages and run history."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, redirect, render_template, request, url_for
from sqlalchemy import select
from werkzeug.wrappers import Response

from ..db import Installation, Run
from ..db import session as db_session
from ..errors import NotFound, ValidationError
from ..forms import coerce
from ..identity import login_required, require_principal
from ..services import catalog, installations, runs
from ..services.actions import action_of, form_state

blueprint = Blueprint("runs", __name__)
PAGE_SIZE = 50


def _form_page(installation: Any, action_name: str, values: dict[str, Any],
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
    installation = installations.get_installation(db, principal, installation_id)
    if request.method == "GET":
        values: dict[str, Any] = {}
        rerun = request.args.get("rerun")
        if rerun:
            previous = db.get(Run, rerun)
            if (previous is None or previous.installation_id != installation.id
                    or previous.name != action):
                raise NotFound(f"no run {rerun} of this action")
            values = dict(previous.parameters or {})
        return _form_page(installation, action, values)
    manifest = installations.manifest_of(current_app, db, installation)
    typed, coercion_errors = coerce(action_of(manifest, action).form, request.form)
    try:
        run = runs.run_action(current_app, db, principal, installation, action, request.form,
                              from_form=True, sandbox=request.form.get("__sandbox") == "true")
    except ValidationError as error:
        shown = dict(typed)
        for item in coercion_errors:
            shown[item.field] = request.form.get(item.field)
        found: dict[str, str] = {}
        for item in error.errors:
            found.setdefault(item.field, item.message)
        return _form_page(installation, action, shown, found, 422)
    return redirect(url_for("runs.run_page", run_id=run.id))


def _run(run_id: str) -> Run:
    run = db_session().get(Run, run_id)
    if run is None or run.workspace_id != require_principal().workspace_id:
        raise NotFound(f"no run {run_id}")
    return run


@blueprint.get("/runs/<run_id>")
@login_required
def run_page(run_id: str) -> str:
    run = _run(run_id)
    db = db_session()
    snapshot = catalog.get_catalog(current_app).snapshot(db)
    installation = db.get(Installation, run.installation_id) if run.installation_id else None
    manifest = snapshot.get(installation.miniapp, installation.miniapp_version) \
        if installation is not None else None
    return render_template("runs/run.html", run=run, installation=installation,
                           manifest=manifest, document=runs.as_dict(run, with_trace=True))


@blueprint.get("/installations/<installation_id>/runs")
@login_required
def history(installation_id: str) -> str:
    principal = require_principal()
    db = db_session()
    installation = installations.get_installation(db, principal, installation_id)
    query = select(Run).where(Run.installation_id == installation.id)
    status = request.args.get("status", "")
    if status:
        query = query.where(Run.status == status)
    name = request.args.get("action", "")
    if name:
        query = query.where(Run.name == name)
    before = request.args.get("before", "")
    if before:
        query = query.where(Run.id < before)
    rows = list(db.scalars(query.order_by(Run.id.desc()).limit(PAGE_SIZE + 1)))
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    manifest = catalog.get_catalog(current_app).snapshot(db).get(
        installation.miniapp, installation.miniapp_version)
    return render_template("runs/history.html", installation=installation, manifest=manifest,
                           runs=rows, status=status, action=name,
                           older=rows[-1].id if more and rows else None)
