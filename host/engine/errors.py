"""What can go wrong in a run, as :mod:`host.errors` families.

::

    RenderFailed (BadInput)          a request could not be built; nothing was sent
    EgressDenied (PolicyDenied)      the egress policy refused a destination
    RequestFailed (UpstreamFailed)   the provider answered, but not with success
    ├── RateLimited                  429/503 whose Retry-After does not fit the deadline
    RequestNotCompleted (UpstreamFailed)
    ├── ConnectFailed                no connection was made (safe to retry any method)
    ├── ConnectionBroken             it broke after the request may have arrived
    ├── RequestTimedOut              the request or the whole chain ran out of time
    └── ResponseTooLarge             the decoded answer passed the size cap

Each carries the manifest pointer of the request (``/actions/0/requests/1``)
so the message names the request the author wrote.
"""

from __future__ import annotations

from typing import Any

from ..errors import BadInput, PolicyDenied, UpstreamFailed

__all__ = [
    "ConnectFailed",
    "ConnectionBroken",
    "EgressDenied",
    "RateLimited",
    "RenderFailed",
    "RequestFailed",
    "RequestNotCompleted",
    "RequestTimedOut",
    "ResponseTooLarge",
]


class RenderFailed(BadInput):
    """A placeholder had no value, or a value cannot go where the manifest put it."""

    status = 422
    slug = "render-failed"
    title = "Request could not be built"

    def __init__(self, detail: str, pointer: str = "") -> None:
        super().__init__(detail)
        self.pointer = pointer


class EgressDenied(PolicyDenied):
    """The destination is not allowed: wrong scheme, host, port or address."""

    slug = "egress-denied"
    title = "Destination refused"

    def __init__(self, detail: str, pointer: str = "") -> None:
        super().__init__(detail)
        self.pointer = pointer


class RequestFailed(UpstreamFailed):
    """The provider answered with a failure; ``provider_message`` is its own words."""

    title = "Provider request failed"

    def __init__(
        self, detail: str, pointer: str = "", status: int | None = None,
        provider_message: str | None = None,
    ) -> None:
        super().__init__(detail)
        self.pointer = pointer
        self.http_status = status
        self.provider_message = provider_message

    def problem_extras(self) -> dict[str, Any]:
        extras: dict[str, Any] = {"request": self.pointer}
        if self.http_status is not None:
            extras["providerStatus"] = self.http_status
        if self.provider_message:
            extras["providerMessage"] = self.provider_message
        return extras


class RateLimited(RequestFailed):
    slug = "rate-limited"
    title = "Provider rate limit"

    def __init__(self, detail: str, pointer: str, status: int, retry_after: float | None) -> None:
        super().__init__(detail, pointer, status)
        self.retry_after = retry_after


class RequestNotCompleted(UpstreamFailed):
    """No usable answer arrived."""

    def __init__(self, detail: str, pointer: str = "") -> None:
        super().__init__(detail)
        self.pointer = pointer


class ConnectFailed(RequestNotCompleted):
    slug = "connect-failed"
    title = "Provider unreachable"


class ConnectionBroken(RequestNotCompleted):
    """The connection broke after the request may have reached the provider."""

    slug = "connection-broken"
    title = "Provider connection broke"


class RequestTimedOut(RequestNotCompleted):
    status = 504
    slug = "timeout"
    title = "Provider timed out"


class ResponseTooLarge(RequestNotCompleted):
    slug = "response-too-large"
    title = "Provider answer too large"


class ResponseTooDeep(RequestNotCompleted):
    """The answer nests deeper than the host reads (``jsonlimits.MAX_DEPTH``); like a
    too-large answer it is not used, and whatever it carried is treated as unknown."""

    slug = "response-too-deep"
    title = "Provider answer nested too deep"
