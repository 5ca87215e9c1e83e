"""The JSON API, version 1, under ``/api/v1`` (plus ``/healthz``).

Errors are problem JSON (see ``host.problems``); lists are paginated with
``?limit=`` and an opaque ``?cursor=`` (``host.api.pagination``). Calls made
with an API token are rate limited per token (``host.api.ratelimit``).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask

from . import auth, docs, events, flows, health, installations, miniapps, ratelimit, runs, spec

blueprint = Blueprint("api", __name__, url_prefix="/api/v1")


@blueprint.get("/openapi.json")
def openapi() -> dict[str, Any]:
    return spec.document()


miniapps.register(blueprint)
installations.register(blueprint)
runs.register(blueprint)
auth.register(blueprint)
flows.register(blueprint)
events.register(blueprint)


def init_app(app: Flask) -> None:
    if app.config.get("MAX_CONTENT_LENGTH") is None:
        app.config["MAX_CONTENT_LENGTH"] = spec.MAX_BODY_BYTES
    ratelimit.init_app(app, blueprint)
    app.register_blueprint(health.blueprint)
    app.register_blueprint(blueprint)
    app.register_blueprint(docs.blueprint)
