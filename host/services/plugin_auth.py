"""Connecting and refreshing with an auth type a plugin contributes.

The plugin decides what to send and what to keep; the host sends it. Every
request an auth type makes is one its manifest declares (``AuthType.requests``,
compiled at load time) and goes through :func:`host.services.runs.execute`, so
the egress policy, timeouts, retries, plugins' request hooks and the redacted
trace apply exactly as to any other request.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from flask import Flask
from sqlalchemy.orm import Session

from ..db import Installation
from ..engine import ChainResult
from ..engine.redact import Redactor, secret_values
from ..errors import BadInput, ConnectRefused, MinihostError, PluginFailed
from ..manifest import Manifest
from ..plugins import get_plugins, plugin_settings

__all__ = ["Flow", "connect", "refresh"]


class Flow:
    """The :class:`host.plugins.AuthFlow` the host lends an auth type."""

    def __init__(self, app: Flask, db: Session, installation: Installation, manifest: Manifest,
                 values: Mapping[str, Any], *, actor: str, actor_id: str | None, record: bool,
                 deadline: float | None = None) -> None:
        self.app, self.db, self.installation, self.manifest = app, db, installation, manifest
        self.auth = manifest.auth.raw
        self.values = dict(values)
        owners = app.extensions.get("minihost.auth_type_owners", {})
        self.settings = plugin_settings(app.config, owners.get(manifest.auth.type, ""))
        self.now = time.time()
        self.actor, self.actor_id, self.record, self.deadline = actor, actor_id, record, deadline
        self.failure: MinihostError | None = None

    def run(self, member: str, values: Mapping[str, Any]) -> dict[str, Any]:
        from .installations import context_for
        from .runs import execute

        request = self.manifest.auth.requests.get(member)
        if request is None:
            raise BadInput(f"{self.manifest.title}'s manifest declares no auth.{member} request")
        ctx = context_for(self.app, self.db, self.installation, self.manifest, actor=self.actor,
                          reason="connect", parameters=dict(values),
                          credentials=self.values, requests=[request])
        result, _ = execute(
            self.app, workspace_id=self.installation.workspace_id,
            installation_id=self.installation.id if self.record else None, kind="auth",
            name=member, requests=[request], ctx=ctx, allowed_hosts=self.manifest.allowed_hosts,
            miniapp=self.manifest.name, persist="credentials", follow_redirects=False,
            sandbox=self.installation.sandbox, actor_id=self.actor_id, record=self.record,
            deadline=self.deadline, extra_secrets=secret_values(values))
        if not result.ok:
            self.failure = result.error
            if isinstance(result.error, PluginFailed):
                raise result.error
            message = getattr(result.error, "provider_message", None)
            detail = result.error.detail if result.error else "the request failed"
            raise ConnectRefused(f"{self.manifest.title} did not accept the credentials: "
                                 f"{message or detail}", message)
        return dict(result.values)


def _call(flow: Flow, step: str) -> Any:
    """The auth type's ``connect`` or ``refresh``; a plugin bug becomes PluginFailed."""
    plugin = flow.manifest.auth.plugin
    owner = flow.app.extensions.get("minihost.auth_type_owners", {}).get(plugin.name, "?")
    try:
        return getattr(plugin, step)(flow)
    except MinihostError:
        raise
    except Exception as error:
        message = get_plugins(flow.app).report(owner, "auth_types", error,
                                               Redactor(secret_values(flow.values)).text)
        raise PluginFailed(f"auth type {plugin.name} (plugin {owner}) failed to {step} "
                           f"({message}); nothing was stored") from None


def _storable(flow: Flow, credentials: Any, step: str) -> dict[str, Any]:
    """What an auth type returned, if the vault can keep it: a mapping of names to
    JSON values. Anything else is the plugin's bug, reported, and nothing is stored."""
    plugin = flow.manifest.auth.plugin
    problem = None
    if not isinstance(credentials, Mapping) or not all(isinstance(k, str) for k in credentials):
        problem = f"{step} returned {type(credentials).__name__}, not a mapping of names to values"
    else:
        try:
            json.dumps(dict(credentials))
        except (TypeError, ValueError) as error:
            problem = f"{step} returned values that cannot be stored ({error})"
    if problem is None:
        return dict(credentials)
    owner = flow.app.extensions.get("minihost.auth_type_owners", {}).get(plugin.name, "?")
    get_plugins(flow.app).report(owner, "auth_types", TypeError(problem))
    raise PluginFailed(f"auth type {plugin.name} (plugin {owner}): {problem}; nothing was "
                       "stored")


def connect(app: Flask, db: Session, installation: Installation, manifest: Manifest,
            values: Mapping[str, Any], *, actor: str, actor_id: str | None,
            record: bool) -> dict[str, Any]:
    """The credentials to store for these connect-form ``values``."""
    flow = Flow(app, db, installation, manifest, values, actor=actor, actor_id=actor_id,
                record=record)
    return _storable(flow, _call(flow, "connect"), "connect")


def refresh(app: Flask, installation: Installation, manifest: Manifest,
            current: Mapping[str, Any], *, actor: str, deadline: float) -> ChainResult | None:
    """Fresh credentials as a chain result (the refresher's currency), or ``None``
    when the auth type cannot refresh and the user must connect again."""
    from ..db import get_database

    with get_database(app).sessions() as db:
        flow = Flow(app, db, installation, manifest, current, actor=actor, actor_id=None,
                    record=True, deadline=deadline)
        try:
            fresh = _call(flow, "refresh")
        except MinihostError as error:
            return ChainResult(ok=False, error=flow.failure or error)
    if fresh is None:
        return None
    try:
        return ChainResult(ok=True, values=_storable(flow, fresh, "refresh"))
    except PluginFailed as error:
        return ChainResult(ok=False, error=error)
