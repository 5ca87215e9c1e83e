"""The JSON API, version 1, under ``/api/v1`` (plus ``/healthz``).

Errors are problem JSON (see ``host.web.errors``); lists are paginated with
``?limit=`` and an opaque ``?cursor=`` (``host.api.pagination``).
"""

from __future__ import annotations

from flask import Blueprint, Flask

from . import health, installations, miniapps, runs

blueprint = Blueprint("api", __name__, url_prefix="/api/v1")
miniapps.register(blueprint)
installations.register(blueprint)
runs.register(blueprint)


def init_app(app: Flask) -> None:
    app.register_blueprint(health.blueprint)
    app.register_blueprint(blueprint)
