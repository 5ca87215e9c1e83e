"""The plugin contract: every hook Minihost calls, grouped by what it extends.

Each hook is documented in the style of pytest's hookspecs: when it is called,
its parameters, what it returns, and whether it is ``firstresult``. Hooks are
collect-all unless marked otherwise. ``docs/plugins.md`` repeats each signature
and ``tests/plugins/test_docs.py`` fails when the two disagree.

Plugins implement hooks with :data:`host.plugins.hookimpl`::

    from host.plugins import hookimpl

    @hookimpl
    def miniapp_manifests(config):
        return [{"name": "hello", ...}]
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from os import PathLike
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click
    from flask import Blueprint, Flask

hookspec = pluggy.HookspecMarker("minihost")

# --------------------------------------------------------------------------------------
# Catalog
# --------------------------------------------------------------------------------------


@hookspec
def miniapp_manifests(config: Mapping[str, Any]) -> Iterable[dict[str, Any] | str | PathLike[str]]:
    """Contribute mini-apps to the catalog.

    Called on every catalog sync (``minihost init``, ``minihost catalog sync``),
    after the folders of ``MINIAPPS_DIRS`` were scanned.

    :param config: the host's configuration (read-only).
    :return: manifests, each either a document (a ``dict``, as a parsed
        ``manifest.json``) or a path to a mini-app folder or manifest file.
        Each is validated like any other manifest; an invalid one is listed
        among the catalog errors with this plugin's name and never enters the
        catalog. A name and version already contributed by a folder keeps the
        folder's manifest.
    """


# --------------------------------------------------------------------------------------
# Forms
# --------------------------------------------------------------------------------------


@hookspec
def form_widgets() -> Mapping[str, Callable[[Any, str, Any], str]] | None:
    """Contribute form widgets, chosen by a field's ``x-widget``.

    Called once while the application is created.

    :return: a mapping from widget name to a function ``render(field, name, value)``
        returning the HTML of the input: ``field`` is a :class:`host.forms.Field`,
        ``name`` the form name to submit under (``id`` must be ``"f-" + name``
        with dots replaced by ``-`` so the label points at it), ``value`` the
        current value or ``None``. The function must escape what it inserts. The
        submitted text is coerced to the field's JSON Schema type like any
        other. A name the host already renders (``text``, ``textarea``,
        ``select``, ``number``, ``toggle``, ``multi``, ``group``, ``source``,
        ``password``) cannot be replaced; a widget no plugin provides renders as
        a text input.
    """


# --------------------------------------------------------------------------------------
# Web
# --------------------------------------------------------------------------------------


@hookspec
def register_blueprints(app: Flask) -> Iterable[Blueprint] | None:
    """Add pages or endpoints to the host.

    Called once while the application is created, after the host's own
    blueprints are registered, so a plugin cannot shadow a host route by
    accident (a clash fails start-up with Flask's error naming the endpoint).

    :param app: the Flask application being created.
    :return: blueprints to register (or ``None`` when the plugin registered
        them itself).
    """


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add subcommands to ``minihost``.

    Called once while the application is created, with the application's own
    command group; the commands appear in ``minihost --help`` beside the host's.

    :param cli: the group to add commands to (``@cli.command()``).
    """


# --------------------------------------------------------------------------------------
# Lifecycle
# --------------------------------------------------------------------------------------


@hookspec
def installation_changed(installation: Mapping[str, Any], change: str) -> None:
    """React to an installation's life: provision something, notify someone.

    Called after the change is committed. A plugin that raises here is logged
    and never undoes the change.

    :param installation: the installation as ``GET /api/v1/installations/{id}``
        shows it (never a credential value).
    :param change: ``installed``, ``connected`` (an OAuth connect finished),
        ``reconnected`` (new credentials for an existing installation) or
        ``uninstalled``.
    """


@hookspec
def run_finished(run: Mapping[str, Any]) -> None:
    """Observe every finished action run, for example to count or forward results.

    Called after the run is recorded, whether it succeeded or failed. A plugin
    that raises here is logged and never changes the run.

    :param run: the run as ``GET /api/v1/runs/{id}`` shows it, with its redacted
        ``trace``.
    """


@hookspec
def audit_event(event: Mapping[str, Any]) -> None:
    """Observe every audit event, for example to ship it to a log store.

    Called after the event is added to the database transaction (it is written
    when that transaction commits). A plugin that raises here is logged and
    never stops the audited action.

    :param event: ``id``, ``at`` (ISO 8601), ``actor``, ``workspace``,
        ``installation``, ``kind`` and ``detail`` — the same shape as
        ``GET /api/v1/audit``. It never holds a secret.
    """
