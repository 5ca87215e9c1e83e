"""The guarded HTTP client every outbound call goes through (MANIFEST §2.5, §8).

:class:`GuardedClient` checks each destination with the egress policy, sends
through the pinned :class:`~host.engine.transport.Transport`, follows
redirects itself (at most five, each hop checked again, never to another
origin when the request carried credentials, never for auth steps) and retries
only where it is safe. :class:`SandboxClient` is the same seam with nothing
leaving the process: it answers from the request's ``responseSchema``.
"""

from __future__ import annotations

import email.utils
import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any, Protocol
from urllib.parse import urljoin

from ..errors import (
    ConnectFailed,
    ConnectionBroken,
    EgressDenied,
    RateLimited,
    RequestFailed,
    RequestTimedOut,
    ResponseTooLarge,
)
from .egress import EgressPolicy
from .render import Outgoing
from .sandbox import sample
from .transport import RawResponse, SendError, Transport

__all__ = ["Client", "GuardedClient", "Hop", "Response", "SandboxClient"]

DEFAULT_MAX_BYTES = 10 * 1024 * 1024
MAX_REDIRECTS = 5
MAX_ATTEMPTS = 3
RETRY_STATUSES = frozenset({429, 502, 503, 504})
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
MAX_RETRY_AFTER = 30.0


@dataclass(frozen=True, slots=True)
class Hop:
    status: int
    location: str


@dataclass(slots=True)
class Response:
    """The final answer to one manifest request, with how it was obtained."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    elapsed: float
    attempts: int = 1
    hops: list[Hop] = field(default_factory=list)
    would_have_sent: bool = False
    _header_map: dict[str, str] | None = None

    def header(self, name: str) -> str | None:
        if self._header_map is None:
            self._header_map = {k.lower(): v for k, v in self.headers}
        return self._header_map.get(name.lower())

    @property
    def header_map(self) -> dict[str, str]:
        self.header("")
        assert self._header_map is not None
        return self._header_map


class Client(Protocol):
    def send(self, outgoing: Outgoing, spec: Any, allowed_hosts: Sequence[str], deadline: float,
             follow_redirects: bool = True) -> Response: ...


def _retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` value, or ``None`` when it is neither
    form of RFC 9110 §10.2.3.

    Only ASCII digits count (``str.isdigit`` also accepts ``²``, which ``float``
    refuses). An HTTP-date is always UTC (§5.6.7), but the standard library reads
    one without a zone, or with ``-0000``, as local time.
    """
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


