"""Turning a compiled request and a context into the exact bytes to send (MANIFEST §2.2).

Substitution is one pass over pre-split templates: a value is inserted once and
never scanned again, so text a user types (``[[accessToken]]``) arrives
literally. ``{{key}}`` looks in the parameters, then values mapped earlier in
the chain, then ``auth.config``, then system values; ``[[key]]`` in the
credentials, then metadata, then the operator's client. ``None`` counts as
missing, like an absent key.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, quote_plus, urlencode

from ..errors import RenderFailed
from .paths import MISSING
from .template import CompiledArray, CompiledObject, Placeholder, Template, UrlTemplate

__all__ = ["Context", "Outgoing", "operator_client", "render_request", "stringify"]

_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(slots=True)
class Context:
    """Everything placeholders may resolve to during one chain.

    ``forwarded`` grows as the chain runs (the latest mapping wins).
    """

    parameters: Mapping[str, Any] = field(default_factory=dict)
    credentials: Mapping[str, Any] = field(default_factory=dict)
    metadata: Mapping[str, Any] = field(default_factory=dict)
    client: Mapping[str, Any] = field(default_factory=dict)
    config: Mapping[str, Any] = field(default_factory=dict)
    system: Mapping[str, Any] = field(default_factory=dict)
    forwarded: dict[str, Any] = field(default_factory=dict)

    def lookup(self, placeholder: Placeholder) -> Any:
        if placeholder.namespace == "secret":
            spaces: tuple[Mapping[str, Any], ...] = (self.credentials, self.metadata, self.client)
        else:
            spaces = (self.parameters, self.forwarded, self.config, self.system)
        root = placeholder.path[0]
        for space in spaces:
            if root in space:
                value = space[root]
                for step in placeholder.path[1:]:
                    value = _step(value, step)
                    if value is MISSING:
                        return MISSING
                return MISSING if value is None else value
        return MISSING


def operator_client(client_id: str | None, client_secret: str | None) -> dict[str, str]:
    """The ``[[clientId]]``, ``[[clientSecret]]`` and ``[[clientBasicAuth]]`` values.

    ``clientBasicAuth`` is ``Basic base64(clientId:clientSecret)``, for token
    endpoints that want the client authenticated with HTTP Basic (RFC 6749 §2.3.1,
    which form-encodes both parts first).
    """
    values: dict[str, str] = {}
    if client_id:
        values["clientId"] = client_id
    if client_secret:
        values["clientSecret"] = client_secret
    if client_id and client_secret:
        pair = f"{quote_plus(client_id)}:{quote_plus(client_secret)}".encode()
        values["clientBasicAuth"] = "Basic " + base64.b64encode(pair).decode()
    return values


def _step(value: Any, key: str) -> Any:
    if isinstance(value, Mapping):
        return value.get(key, MISSING)
    if isinstance(value, list) and key.lstrip("-").isdigit():
        index = int(key)
        return value[index] if -len(value) <= index < len(value) else MISSING
    return MISSING


def stringify(value: Any) -> str:
    """Placeholder text inside a longer string: strings as-is, others as compact JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


@dataclass(slots=True)
class Outgoing:
    """A request ready to send, plus what redaction and redirects must know.

    ``secret_headers`` are header names whose value came from a ``[[…]]``
    template; ``carries_secrets`` is true when any part did.
    """

    pointer: str
    method: str
    url: str
    headers: list[tuple[str, str]]
    body: bytes | None
    body_trace: Any
    carries_secrets: bool
    secret_headers: frozenset[str]
    timeout: float | None


class _Renderer:
    __slots__ = ("ctx", "pointer", "secret_used")

    def __init__(self, ctx: Context, pointer: str) -> None:
        self.ctx = ctx
        self.pointer = pointer
        self.secret_used = False

    def value(self, placeholder: Placeholder) -> Any:
        value = self.ctx.lookup(placeholder)
        if value is not MISSING and placeholder.namespace == "secret":
            self.secret_used = True
        return value

    def missing(self, placeholder: Placeholder, where: str) -> RenderFailed:
        return RenderFailed(
            f"request {self.pointer}: placeholder {placeholder} in {where} has no value; "
            "fill it in, or make the manifest use it as a whole value so it can be left out",
            self.pointer,
        )

    def text(self, template: Template | str, where: str) -> Any:
        """A string template → string, or MISSING when it is a missing whole value."""
        if isinstance(template, str):
            return template
        whole = template.whole
        if whole is not None:
            value = self.value(whole)
            return value if value is MISSING else stringify(value)
        out = []
        for part in template.parts:
            if isinstance(part, str):
                out.append(part)
            else:
                value = self.value(part)
                if value is MISSING:
                    raise self.missing(part, where)
                out.append(stringify(value))
        return "".join(out)

    def json_value(self, compiled: Any, where: str) -> Any:
        """A compiled JSON value; whole-value placeholders keep their type."""
        if isinstance(compiled, Template):
            whole = compiled.whole
            if whole is not None:
                return self.value(whole)
            return self.text(compiled, where)
        if isinstance(compiled, CompiledObject):
            result = {}
            for key, item in compiled.items:
                value = self.json_value(item, f"{where}.{key}")
                if value is not MISSING:
                    result[key] = value
            return result
        if isinstance(compiled, CompiledArray):
            items = (self.json_value(item, where) for item in compiled.items)
            return [item for item in items if item is not MISSING]
        return compiled

    def url(self, template: UrlTemplate) -> str:
        out = []
        for part in template.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            zone, placeholder = part
            value = self.value(placeholder)
            if value is MISSING:
                raise self.missing(placeholder, "the URL")
            text = stringify(value)
            if zone == "host":
                text = text.lower()
                if not _LABEL.match(text):
                    raise RenderFailed(
                        f"request {self.pointer}: placeholder {placeholder} in the URL host must "
                        f"be one DNS label (letters, digits, '-'), got {text!r}",
                        self.pointer,
                    )
            elif zone == "scheme":
                raise RenderFailed(f"request {self.pointer}: the URL scheme must be literal",
                                   self.pointer)
            else:
                text = quote(text, safe="")
            out.append(text)
        return "".join(out)


