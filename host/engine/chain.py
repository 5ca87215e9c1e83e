"""Running a chain of requests: render → hooks → send → check → map (MANIFEST §2).

Requests run in order; each sees the values mapped by the ones before it. The
first failure stops the chain and the result names the request, the status and
the provider's message. The whole chain shares one deadline.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

from ..errors import MinihostError, RequestFailed, RequestTimedOut, ResponseTooDeep, Stopped
from . import jsonlimits
from .client import Client, Response
from .jsonlimits import TooDeep
from .pagination import count_items, next_page
from .paths import MISSING
from .redact import REDACTED, Redactor, secret_values
from .render import Context, Outgoing, render_request, stringify

__all__ = ["ChainResult", "Hooks", "NoHooks", "Persist", "parse_body", "run_chain"]

Persist = Literal["output", "credentials", "metadata", "none"]
SNIPPET = 500


class Hooks(Protocol):
    """The seam for plugins (``prepare_request``, ``response_received``)."""

    def prepare_request(self, outgoing: Outgoing) -> None: ...

    def response_received(self, outgoing: Outgoing, response: Response) -> None: ...


class NoHooks:
    def prepare_request(self, outgoing: Outgoing) -> None:
        return None

    def response_received(self, outgoing: Outgoing, response: Response) -> None:
        return None


@dataclass(slots=True)
class ChainResult:
    """What a chain produced.

    ``values`` is the merged object mappings (the output, credentials or
    metadata, as the caller asked); ``last_body`` the parsed answer of the last
    request (sources pick options from it); ``trace`` the redacted record.
    """

    ok: bool
    values: dict[str, Any] = field(default_factory=dict)
    last_body: Any = None
    trace: list[dict[str, Any]] = field(default_factory=list)
    error: MinihostError | None = None
    duration_ms: int = 0
    # With pagination on the last request: every page's answer, in order, and whether
    # the list ended (False when maxPages stopped it first).
    pages: list[Any] = field(default_factory=list)
    complete: bool = True

    def bodies(self) -> list[Any]:
        """The last request's answers: each page when it paginated, else the one."""
        return self.pages or [self.last_body]


def parse_body(response: Response) -> Any:
    """JSON when the body parses as JSON, else the text; ``None`` when empty.
    :class:`~host.engine.jsonlimits.TooDeep` when it nests past the limit."""
    if not response.body:
        return None
    content_type = (response.header("content-type") or "").lower()
    if "json" in content_type and response.body[:1] in (b"{", b"["):
        try:  # the usual answer, parsed from its bytes without a copy as text first
            return jsonlimits.loads(response.body)
        except TooDeep:
            raise
        except ValueError:
            pass  # not JSON after all: the text path below says what it is
    text = response.body.decode("utf-8", errors="replace")
    stripped = text.lstrip("\ufeff").strip()
    if "json" in content_type or stripped[:1] in ("{", "["):
        try:
            return jsonlimits.loads(stripped)
        except TooDeep:
            raise
        except ValueError:  # not JSON
            return text
    return text


def _cap(text: str, limit: int = 2000) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def _snippet(text: str) -> str:
    text = text.strip()
    return text if len(text) <= SNIPPET else text[:SNIPPET] + "…"


def _common_message(body: dict[str, Any]) -> str | None:
    """Where most APIs put their message, when the manifest names no ``expect.error``:
    OAuth's ``error`` + ``error_description`` (RFC 6749 §5.2), ``error.message``,
    ``message``."""
    error = body.get("error")
    description = body.get("error_description")
    if isinstance(error, str) and error:
        return f"{error}: {description}" if isinstance(description, str) and description \
            else error
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])
    if isinstance(body.get("message"), str) and body["message"]:
        return str(body["message"])
    return None


def _check(request: Any, response: Response, body: Any, redactor: Redactor) -> None:
    expect = request.expect
    statuses = expect.status if expect is not None and expect.status else None
    ok = response.status in statuses if statuses else 200 <= response.status < 300
    if ok and expect is not None:
        for path, wanted in expect.body:
            if path.evaluate(body, response.header_map) != wanted:
                ok = False
                break
    if ok:
        return
    message = None
    if expect is not None and expect.error is not None:
        found = expect.error.evaluate(body, response.header_map)
        if found is not MISSING and found is not None:
            message = stringify(found)
    if message is None and isinstance(body, dict):
        message = _common_message(body)
    if message is None and response.body:
        message = response.body.decode("utf-8", errors="replace")
    # Redact the whole text before cutting it, or a secret cut in half would survive.
    message = _snippet(redactor.text(message)) if message else None
    where = f"request {request.pointer} ({request.method})"
    detail = f"{where} failed with HTTP {response.status}"
    if message:
        detail += f": {message}"
    raise RequestFailed(detail, request.pointer, response.status, message)


