"""Connecting and refreshing through an installation's auth type.

Every auth type — the built-in ``none``, ``apiKey``, ``basic`` and ``oauth2``
(``host.auth.types``) and those plugins add — implements the same
:class:`host.plugins.AuthType` contract. The host lends it a :class:`Flow`; the
auth type decides what to send and what to keep, and the host sends it: every
request it makes is one its manifest declares, run through
:func:`host.execution.run_step`, so the egress policy, timeouts, retries,
plugins' request hooks and the redacted trace apply exactly as to any other.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from flask import Flask

from ..db import Installation
from ..engine import ChainResult
from ..engine.chain import Persist
from ..engine.redact import Redactor, secret_values
from ..errors import BadInput, ConnectRefused, MinihostError, PluginFailed
from ..execution import Step, run_step
from ..manifest import Manifest
from ..plugins import AuthType, get_plugins, plugin_settings

__all__ = ["Flow", "auth_type_of", "connect", "refresh"]


def auth_type_of(app: Flask, manifest: Manifest) -> tuple[AuthType, str]:
    """The auth type a manifest names, and the plugin that provides it."""
    found = app.extensions.get("minihost.auth_types", {}).get(manifest.auth.type)
    if found is None:
        raise BadInput(f"{manifest.title} connects with {manifest.auth.type}, which no plugin "
                       "of this host provides any more; ask the operator")
    owners = app.extensions.get("minihost.auth_type_owners", {})
    return found, owners.get(manifest.auth.type, "?")


class Flow:
    """The :class:`host.plugins.AuthFlow` the host lends an auth type."""

    def __init__(self, app: Flask, installation: Installation, manifest: Manifest,
                 values: Mapping[str, Any], *, actor: str, actor_id: str | None, record: bool,
                 reason: str, deadline: float | None = None) -> None:
        self.app, self.installation, self.manifest = app, installation, manifest
        self.auth_type, self.owner = auth_type_of(app, manifest)
        self.auth = manifest.auth.raw
        self.values = dict(values)
        self.settings = plugin_settings(app.config, self.owner)
        self.now = time.time()
        self.metadata: dict[str, Any] = {}
        self.actor, self.actor_id, self.record = actor, actor_id, record
        self.reason, self.deadline = reason, deadline
        self.failure: MinihostError | None = None

    def run(self, member: str, values: Mapping[str, Any] | None = None, *,
            credentials: Mapping[str, Any] | None = None,
            keep: Persist = "credentials") -> dict[str, Any]:
        request = self.manifest.auth.requests.get(member)
        if request is None:
            raise BadInput(f"{self.manifest.title}'s manifest declares no auth.{member} request")
        values = dict(values or {})
        result, _ = run_step(self.app, Step(
            installation=self.installation, manifest=self.manifest, requests=(request,),
            kind="auth", name=member, actor=self.actor, actor_id=self.actor_id,
            parameters=values, persist=keep, follow_redirects=False, record=self.record,
            credentials=dict(credentials if credentials is not None else self.values),
            reason=self.reason, secrets=secret_values(values), deadline=self.deadline))
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
    try:
        return getattr(flow.auth_type, step)(flow)
    except MinihostError:
        raise
    except Exception as error:
        name, owner = flow.auth_type.name, flow.owner
        message = get_plugins(flow.app).report(owner, "auth_types", error,
                                               Redactor(secret_values(flow.values)).text)
        raise PluginFailed(f"auth type {name} (plugin {owner}) failed to {step} "
                           f"({message}); nothing was stored") from None


def _storable(flow: Flow, credentials: Any, step: str) -> dict[str, Any]:
    """What an auth type returned, if the vault can keep it: a mapping of names to
    JSON values. Anything else is the plugin's bug, reported, and nothing is stored."""
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
    name, owner = flow.auth_type.name, flow.owner
    get_plugins(flow.app).report(owner, "auth_types", TypeError(problem))
    raise PluginFailed(f"auth type {name} (plugin {owner}): {problem}; nothing was stored")


def connect(app: Flask, installation: Installation, manifest: Manifest,
            values: Mapping[str, Any], *, actor: str, actor_id: str | None,
            record: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """The credentials to store for these connect-form ``values``, once the provider
    accepted them, and the account's metadata the auth type found."""
    flow = Flow(app, installation, manifest, values, actor=actor, actor_id=actor_id,
                record=record, reason="connect")
    credentials = _storable(flow, _call(flow, "connect"), "connect")
    return credentials, {k: v for k, v in flow.metadata.items() if v is not None}


def refresh(app: Flask, installation: Installation, manifest: Manifest,
            current: Mapping[str, Any], *, actor: str, deadline: float) -> ChainResult | None:
    """Fresh credentials as a chain result (the refresher's currency), or ``None``
    when the auth type cannot refresh and the user must connect again."""
    flow = Flow(app, installation, manifest, current, actor=actor, actor_id=None, record=True,
                reason="refresh", deadline=deadline)
    if flow.auth_type.refresh is None:
        return None
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
