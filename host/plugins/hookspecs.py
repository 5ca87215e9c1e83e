"""The plugin contract: every hook Minihost calls, grouped by what it extends.

Each hook is documented in the style of pytest's hookspecs: when it is called,
its parameters, what it returns, and whether it is ``firstresult``. Hooks are
collect-all unless marked otherwise; a ``firstresult`` hook stops at the first
answer that is not ``None``. ``docs/plugins.md`` repeats each signature and
``tests/plugins/test_docs.py`` fails when the two disagree.

Implementations are plain ``@hookimpl`` functions, ordered with ``tryfirst`` or
``trylast`` if need be; hook wrappers are refused (see :mod:`host.plugins`).

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

    from ..engine import Outgoing, Response
    from ..manifest import Request
    from .contract import AuthType, RenderStrategy

hookspec = pluggy.HookspecMarker("minihost")

# --------------------------------------------------------------------------------------
# Catalog
# --------------------------------------------------------------------------------------


@hookspec
def miniapp_manifests(
    config: Mapping[str, Any],
) -> Iterable[dict[str, Any] | str | PathLike[str]] | None:
    """Contribute mini-apps to the catalog.

    Called on every catalog sync (``minihost init``, ``minihost catalog sync``),
    after the folders of ``MINIAPPS_DIRS`` were scanned.

    :param config: the host's configuration (read-only).
    :return: manifests, each either a document (a ``dict``, as a parsed
        ``manifest.json``) or a path to a mini-app folder or manifest file.
        Each is validated like any other manifest; an invalid one is listed
        among the catalog errors with this plugin's name and never enters the
        catalog. A name that one of the host's folders provides cannot be
        offered by a plugin, in any version.
    """


# --------------------------------------------------------------------------------------
# Auth
# --------------------------------------------------------------------------------------


@hookspec
def auth_types(config: Mapping[str, Any]) -> Iterable[AuthType] | None:
    """Add connect methods that manifests name in ``auth.type``.

    Called once while the application is created.

    :param config: the host's configuration (read-only).
    :return: :class:`host.plugins.AuthType` objects. A name the host already has
        (``none``, ``apiKey``, ``basic``, ``oauth2``) or that an earlier plugin
        took is refused and reported. Manifests using the type are checked
        against its ``schema`` when they load; installing one shows the type's
        connect form and stores what its ``connect`` returns.
    """


@hookspec
def system_values(
    config: Mapping[str, Any],
) -> Mapping[str, Callable[[Mapping[str, Any]], Any]] | None:
    """Add ``{{…}}`` values the host fills in, beside ``webhookUrl`` and ``hostUrl``.

    Called once while the application is created; the names are known to the
    manifest lint from then on, so manifests may use them.

    :param config: the host's configuration (read-only).
    :return: a mapping from value name to a function ``value(installation)``,
        called each time a request of that installation is prepared, with the
        installation as ``GET /api/v1/installations/{id}`` shows it. Names of
        the host's own values cannot be replaced. A function that raises leaves
        its value out (a request that needs it fails naming the placeholder)
        and is reported.
    """


# --------------------------------------------------------------------------------------
# Requests and responses
# --------------------------------------------------------------------------------------


@hookspec
def prepare_request(request: Outgoing, miniapp: str, installation_id: str | None,
                    config: Mapping[str, Any]) -> None:
    """Change a request just before it is sent: sign it, add a header, log it.

    Called for every outbound request of every kind (actions, sources, connect
    and refresh steps, registration), after its placeholders are filled and
    before the egress policy checks its destination — a plugin cannot send a
    request anywhere the mini-app's ``allowedHosts`` do not allow. Also called
    in sandbox mode, so the trace shows what would have been sent.

    :param request: a :class:`host.engine.Outgoing`; change ``headers`` (a list
        of ``(name, value)`` pairs), ``url`` or ``body`` (bytes) in place.
        Add a header's lower-cased name to ``secret_headers`` to have its value
        redacted in the trace.
    :param miniapp: the mini-app's name.
    :param installation_id: the installation's id, or ``None`` for a request
        made before one exists.
    :param config: the host's configuration (read-only).

    A plugin that raises here fails the run with its name and message; the
    request is not sent.
    """


@hookspec
def response_received(request: Outgoing, response: Response, miniapp: str,
                      installation_id: str | None, config: Mapping[str, Any]) -> None:
    """Observe or transform a provider's answer before it is checked and mapped.

    Called once per answered request (after redirects and retries), before the
    host records it in the trace, checks ``expect`` and maps values.

    :param request: the :class:`host.engine.Outgoing` that was sent.
    :param response: a :class:`host.engine.Response`; ``status``, ``headers``
        and ``body`` (bytes) may be replaced in place.
    :param miniapp: the mini-app's name.
    :param installation_id: the installation's id, or ``None``.
    :param config: the host's configuration (read-only).

    A plugin that raises here fails the run with its name and message.
    """


@hookspec(firstresult=True)
def sandbox_response(request: Outgoing, spec: Request,
                     config: Mapping[str, Any]) -> Response | None:
    """Answer a request in sandbox mode instead of the generated answer.

    Called for each request a sandbox run would send, after the egress policy
    accepted its destination. ``firstresult``: the first plugin to return a
    response wins; when none does, the host answers from the request's
    ``responseSchema`` (its examples, defaults and types).

    :param request: the :class:`host.engine.Outgoing` that would have been sent.
    :param spec: the compiled manifest request (``pointer``, ``response_schema``,
        ``expect``).
    :param config: the host's configuration (read-only).
    :return: a :class:`host.engine.Response` (``status``, ``headers``, ``body``
        bytes, ``elapsed`` seconds), or ``None`` to leave it to others. A plugin
        that raises is reported and the generated answer is used.
    """


# --------------------------------------------------------------------------------------
# Forms
# --------------------------------------------------------------------------------------


@hookspec
def form_widgets() -> Mapping[str, Callable[[Any, str, Any], str] | RenderStrategy] | None:
    """Contribute form widgets (a field's ``x-widget``) and whole-form renderings
    (an action's ``renderStrategy``).

    Called once while the application is created.

    :return: a mapping from name to either a widget function
        ``render(field, name, value)`` returning the HTML of one input, or a
        :class:`host.plugins.RenderStrategy` that renders all of an action's
        fields. A widget gets ``field`` (a :class:`host.forms.Field`), ``name``
        the form name to submit under (``id`` must be ``"f-" + name`` with dots
        replaced by ``-`` so the label points at it) and ``value``, the current
        value or ``None``. Either must escape what it inserts; submitted text is
        coerced to the field's JSON Schema type like any other. A name the host
        already renders (``auto``, ``text``, ``textarea``, ``select``,
        ``number``, ``toggle``, ``multi``, ``group``, ``source``, ``password``)
        cannot be replaced; a widget no plugin provides renders as a text input,
        and a ``renderStrategy`` no plugin provides renders as ``auto``.
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
def installation_changed(installation: Mapping[str, Any], change: str,
                         config: Mapping[str, Any]) -> None:
    """React to an installation's life: provision something, notify someone.

    Called after the change is committed. A plugin that raises here is logged
    and never undoes the change.

    :param installation: the installation as ``GET /api/v1/installations/{id}``
        shows it (never a credential value).
    :param change: ``installed``, ``connected`` (an OAuth connect finished),
        ``reconnected`` (new credentials for an existing installation) or
        ``uninstalled``.
    :param config: the host's configuration (read-only).
    """


@hookspec
def run_finished(run: Mapping[str, Any], config: Mapping[str, Any]) -> None:
    """Observe every finished action run, for example to count or forward results.

    Called after the run is recorded, whether it succeeded or failed. A plugin
    that raises here is logged and never changes the run.

    :param run: the run as ``GET /api/v1/runs/{id}`` shows it, with its redacted
        ``trace``.
    :param config: the host's configuration (read-only).
    """


@hookspec
def audit_event(event: Mapping[str, Any], config: Mapping[str, Any]) -> None:
    """Observe every audit event, for example to ship it to a log store.

    Called once the event is committed to the database, in the order events
    were recorded; an event whose transaction rolls back is never offered. A
    plugin that raises here is reported and never stops the audited action.

    :param event: ``id``, ``at`` (ISO 8601), ``actor``, ``workspace``,
        ``installation``, ``kind`` and ``detail`` — the same shape as
        ``GET /api/v1/audit``. It never holds a secret.
    :param config: the host's configuration (read-only).
    """
