"""Minihost: a self-hosted host for a marketplace of integration mini-apps."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from flask import Flask

from .version import __version__

__all__ = ["__version__", "create_app"]


def create_app(
    config: Mapping[str, Any] | None = None,
    *,
    instance_path: str | Path | None = None,
    plugins_dirs: Iterable[str] = (),
) -> Flask:
    """Build a Minihost application.

    ``config`` overrides every other configuration source (tests, embedding);
    ``instance_path`` defaults to ``MINIHOST_INSTANCE_PATH`` or ``instance/``;
    ``plugins_dirs`` adds plugin folders for this application only.
    """
    from . import config as config_module
    from . import db, identity, logs, outbound, plugins, vault
    from .api import init_app as init_api
    from .auth import types as auth_types
    from .executor import broker
    from .services import catalog, data_sources, events, flow_runs, runs, schedules, tokens
    from .web import init_app as init_web

    instance = Path(instance_path) if instance_path else config_module.default_instance_path()
    app = Flask(__name__, instance_path=str(instance.resolve()))
    config_module.init_app(app, config)
    logs.init_app(app)
    db.init_app(app)
    plugins.init_app(app, plugins_dirs, defaults=[(auth_types.PLUGIN_NAME, auth_types)])
    catalog.init_app(app)
    vault.init_app(app)
    outbound.init_app(app)
    identity.init_app(app)
    init_web(app)
    init_api(app)
    plugins.register_extensions(app)
    runs.init_app(app)
    flow_runs.init_app(app, timers=[schedules.fire_due, events.dispatch_pending,
                                    data_sources.sync_due, tokens.refresh_due])
    broker.init_app(app)
    return app