class GuardedClient:
    """Egress-checked, pinned, redirect- and retry-aware sending."""

    def __init__(
        self,
        policy: EgressPolicy,
        transport: Transport | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
        connect_timeout: float = 10.0,
        default_timeout: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.policy = policy
        self.transport = transport or Transport()
        self.max_bytes = max_bytes
        self.connect_timeout = connect_timeout
        self.default_timeout = default_timeout
        self.sleep = sleep
        self.jitter = jitter

    def send(self, outgoing: Outgoing, spec: Any, allowed_hosts: Sequence[str], deadline: float,
             follow_redirects: bool = True) -> Response:
        pointer = outgoing.pointer
        own = outgoing.timeout or self.default_timeout
        deadline = min(deadline, time.monotonic() + own)
        method, url, headers, body = outgoing.method, outgoing.url, outgoing.headers, outgoing.body
        hops: list[Hop] = []
        attempts = 0
        started = time.monotonic()
        origin = None
        while True:
            target = self.policy.check(url, allowed_hosts, pointer)
            if origin is None:
                origin = target.origin
            raw, tries = self._with_retries(target, method, headers, body, deadline, pointer)
            attempts += tries
            location = raw.header("location")
            if raw.status not in (301, 302, 303, 307, 308) or not location:
                return Response(raw.status, raw.headers, raw.body, time.monotonic() - started,
                                attempts, hops)
            next_url = urljoin(url, location)
            hops.append(Hop(raw.status, next_url))
            if not follow_redirects:
                raise RequestFailed(
                    f"request {pointer}: the provider answered {raw.status} redirecting to "
                    f"{next_url}; auth steps never follow redirects, so fix the token URL",
                    pointer, raw.status)
            if len(hops) > MAX_REDIRECTS:
                raise RequestFailed(f"request {pointer}: more than {MAX_REDIRECTS} redirects",
                                    pointer, raw.status)
            next_target = self.policy.check_url(next_url, allowed_hosts, pointer)
            if next_target[:3] != origin and outgoing.carries_secrets:
                raise EgressDenied(
                    f"request {pointer}: egress denied: redirect to another origin "
                    f"({next_target[1]}) refused because the request carried credentials",
                    pointer)
            if raw.status in (301, 302, 303) and method != "HEAD":
                method, body = "GET", None
                headers = [(k, v) for k, v in headers
                           if k.lower() not in ("content-type", "content-length")]
            url = next_url

    def _with_retries(self, target: Any, method: str, headers: list[tuple[str, str]],
                      body: bytes | None, deadline: float, pointer: str
                      ) -> tuple[RawResponse, int]:
        idempotent = method in IDEMPOTENT
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                raw = self.transport.send(target, method, headers, body, deadline,
                                          self.connect_timeout, self.max_bytes)
            except SendError as error:
                retryable = error.kind == "connect" or (error.kind in ("broken", "timeout")
                                                        and idempotent)
                if attempt == MAX_ATTEMPTS or not retryable or not self._backoff(
                        attempt, deadline):
                    raise self._failure(error, pointer) from None
                continue
            if raw.status not in RETRY_STATUSES:
                return raw, attempt
            wait = None
            if raw.status in (429, 503):
                wait = _retry_after(raw.header("retry-after"), time.time())
                remaining = deadline - time.monotonic()
                if wait is not None and (wait > MAX_RETRY_AFTER or wait >= remaining):
                    raise RateLimited(
                        f"request {pointer}: the provider answered {raw.status} and asks to "
                        f"retry after {wait:.0f} s, which does not fit the remaining "
                        f"{max(remaining, 0):.0f} s", pointer, raw.status, wait)
            if not idempotent or attempt == MAX_ATTEMPTS:
                return raw, attempt
            if wait is not None:
                self.sleep(wait)
            elif not self._backoff(attempt, deadline):
                return raw, attempt
        raise AssertionError("unreachable")

    def _backoff(self, attempt: int, deadline: float) -> bool:
        delay = min(4.0, 0.25 * 2 ** (attempt - 1)) * (0.5 + self.jitter() / 2)
        if time.monotonic() + delay >= deadline:
            return False
        self.sleep(delay)
        return True

    @staticmethod
    def _failure(error: SendError, pointer: str) -> Exception:
        message = f"request {pointer}: {error}"
        if error.kind == "timeout":
            return RequestTimedOut(message, pointer)
        if error.kind == "too_large":
            return ResponseTooLarge(message, pointer)
        if error.kind == "broken":
            return ConnectionBroken(message, pointer)
        return ConnectFailed(message, pointer)


SandboxResponder = Callable[[Outgoing, Any], "Response | None"]


class SandboxClient:
    """Nothing leaves the process: each request is checked like a real one (without
    DNS), recorded as "would have sent", and answered from its ``responseSchema``.

    ``responder`` lets a plugin supply answers (the ``sandbox_response`` hook).
    """

    def __init__(self, policy: EgressPolicy, responder: SandboxResponder | None = None) -> None:
        self.policy = policy
        self.responder = responder

    def send(self, outgoing: Outgoing, spec: Any, allowed_hosts: Sequence[str], deadline: float,
             follow_redirects: bool = True) -> Response:
        self.policy.check_url(outgoing.url, allowed_hosts, outgoing.pointer)
        if self.responder is not None:
            answer = self.responder(outgoing, spec)
            if answer is not None:
                answer.would_have_sent = True
                return answer
        expect = getattr(spec, "expect", None)
        status = expect.status[0] if expect is not None and expect.status else 200
        schema = getattr(spec, "response_schema", None)
        body = getattr(spec, "sandbox_body", None)
        if body is None:
            body = b"" if schema is None else _json_bytes(sample(schema))
        headers = [("Content-Type", "application/json")] if schema is not None else []
        return Response(status, headers, body, 0.0, 1, [], would_have_sent=True)


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()