def render_text(template: Template | str, ctx: Context, where: str) -> Any:
    """One string template (a webhook secret, say): the string, or MISSING when it is a
    whole placeholder with no value; :class:`RenderFailed` for a gap inside text."""
    return _Renderer(ctx, where).text(template, where)


def _form_pairs(body: Any) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for key, value in (body or {}).items():
        if isinstance(value, list):
            pairs.extend((key, stringify(item)) for item in value)
        else:
            pairs.append((key, stringify(value)))
    return pairs


def _multipart(pairs: list[tuple[str, str]]) -> tuple[bytes, str]:
    encoded = [(k.encode(), v.encode()) for k, v in pairs]
    while True:
        boundary = secrets.token_hex(16)
        if not any(boundary.encode() in v or boundary.encode() in k for k, v in encoded):
            break
    lines = []
    for key, value in encoded:
        name = key.replace(b"\\", b"\\\\").replace(b'"', b'\\"').replace(b"\r", b"").replace(
            b"\n", b"")
        lines.append(b"--" + boundary.encode() + b"\r\n"
                     + b'Content-Disposition: form-data; name="' + name + b'"\r\n\r\n'
                     + value + b"\r\n")
    lines.append(b"--" + boundary.encode() + b"--\r\n")
    return b"".join(lines), f"multipart/form-data; boundary={boundary}"


def render_request(request: Any, ctx: Context) -> Outgoing:
    """Build the bytes of one compiled request (``host.manifest.model.Request``).

    Raises :class:`RenderFailed` before anything is sent when a value is missing
    where it cannot be left out, or cannot go where the manifest put it.
    """
    try:
        return _render(request, ctx)
    except UnicodeEncodeError:
        raise RenderFailed(
            f"request {request.pointer}: a value is not valid Unicode text (it holds an "
            "unpaired surrogate) and cannot be sent; correct the value",
            request.pointer,
        ) from None


def _render(request: Any, ctx: Context) -> Outgoing:
    renderer = _Renderer(ctx, request.pointer)
    url = renderer.url(request.url)
    url_secret = renderer.secret_used

    headers: list[tuple[str, str]] = []
    secret_headers = set()
    for name, template in request.headers:
        renderer.secret_used = False
        value = renderer.text(template, f"header {name}")
        if value is MISSING:
            continue
        if _CONTROL.search(value):
            raise RenderFailed(
                f"request {request.pointer}: header {name} would contain a control character "
                "(CR, LF, NUL, …); remove it from the value",
                request.pointer,
            )
        value.encode()  # an unpaired surrogate fails here, inside the guard above
        if renderer.secret_used:
            secret_headers.add(name.lower())
        headers.append((name, value))

    renderer.secret_used = False
    query: list[tuple[str, str]] = []
    for name, compiled in request.query:
        value = renderer.json_value(compiled, f"query parameter {name}")
        if value is MISSING:
            continue
        if isinstance(value, list):
            query.extend((name, stringify(item)) for item in value)
        else:
            query.append((name, stringify(value)))
    if query:
        separator = "&" if "?" in url else "?"
        url = url + separator + urlencode(query, quote_via=quote)
    if "#" in url:
        url = url.split("#", 1)[0]

    body: bytes | None = None
    body_trace: Any = None
    content_type = None
    if request.has_body:
        value = renderer.json_value(request.body, "the body")
        if value is not MISSING:
            if request.body_type == "x-www-form-urlencoded":
                pairs = _form_pairs(value)
                body = urlencode(pairs, quote_via=quote_plus).encode()
                body_trace, content_type = value, "application/x-www-form-urlencoded"
            elif request.body_type == "formData":
                body, content_type = _multipart(_form_pairs(value))
                body_trace = value
            else:
                body = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
                body_trace, content_type = value, "application/json"
    if content_type and not any(name.lower() == "content-type" for name, _ in headers):
        headers.append(("Content-Type", content_type))
    return Outgoing(
        pointer=request.pointer,
        method=request.method,
        url=url,
        headers=headers,
        body=body,
        body_trace=body_trace,
        carries_secrets=url_secret or bool(secret_headers) or renderer.secret_used,
        secret_headers=frozenset(secret_headers),
        timeout=request.timeout,
    )
