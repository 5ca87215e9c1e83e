"""Server-rendered pages: marketplace now; installations, runs, flows and admin later."""

from __future__ import annotations

from flask import Flask

from . import errors, helpers, marketplace


def init_app(app: Flask) -> None:
    errors.init_app(app)
    helpers.init_app(app)
    app.register_blueprint(marketplace.blueprint)
