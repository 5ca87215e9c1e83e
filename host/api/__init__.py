"""The JSON API, version 1, under ``/api/v1`` (plus ``/healthz``).

Errors are problem JSON (see ``host.web.errors``); lists are paginated with
``?limit=`` and an opaque ``?cursor=`` (``host.api.pagination``).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, g
from werkzeug.exceptions import Unauthorized

from ..identity import bearer_token, current_principal
from . import health, installations, miniapps, ratelimit, runs, spec

blueprint = Blueprint("api", __name__, url_prefix="/api/v1")


@blueprint.before_request
def _count_token_calls() -> None:
    """Every call made with a valid API token counts, before its handler does any
    work; a token that does not sign in is left to the handler to refuse."""
    if bearer_token() is None:
        return
    try:
        principal = current_principal()
    except Unauthorized:
        g.pop("principal", None)
        return
    if principal is not None:
        ratelimit.check_token_call(principal.via)


@blueprint.get("/openapi.json")
def openapi() -> dict[str, Any]:
    return spec.document()


miniapps.register(blueprint)
installations.register(blueprint)
runs.register(blueprint)


def init_app(app: Flask) -> None:
    if app.config.get("MAX_CONTENT_LENGTH") is None:
        app.config["MAX_CONTENT_LENGTH"] = spec.MAX_BODY_BYTES
    ratelimit.init_app(app)
    app.register_blueprint(health.blueprint)
    app.register_blueprint(blueprint)
