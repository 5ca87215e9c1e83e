"""The built-in auth types, registered as the host's own plugin.

``none``, ``apiKey``, ``basic`` and ``oauth2`` implement the same
:class:`host.plugins.AuthType` contract plugins implement, and reach the host
through the same ``auth_types`` hook, so connecting and refreshing never branch
on where an auth type comes from. The plugin manager registers this module
before any other plugin: names are claimed in registration order, so no plugin
can replace a built-in type.

Their manifest blocks are checked by the manifest's own JSON Schema and lint
(``schema`` is empty here), and their connect forms are compiled by
``host.manifest`` with the rest of the manifest.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import BadInput, ReconnectRequired
from ..manifest.loader import connect_schema
from ..plugins import AuthFlow, AuthType, hookimpl

__all__ = ["API_KEY", "BASIC", "BUILTIN", "NONE", "OAUTH2", "auth_types"]

PLUGIN_NAME = "minihost.auth"


def _fields(auth: Mapping[str, Any]) -> Iterable[str]:
    properties = auth.get("fields", {}).get("properties", {})
    return tuple(properties) if isinstance(properties, Mapping) else ()


def _form(auth: Mapping[str, Any]) -> Mapping[str, Any]:
    return connect_schema(dict(auth)) or {}


def _test(flow: AuthFlow, credentials: dict[str, Any]) -> dict[str, Any]:
    """Run ``auth.test`` (when declared) with the submitted credentials: the provider
    accepting it is what makes them worth storing. Its mapping is the account's
    metadata."""
    if "test" in flow.auth:
        found = flow.run("test", {}, credentials=credentials, keep="metadata")
        flow.metadata.update(found)
    return credentials


def _connect_none(flow: AuthFlow) -> Mapping[str, Any]:
    return {}


def _connect_api_key(flow: AuthFlow) -> Mapping[str, Any]:
    return _test(flow, dict(flow.values))


def _connect_basic(flow: AuthFlow) -> Mapping[str, Any]:
    values = dict(flow.values)
    pair = f"{values['username']}:{values['password']}".encode()
    values["basicAuth"] = "Basic " + base64.b64encode(pair).decode()
    return _test(flow, values)


def _connect_oauth2(flow: AuthFlow) -> Mapping[str, Any]:
    raise BadInput("this mini-app connects through its provider's sign-in page, not with "
                   "credentials; start the connect from Minihost")


def _refresh_oauth2(flow: AuthFlow) -> Mapping[str, Any] | None:
    """The manifest's ``refresh_token`` request; an answer without an access token
    leaves the stored tokens in doubt, so the user must connect again."""
    if "refresh_token" not in flow.auth:
        return None
    fresh = flow.run("refresh_token", {})
    if not fresh.get("accessToken"):
        raise ReconnectRequired("the refresh answer held no access token, so the stored "
                                "tokens may no longer be valid")
    return fresh


NONE = AuthType(name="none", title="No account", form=_form, connect=_connect_none,
                credentials=lambda auth: ())
API_KEY = AuthType(name="apiKey", title="API key", form=_form, connect=_connect_api_key,
                   credentials=_fields, requests=("test",))
BASIC = AuthType(name="basic", title="Username and password", form=_form,
                 connect=_connect_basic,
                 credentials=lambda auth: ("username", "password", "basicAuth", *_fields(auth)),
                 requests=("test",))
OAUTH2 = AuthType(name="oauth2", title="OAuth 2.0", form=_form, connect=_connect_oauth2,
                  credentials=lambda auth: ("accessToken", "refreshToken", "expiresAt"),
                  requests=("get_token", "refresh_token", "userDetails"),
                  refresh=_refresh_oauth2)
BUILTIN = (NONE, API_KEY, BASIC, OAUTH2)


@hookimpl
def auth_types(config: Mapping[str, Any]) -> list[AuthType]:
    return list(BUILTIN)
