"""The objects plugins hand to the host, besides plain functions and mappings.

``AuthType`` is what an ``auth_types`` hook returns; the host gives its
``connect`` and ``refresh`` an :class:`AuthFlow`. ``RenderStrategy`` is how a
``form_widgets`` hook contributes a whole-form rendering for an action's
``renderStrategy``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

__all__ = ["AuthFlow", "AuthType", "RenderStrategy"]


class AuthFlow(Protocol):
    """What the host lends an auth type while it connects or refreshes.

    ``auth`` is the manifest's ``auth`` block, ``values`` the submitted connect
    form (on connect) or the stored credentials (on refresh), ``settings`` the
    plugin's own ``PLUGIN_SETTINGS`` entry, and ``now`` the current Unix time.
    ``metadata`` starts empty; what ``connect`` puts there is shown as the
    account's details (never put a secret there).
    """

    auth: Mapping[str, Any]
    values: Mapping[str, Any]
    settings: Mapping[str, Any]
    now: float
    metadata: dict[str, Any]

    def run(self, member: str, values: Mapping[str, Any] | None = None, *,
            credentials: Mapping[str, Any] | None = None,
            keep: Literal["credentials", "metadata"] = "credentials") -> dict[str, Any]:
        """Send the request the manifest declares at ``auth.<member>`` through the
        host's guarded client (allowedHosts, egress policy, timeouts, redacted
        trace), with ``values`` available as ``{{…}}`` and ``credentials`` (by
        default ``values`` of the flow) as ``[[…]]``; return its object mapping.
        ``keep`` says what the run records of it: only the names (``credentials``)
        or the values (``metadata``, redacted of the credentials). A failed request
        raises ``host.errors.ConnectRefused`` with the provider's message; an auth
        type refuses a bad form value itself by raising
        ``host.errors.ValidationError([FieldError(field, message)])``."""
        ...


@dataclass(frozen=True, slots=True)
class AuthType:
    """A connect method a plugin adds, named by a manifest's ``auth.type``.

    ``schema`` is the JSON Schema of the rest of the ``auth`` block (the host
    checks it when a manifest loads, with JSON pointers in the errors);
    ``requests`` names members of the block that are requests in the manifest's
    request format, compiled by the host at load time and sent with
    :meth:`AuthFlow.run`. ``form(auth)`` returns the JSON Schema of the connect
    form (fields marked ``"writeOnly": true`` are secrets: never shown again).
    ``credentials(auth)`` names what the installation will hold, and ``values``
    the ``{{…}}`` names the auth type passes to :meth:`AuthFlow.run`, so the lint
    can check both kinds of placeholder in those requests. ``connect(flow)``
    returns the credentials to store (an ``expiresAt`` Unix time makes the host
    call ``refresh`` before it passes, and once when the provider answers 401);
    ``refresh(flow)`` returns fresh credentials or ``None`` when it cannot, which
    asks the user to reconnect.
    """

    name: str
    title: str
    form: Callable[[Mapping[str, Any]], Mapping[str, Any]]
    connect: Callable[[AuthFlow], Mapping[str, Any]]
    credentials: Callable[[Mapping[str, Any]], Iterable[str]]
    schema: Mapping[str, Any] = field(default_factory=dict)
    requests: tuple[str, ...] = ()
    values: tuple[str, ...] = ()
    refresh: Callable[[AuthFlow], Mapping[str, Any] | None] | None = None


@dataclass(frozen=True, slots=True)
class RenderStrategy:
    """A whole-form rendering for actions whose ``renderStrategy`` names it.

    ``render(form, values, errors)`` returns the HTML of the fields (the host
    wraps it in the form element with the CSRF token and the submit button):
    ``form`` is a :class:`host.forms.Form`, ``values`` the current values by
    field name, ``errors`` the messages by field name. Inputs must submit under
    the field names so values are coerced and validated like any form's. The
    function must escape what it inserts.
    """

    render: Callable[[Any, Mapping[str, Any], Mapping[str, str]], str]
    description: str = ""
