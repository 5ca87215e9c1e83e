"""Server-rendered pages: marketplace, sign-in and account, installations, admin."""

from __future__ import annotations

from flask import Flask

from .. import problems
from . import admin, auth, helpers, hooks, installations, marketplace, runs


def init_app(app: Flask) -> None:
    problems.init_app(app)
    helpers.init_app(app)
    app.register_blueprint(marketplace.blueprint)
    app.register_blueprint(auth.blueprint)
    app.register_blueprint(installations.blueprint)
    app.register_blueprint(runs.blueprint)
    app.register_blueprint(admin.blueprint)
    app.register_blueprint(admin.meta)
    app.register_blueprint(hooks.blueprint)
