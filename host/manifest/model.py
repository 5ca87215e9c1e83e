"""Compiled, immutable manifests: what the rest of the host works with.

Built once by :func:`host.manifest.compile_manifest` after validation, so a run
never parses a URL template, a ``$``-path or a JSON Schema again. JSON Schemas
(``parameters``, ``fields``, ``responseSchema``) are private deep copies of the
manifest's; treat them as read-only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ..engine.mapping import ArrayMapping, Expect, ObjectMapping
from ..engine.pagination import Pagination
from ..engine.paths import JsonPath
from ..engine.signatures import WebhookVerify
from ..engine.template import Template, UrlTemplate
from .form import Form

__all__ = [
    "Action",
    "ArrayMapping",
    "Auth",
    "Authorize",
    "Challenge",
    "DataSource",
    "EventMapping",
    "Expect",
    "Manifest",
    "ObjectMapping",
    "Request",
    "Source",
    "WebhookVerify",
    "Webhooks",
]

EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request of a chain, with its templates compiled.

    ``pointer`` locates it in the manifest (``/actions/0/requests/1``) so run
    errors can name the request the author wrote.
    """

    pointer: str
    method: str
    url: UrlTemplate
    headers: tuple[tuple[str, Template | str], ...]
    query: tuple[tuple[str, Any], ...]
    body_type: str | None
    body: Any
    has_body: bool
    mapping: ObjectMapping | ArrayMapping | None
    timeout: float | None
    expect: Expect | None
    response_schema: Any
    sandbox_body: bytes | None = None  # the sandbox answer, built once at load
    secret_roots: frozenset[str] = frozenset()  # the [[…]] names this request uses
    pagination: Pagination | None = None  # followed on a chain's last request


@dataclass(frozen=True, slots=True)
class Action:
    name: str
    title: str
    description: str
    render_strategy: str
    parameters: Mapping[str, Any]
    requests: tuple[Request, ...]
    output: Mapping[str, Any] | None
    form: Form
    idempotent: bool = False
    idempotency_header: str | None = None

    @property
    def repeatable(self) -> bool:
        """Whether an attempt that may have reached the provider can be repeated: every
        request a ``GET``, or the action says so, or it sends an idempotency key."""
        return (self.idempotent or self.idempotency_header is not None
                or all(r.method == "GET" for r in self.requests))


@dataclass(frozen=True, slots=True)
class Source:
    """An RPC dropdown source: a chain, then options picked from its last answer."""

    name: str
    description: str
    requests: tuple[Request, ...]
    items: JsonPath
    value: JsonPath
    label: JsonPath
    depends_on: tuple[str, ...]
    cache_seconds: int


@dataclass(frozen=True, slots=True)
class RateLimit:
    """``rateLimit``: at most ``requests`` in any ``per_seconds``, counted per
    installation or for the whole mini-app (``scope``)."""

    requests: int
    per_seconds: float
    scope: str = "installation"

    @property
    def interval(self) -> float:
        """Seconds between requests at the steady rate."""
        return self.per_seconds / self.requests


@dataclass(frozen=True, slots=True)
class DataSource:
    """A collection kept in sync (FLOWS.md §6): its list request (pages followed), the
    records on each page, and each record's id and change time."""

    name: str
    title: str
    description: str
    list: Request
    items: JsonPath
    id: JsonPath
    updated_at: JsonPath | None
    schema: Mapping[str, Any] | None
    poll_seconds: int = 300


@dataclass(frozen=True, slots=True)
class Authorize:
    """The authorize redirect, compiled as a GET request whose URL the browser visits."""

    request: Request
    pkce: bool

    @property
    def url(self) -> UrlTemplate:
        return self.request.url


@dataclass(frozen=True, slots=True)
class Auth:
    type: str
    fields: Mapping[str, Any] | None = None
    config: Mapping[str, Any] = field(default_factory=lambda: EMPTY)
    test: Request | None = None
    authorize: Authorize | None = None
    issuer: str | None = None
    get_token: Request | None = None
    refresh_token: Request | None = None
    user_details: Request | None = None
    registration: tuple[Request, ...] = ()
    unregistration: tuple[Request, ...] = ()
    refresh_on: Expect | None = None
    form: Form | None = None
    raw: Mapping[str, Any] = field(default_factory=lambda: EMPTY)
    # A plugin's auth type (``host.plugins.AuthType``; None for the built-in ones).
    plugin: Any = None
    # The block's requests an auth type sends by name (``AuthFlow.run``), compiled.
    requests: Mapping[str, Request] = field(default_factory=lambda: EMPTY)
    # Whether the auth type can renew the credentials: a ``refresh_token`` request,
    # or a plugin's auth type with a ``refresh``.
    can_refresh: bool = False


@dataclass(frozen=True, slots=True)
class Challenge:
    """A URL-verification handshake: when every path has its value, answer it."""

    when: tuple[tuple[JsonPath, Any], ...]
    respond: JsonPath | None = None
    body: Any = None
    signed: bool = True
    capture: JsonPath | None = None  # its value becomes the installation's webhook secret


@dataclass(frozen=True, slots=True)
class EventMapping:
    """A webhook event type that updates a data source's record."""

    data_source: str
    record: JsonPath | None
    delete: bool


@dataclass(frozen=True, slots=True)
class Webhooks:
    verify: WebhookVerify | None
    delivery_id: JsonPath | None
    event_type: tuple[JsonPath, ...]  # joined with "." (missing parts left out)
    challenge: Challenge | None
    raw: Mapping[str, Any] = field(default_factory=lambda: EMPTY)
    data: JsonPath | None = None  # the part of the body triggers see as event.data
    events: Mapping[str, EventMapping] = field(default_factory=lambda: EMPTY)


@dataclass(frozen=True, slots=True)
class Manifest:
    """A valid mini-app, ready to run. ``raw`` is the document as the author wrote it."""

    name: str
    version: str
    title: str
    description: str
    icon: str | None
    categories: tuple[str, ...]
    publisher: Mapping[str, Any] | None
    allowed_hosts: tuple[str, ...]
    auth: Auth
    sources: Mapping[str, Source]
    actions: tuple[Action, ...]
    webhooks: Webhooks | None
    raw: Mapping[str, Any]
    digest: str
    location: str
    actions_by_name: Mapping[str, Action] = field(default_factory=lambda: EMPTY)
    uses_client: bool = False
    uses_client_secret: bool = False
    data_sources: Mapping[str, DataSource] = field(default_factory=lambda: EMPTY)
    rate_limit: RateLimit | None = None

    @property
    def auth_type(self) -> str:
        """``auth.type``, named as the catalog's listing entries name it."""
        return self.auth.type

    def action(self, name: str) -> Action | None:
        return self.actions_by_name.get(name)