def _map(request: Any, response: Response, body: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(persisted object-mapping values, forwarded values)."""
    mapping = request.mapping
    if mapping is None:
        return {}, {}
    headers = response.header_map
    values = {name: path.evaluate(body, headers) for name, path in mapping.items}
    forwarded = {k: v for k, v in values.items() if v is not MISSING and v is not None}
    if mapping.persisted:
        return {k: (None if v is MISSING else v) for k, v in values.items()}, forwarded
    return {}, forwarded


MIN_OUTPUT_SECRET = 8


def _secrets(ctx: Context, extra: Sequence[str]) -> list[str]:
    return [*secret_values(ctx.credentials, ctx.client.get("clientSecret"),
                           ctx.client.get("clientBasicAuth")), *extra]


def _redactor(ctx: Context, extra: Sequence[str]) -> Redactor:
    return Redactor(_secrets(ctx, extra))


def _expired(response: Response, body: Any, refresh_on: Any) -> bool:
    """A 401, or an answer matching ``auth.refreshOn``: the token needs refreshing."""
    if response.status == 401:
        return True
    if refresh_on is None or not (refresh_on.status or refresh_on.body):
        return False
    if refresh_on.status and response.status not in refresh_on.status:
        return False
    return all(path.evaluate(body, response.header_map) == wanted
               for path, wanted in refresh_on.body)


MAX_EXPIRES_IN = 10 * 365 * 86400  # a lifetime beyond ten years is no lifetime at all


def _credentials(values: dict[str, Any], now: float) -> tuple[dict[str, Any], str | None]:
    """Drop unmapped names (a refresh answer without a new refresh token keeps the old
    one) and turn ``expiresIn`` into ``expiresAt``. A lifetime that is not a number of
    seconds in (0, ten years] means "expiry unknown": no ``expiresAt`` (an older one is
    cleared), so the token is refreshed when the provider refuses it; the second value
    says so for the trace."""
    kept = {k: v for k, v in values.items() if v is not None}
    if "expiresIn" not in kept:
        return kept, None
    expires_in = kept["expiresIn"]
    if isinstance(expires_in, str):
        try:
            expires_in = float(expires_in.strip())
        except ValueError:
            pass
    usable = (isinstance(expires_in, (int, float)) and not isinstance(expires_in, bool)
              and expires_in == expires_in and 0 < expires_in <= MAX_EXPIRES_IN)
    if not usable:
        del kept["expiresIn"]
        kept["expiresAt"] = None
        return kept, (f"expiresIn {json.dumps(values['expiresIn'])[:40]} is not a usable token "
                      "lifetime; the expiry is treated as unknown and the token is refreshed "
                      "when the provider refuses it")
    kept["expiresIn"] = int(expires_in) if float(expires_in).is_integer() else expires_in
    kept["expiresAt"] = int(now + expires_in)
    return kept, None


def run_chain(
    requests: Sequence[Any],
    ctx: Context,
    client: Client,
    *,
    allowed_hosts: Sequence[str],
    deadline: float,
    persist: Persist = "output",
    follow_redirects: bool = True,
    hooks: Hooks | None = None,
    extra_secrets: Sequence[str] = (),
    clock: Callable[[], float] = time.time,
    refresh: Callable[[], Mapping[str, Any]] | None = None,
    refresh_on: Any = None,
    stop: Callable[[], str | None] | None = None,
    pages_items: Any = None,
) -> ChainResult:
    """Run ``requests`` (compiled ``Request`` objects) in order.

    ``deadline`` is a ``time.monotonic()`` instant for the whole chain;
    ``persist`` says what object mappings become (and, for credentials, that
    every mapped value is redacted in the trace).

    ``refresh``, when given, is called at most once per chain when a request is
    answered 401 (or matches ``refresh_on``, an ``Expect``); it returns fresh
    credentials and that request is sent once more with them.

    ``stop``, when given, is asked before every request after the first: a reason
    (a flow run was cancelled) ends the chain there, with the requests before it sent.

    A last request with ``pagination`` is followed across its pages (``pages_items``:
    the caller's list path — a source's or data source's ``items`` — for pagination
    blocks that name none); list values of its mapping gather every page.
    """
    hooks = hooks or NoHooks()
    secrets = [*extra_secrets]
    redactor = _redactor(ctx, secrets)
    result = ChainResult(ok=True)
    started = time.monotonic()
    refreshed = False
    for position, request in enumerate(requests):
        if position and stop is not None:
            reason = stop()
            if reason is not None:
                result.ok = False
                result.error = Stopped(f"request {request.pointer} was not sent: {reason}")
                break
        entry: dict[str, Any] = {"request": request.pointer, "method": request.method}
        result.trace.append(entry)
        try:
            while True:
                if time.monotonic() >= deadline:
                    raise RequestTimedOut(
                        f"request {request.pointer}: the chain's time budget ran out before "
                        "it started", request.pointer)
                outgoing = render_request(request, ctx)
                hooks.prepare_request(outgoing)
                _record_outgoing(entry, outgoing, redactor)
                response, body = _exchange(request, outgoing, entry, client, allowed_hosts,
                                           deadline, follow_redirects, hooks, redactor)
                if refresh is not None and not refreshed and _expired(response, body,
                                                                      refresh_on):
                    refreshed = True
                    entry["refreshed"] = "the provider refused the token; refreshed it and " \
                                         "sent the request again"
                    secrets.extend(secret_values(ctx.credentials))
                    ctx.credentials = refresh()
                    redactor = _redactor(ctx, secrets)
                    entry = {"request": request.pointer, "method": request.method}
                    result.trace.append(entry)
                    continue
                break
            _check(request, response, body, redactor)
            values, forwarded = _map(request, response, body)
        except MinihostError as error:
            error.detail = _cap(redactor.text(error.detail))
            error.args = (error.detail,)
            entry["error"] = error.detail
            result.ok = False
            result.error = error
            break
        if request.pagination is not None and position == len(requests) - 1 \
                and not response.would_have_sent:
            try:
                _more_pages(request, outgoing, response, body, values, result, client,
                            allowed_hosts, deadline, follow_redirects, hooks, redactor,
                            pages_items)
            except MinihostError as error:
                error.detail = _cap(redactor.text(error.detail))
                error.args = (error.detail,)
                result.trace[-1]["error"] = error.detail
                result.ok = False
                result.error = error
                break
        ctx.forwarded.update(forwarded)
        result.values.update(values)
        result.last_body = body
        if persist == "credentials" and values:
            # New credentials may be forwarded to the next requests: hide them there too.
            secrets.extend(secret_values(values))
            redactor = _redactor(ctx, secrets)
        if values:
            entry["mapped"] = (
                {k: REDACTED for k in values} if persist == "credentials"
                else redactor.value(values)
            )
    if persist == "credentials" and result.ok:
        result.values, note = _credentials(result.values, clock())
        if note and result.trace:
            result.trace[-1]["note"] = note
    elif persist in ("output", "metadata") and result.values:
        # A provider may echo a credential in its answer; an output (or an account's
        # metadata) is stored and shown, so it is redacted like the trace, but only of
        # values long enough to be secrets: a short credential value is a user name
        # ("ada"), which an output may rightly show and which must not turn "Canada"
        # into "Can[…]". Keys and tokens are far longer.
        result.values = Redactor([s for s in _secrets(ctx, secrets)
                                  if len(s) >= MIN_OUTPUT_SECRET]).value(result.values)
    result.duration_ms = round((time.monotonic() - started) * 1000)
    return result


def _exchange(request: Any, outgoing: Outgoing, entry: dict[str, Any], client: Client,
              allowed_hosts: Sequence[str], deadline: float, follow_redirects: bool,
              hooks: Hooks, redactor: Redactor) -> tuple[Response, Any]:
    """Send a prepared request, record the answer in ``entry`` and parse it."""
    sent = time.monotonic()
    response = client.send(outgoing, request, allowed_hosts, deadline, follow_redirects)
    entry["durationMs"] = round((time.monotonic() - sent) * 1000, 1)
    hooks.response_received(outgoing, response)
    _record_response(entry, response, redactor)
    try:
        return response, parse_body(response)
    except TooDeep:
        raise ResponseTooDeep(
            f"request {request.pointer}: the provider's answer nests deeper than "
            f"{jsonlimits.MAX_DEPTH} levels, so it was not used", request.pointer) from None


def _more_pages(request: Any, outgoing: Outgoing, response: Response, body: Any,
                values: dict[str, Any], result: ChainResult, client: Client,
                allowed_hosts: Sequence[str], deadline: float, follow_redirects: bool,
                hooks: Hooks, redactor: Redactor, items: Any) -> None:
    """Fetch the pages after the first (already in ``body``) while the provider says
    there are more; ``values`` gathers the mapped lists of every page."""
    pagination = request.pagination
    pages = [body]
    taken = count_items(pagination, body, items) or 0
    while True:
        following = next_page(pagination, outgoing.url, outgoing.body, len(pages), body,
                              response.header_map, items, taken)
        if following is None:
            break
        if len(pages) >= pagination.max_pages:
            result.complete = False
            result.trace[-1]["note"] = (f"stopped after {pagination.max_pages} pages "
                                        "(maxPages); the list goes on")
            break
        if time.monotonic() >= deadline:
            raise RequestTimedOut(
                f"request {request.pointer}: the time budget ran out after {len(pages)} "
                "pages", request.pointer)
        url, request_body = following
        body_changed = request_body is not None and request_body is not outgoing.body
        outgoing = replace(outgoing, url=url, body=request_body, body_trace=(
            json.loads(request_body) if body_changed and request_body is not None
            else outgoing.body_trace))
        hooks.prepare_request(outgoing)
        # The first page's entry has the headers (the same on every page): later pages
        # record what changes — the URL, or the body that carries the cursor.
        entry: dict[str, Any] = {"request": request.pointer, "method": request.method,
                                 "page": len(pages) + 1, "url": redactor.text(outgoing.url)}
        if body_changed:
            entry["body"] = redactor.value(outgoing.body_trace)
        result.trace.append(entry)
        response, body = _exchange(request, outgoing, entry, client, allowed_hosts, deadline,
                                   follow_redirects, hooks, redactor)
        _check(request, response, body, redactor)
        more, _ = _map(request, response, body)
        for name, value in more.items():
            if isinstance(values.get(name), list) and isinstance(value, list):
                values[name] = [*values[name], *value]
        pages.append(body)
        taken += count_items(pagination, body, items) or 0
    result.pages = pages


def _record_outgoing(entry: dict[str, Any], outgoing: Outgoing, redactor: Redactor) -> None:
    entry["url"] = redactor.text(outgoing.url)
    entry["headers"] = redactor.headers(outgoing.headers, outgoing.secret_headers)
    if outgoing.body_trace is not None:
        entry["body"] = redactor.value(outgoing.body_trace)


def _record_response(entry: dict[str, Any], response: Response, redactor: Redactor) -> None:
    entry["status"] = response.status
    if response.would_have_sent:
        entry["wouldHaveSent"] = True
    if response.attempts > 1:
        entry["attempts"] = response.attempts
    if response.hops:
        entry["redirects"] = [{"status": h.status, "location": redactor.text(h.location)}
                              for h in response.hops]


def trace_document(result: ChainResult) -> dict[str, Any]:
    """The redacted trace as stored on a run: ``{"requests": [...]}``."""
    return {"requests": result.trace}


def items_of(path: Any, bodies: Sequence[Any]) -> list[Any]:
    """The items ``path`` selects in each answer (each page), in order."""
    found: list[Any] = []
    for body in bodies:
        items = path.evaluate(body)
        if items is MISSING or items is None:
            continue
        if isinstance(items, list):
            found.extend(items)
        else:
            found.append(items)
    return found


def options_from(source: Any, bodies: Sequence[Any]) -> list[dict[str, Any]]:
    """A source's options from the last request's answers (every page):
    ``[{"value", "label"}]``."""
    options = []
    for item in items_of(source.items, bodies):
        value = source.value.evaluate(item)
        if value is MISSING or value is None:
            continue
        label = source.label.evaluate(item)
        options.append({"value": value,
                        "label": stringify(value if label is MISSING or label is None
                                           else label)})
    return options
