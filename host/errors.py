"""The errors Minihost raises, grouped by what the caller can do about them.

::

    MinihostError                  anything the host raises on purpose
    ├── BadInput                   the caller sent something wrong: fix it and retry (4xx)
    │   ├── ManifestError          a manifest failed validation (every problem listed)
    │   ├── ValidationError        form or API values failed their schema (per-field errors)
    │   ├── NotFound               no such object, or not in the caller's workspace (404)
    │   ├── RenderFailed           a request of a run could not be built; nothing was sent
    │   ├── ConnectRefused         the provider refused the credentials; nothing was stored
    │   └── CallbackRejected       an OAuth callback cannot finish a connect
    ├── NotReady                   the installation must be connected (again) first (409)
    ├── UpstreamFailed             a provider answered badly or not at all; its message is kept
    │   ├── RequestFailed          it answered, but not with success
    │   │   └── RateLimited        429/503 whose Retry-After does not fit the deadline
    │   │       └── PaceExceeded   the mini-app's own rateLimit has no slot in time (not sent)
    │   ├── RequestNotCompleted    no usable answer arrived
    │   │   ├── ConnectFailed      no connection was made (safe to retry any method)
    │   │   ├── ConnectionBroken   it broke after the request may have arrived
    │   │   ├── RequestTimedOut    the request or the whole chain ran out of time
    │   │   ├── ResponseTooLarge   the decoded answer passed the size cap
    │   │   └── ResponseTooDeep    the answer nests deeper than the host reads
    │   ├── SourceFailed           a dropdown's options could not be loaded
    │   ├── RefreshInProgress      another process is refreshing the token; retry shortly
    │   └── RefreshOutcomeUnknown  a token refresh may have arrived; its answer was lost
    ├── ReconnectRequired          an installation's credentials cannot be used; connect again
    │   └── CredentialsUnreadable  they decrypt, but belong to another record
    ├── PolicyDenied               the host refused on purpose (egress, auth, permissions)
    │   ├── EgressDenied           a destination is not allowed
    │   └── TooManyRequests        a rate limit: wait ``retry_after`` seconds (429)
    │       └── TooManyAttempts    too many failed sign-ins
    ├── OperatorSetup              the host's own setup stops this: the operator must act;
    │   │                          never recorded as the user's problem (503)
    │   ├── ConfigError            a configuration key has a value the host cannot use
    │   ├── DatabaseUnavailable    the database cannot be reached or used
    │   └── VaultKeyMissing        no configured key decrypts a stored secret
    ├── Interrupted                the host stopped while a run was in progress
    ├── PluginFailed               an operator's plugin raised where the host needs its answer
    └── Bug                        our own fault: logged, answered as 500

Every class carries an HTTP status and a problem ``type`` slug. One function,
:func:`to_problem`, turns any of them into RFC 9457 problem JSON; one,
:func:`to_cli_line`, into the one-line message the CLI prints before exiting 1;
one, :func:`run_error`, into the ``error`` a run records.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "BadInput",
    "Bug",
    "CallbackRejected",
    "ConfigError",
    "ConnectFailed",
    "ConnectRefused",
    "ConnectionBroken",
    "CredentialsUnreadable",
    "DatabaseUnavailable",
    "EgressDenied",
    "Conflict",
    "Stopped",
    "FieldError",
    "FlowInvalid",
    "FlowProblem",
    "Interrupted",
    "ManifestError",
    "ManifestProblem",
    "MinihostError",
    "NotFound",
    "NotReady",
    "OperatorSetup",
    "PluginFailed",
    "PaceExceeded",
    "PolicyDenied",
    "RateLimited",
    "ReconnectRequired",
    "RefreshInProgress",
    "RefreshOutcomeUnknown",
    "RenderFailed",
    "RequestFailed",
    "RequestNotCompleted",
    "RequestTimedOut",
    "ResponseTooDeep",
    "ResponseTooLarge",
    "SourceFailed",
    "TooManyAttempts",
    "TooManyRequests",
    "UpstreamFailed",
    "ValidationError",
    "VaultKeyMissing",
    "problem",
    "run_error",
    "to_cli_line",
    "to_problem",
]

PROBLEM_BASE = "https://minihost.dev/problems/"


class MinihostError(Exception):
    """Root of every error the host raises on purpose."""

    status: int = 500
    slug: str = "error"
    title: str = "Minihost error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    def problem_extras(self) -> dict[str, Any]:
        """Extra members for the problem JSON (``errors`` for bad input)."""
        return {}


# -- bad input ---------------------------------------------------------------------------


class BadInput(MinihostError):
    """Raised when a request, command or file the caller gave cannot be used."""

    status = 400
    slug = "bad-input"
    title = "Bad input"


@dataclass(frozen=True, slots=True)
class ManifestProblem:
    """One thing wrong with a manifest, located by file and JSON pointer."""

    file: str
    pointer: str
    message: str

    def __str__(self) -> str:
        return f"{self.file} {self.pointer or '/'}: {self.message}"


class ManifestError(BadInput):
    """Raised when a manifest fails its schema or the semantic lint.

    Carries every problem at once; a manifest that raises this never enters the
    catalog.
    """

    status = 422
    slug = "invalid-manifest"
    title = "Invalid manifest"

    def __init__(self, problems: Iterable[ManifestProblem]) -> None:
        self.problems = tuple(problems)
        lines = [str(p) for p in self.problems]
        super().__init__("\n".join(lines) if lines else "invalid manifest")

    def problem_extras(self) -> dict[str, Any]:
        return {"errors": [{"field": p.pointer, "message": p.message} for p in self.problems]}


@dataclass(frozen=True, slots=True)
class FlowProblem:
    """One thing wrong with a flow document: where (a JSON pointer), what, and what
    to do about it."""

    pointer: str
    message: str
    fix: str = ""

    def __str__(self) -> str:
        text = f"{self.pointer or '/'}: {self.message}"
        return f"{text} ({self.fix})" if self.fix else text


class FlowInvalid(BadInput):
    """Raised when a flow document fails its schema or the lint; carries every
    problem at once, and nothing was stored."""

    status = 422
    slug = "invalid-flow"
    title = "Invalid flow"

    def __init__(self, problems: Iterable[FlowProblem]) -> None:
        self.problems = tuple(problems)
        lines = [str(p) for p in self.problems]
        super().__init__("\n".join(lines) if lines else "invalid flow")

    def problem_extras(self) -> dict[str, Any]:
        return {"errors": [{"field": p.pointer, "message": p.message,
                            **({"fix": p.fix} if p.fix else {})} for p in self.problems]}


@dataclass(frozen=True, slots=True)
class FieldError:
    """One invalid field of a form or API body."""

    field: str
    message: str


class ValidationError(BadInput):
    """Raised when values fail their schema; nothing was sent or stored."""

    status = 422
    slug = "validation"
    title = "Invalid values"

    def __init__(self, errors: Iterable[FieldError], detail: str | None = None,
                 values: Mapping[str, Any] | None = None) -> None:
        self.errors = tuple(errors)
        self.values = dict(values) if values is not None else None  # what to show again
        summary = "; ".join(f"{e.field}: {e.message}" for e in self.errors)
        super().__init__(detail or summary or "invalid values")

    def problem_extras(self) -> dict[str, Any]:
        return {"errors": [{"field": e.field, "message": e.message} for e in self.errors]}


class NotFound(BadInput):
    """Raised when an object does not exist or belongs to another workspace."""

    status = 404
    slug = "not-found"
    title = "Not found"


class RenderFailed(BadInput):
    """A placeholder had no value, or a value cannot go where the manifest put it;
    ``pointer`` names the request. Nothing was sent."""

    status = 422
    slug = "render-failed"
    title = "Request could not be built"

    def __init__(self, detail: str, pointer: str = "") -> None:
        super().__init__(detail)
        self.pointer = pointer


class ConnectRefused(BadInput):
    """The provider refused the credentials (``auth.test`` or an auth type's own
    request failed); nothing was stored."""

    status = 422
    slug = "connect-refused"
    title = "Credentials refused"

    def __init__(self, detail: str, provider_message: str | None = None) -> None:
        super().__init__(detail)
        self.provider_message = provider_message

    def problem_extras(self) -> dict[str, Any]:
        return {"providerMessage": self.provider_message} if self.provider_message else {}


class CallbackRejected(BadInput):
    """An OAuth callback that cannot finish a connect; the message says what happened
    and nothing was changed."""

    title = "Connect not finished"
    slug = "callback-rejected"


class Conflict(MinihostError):
    """The object is not in a state that allows this: a disabled flow's endpoint, a
    retry of a run still running, a resolve of a task that is not unknown."""

    status = 409
    slug = "conflict"
    title = "Not possible now"


class NotReady(MinihostError):
    """The installation cannot run actions until it is connected (again)."""

    status = 409
    slug = "not-connected"
    title = "Installation not connected"

    @classmethod
    def of(cls, status: str, error: str | None) -> NotReady:
        """The message for an installation in ``status`` (with its recorded ``error``)."""
        if status == "pending":
            return cls("the installation is not connected yet; finish connecting it first")
        return cls(f"the installation cannot run actions: {error or status}")


# -- upstream failed ---------------------------------------------------------------------


class UpstreamFailed(MinihostError):
    """Raised when a provider failed; the provider's own message is kept."""

    status = 502
    slug = "upstream-failed"
    title = "Provider request failed"


class RequestFailed(UpstreamFailed):
    """The provider answered with a failure; ``provider_message`` is its own words and
    ``pointer`` names the request of the manifest."""

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
    """429/503 whose ``Retry-After`` does not fit the run's deadline."""

    slug = "rate-limited"
    title = "Provider rate limit"

    def __init__(self, detail: str, pointer: str, status: int, retry_after: float | None) -> None:
        super().__init__(detail, pointer, status)
        self.retry_after = retry_after


class PaceExceeded(RateLimited):
    """The mini-app's own ``rateLimit`` has no free moment before the deadline: nothing
    was sent (safe to retry), and the provider asked for no pause."""


class RequestNotCompleted(UpstreamFailed):
    """No usable answer arrived."""

    def __init__(self, detail: str, pointer: str = "") -> None:
        super().__init__(detail)
        self.pointer = pointer


class ConnectFailed(RequestNotCompleted):
    """No connection was made, so the request never left: safe to retry any method."""

    slug = "connect-failed"
    title = "Provider unreachable"


class ConnectionBroken(RequestNotCompleted):
    """The connection broke after the request may have reached the provider."""

    slug = "connection-broken"
    title = "Provider connection broke"


class RequestTimedOut(RequestNotCompleted):
    """The request, or the whole chain, ran out of time."""

    status = 504
    slug = "timeout"
    title = "Provider timed out"


class ResponseTooLarge(RequestNotCompleted):
    """The decoded answer passed the size cap; it is not used."""

    slug = "response-too-large"
    title = "Provider answer too large"


class ResponseTooDeep(RequestNotCompleted):
    """The answer nests deeper than the host reads (``jsonlimits.MAX_DEPTH``); like a
    too-large answer it is not used, and whatever it carried is treated as unknown."""

    slug = "response-too-deep"
    title = "Provider answer nested too deep"


class SourceFailed(UpstreamFailed):
    """The provider did not give a dropdown's options; the message is the provider's."""

    slug = "source-failed"
    title = "Options could not be loaded"


class RefreshInProgress(UpstreamFailed):
    """Another process is refreshing this installation's token; try again shortly."""

    status = 503
    slug = "refresh-in-progress"
    title = "Token refresh in progress"


class RefreshOutcomeUnknown(UpstreamFailed):
    """The refresh request may have been received; its tokens never arrived."""

    status = 502
    slug = "refresh-outcome-unknown"
    title = "Token refresh outcome unknown"


# -- the installation must be connected again -------------------------------------------


class ReconnectRequired(MinihostError):
    """Raised when an installation's stored credentials can no longer be used
    (bound to another row, refresh outcome unknown, refused by the provider). The
    installation is marked ``reconnect_required``; a fresh connect fixes it."""

    status = 409
    slug = "reconnect-required"
    title = "Reconnect required"


class CredentialsUnreadable(ReconnectRequired):
    """The ciphertext decrypts but belongs to another record: only new credentials help."""


# -- policy ------------------------------------------------------------------------------


class PolicyDenied(MinihostError):
    """Raised when the host refuses on purpose: egress policy, permissions, auth."""

    status = 403
    slug = "policy-denied"
    title = "Refused by policy"


class EgressDenied(PolicyDenied):
    """The destination is not allowed: wrong scheme, host, port or address."""

    slug = "egress-denied"
    title = "Destination refused"

    def __init__(self, detail: str, pointer: str = "") -> None:
        super().__init__(detail)
        self.pointer = pointer


class TooManyRequests(PolicyDenied):
    """A limit on how often something may be done (sign-ins, API calls) was reached;
    ``retry_after`` is how many seconds until it may be tried again."""

    status = 429
    slug = "rate-limited"
    title = "Too many requests"

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class TooManyAttempts(TooManyRequests):
    """Too many failed sign-ins for an address: wait ``retry_after`` seconds."""

    title = "Too many attempts"


# -- the operator's setup ----------------------------------------------------------------


class OperatorSetup(MinihostError):
    """Raised when the host's own setup prevents the work (stored secrets its vault keys
    cannot decrypt, say). Nothing about the caller's data is wrong and nothing is
    marked on it; the operator sees the reason in the log."""

    status = 503
    slug = "operator-setup"
    title = "Host setup problem"


class ConfigError(OperatorSetup):
    """Raised at start-up when a configuration key is unknown or malformed.

    The message names the key, the value and what is accepted, so the operator
    can fix ``minihost.cfg`` or the environment without reading code.
    """

    slug = "config"
    title = "Invalid configuration"


class DatabaseUnavailable(OperatorSetup):
    """Raised when the database cannot be reached or used; names the URL (no password).
    Not a provider's failure: no run records it as one."""

    slug = "database"
    title = "Database unavailable"


class VaultKeyMissing(OperatorSetup):
    """No configured key decrypts a stored secret: a key was removed or never
    reached this process. The operator restores it; the user can do nothing."""

    slug = "vault-key-missing"
    title = "Vault key missing"


# -- the rest ----------------------------------------------------------------------------


class Interrupted(MinihostError):
    """The process running a run stopped before the run finished. Whether its requests
    took effect at the provider may be unknown; the message says which."""

    status = 500
    slug = "interrupted"
    title = "Run interrupted"


class Stopped(MinihostError):
    """A chain was stopped between two requests because its flow run was cancelled or
    timed out; the requests before were sent, the rest were not."""

    status = 409
    slug = "stopped"
    title = "Run stopped"


class PluginFailed(MinihostError):
    """A plugin raised in a hook whose answer the host cannot do without (signing a
    request, say); the operator sees it on ``/-/plugins``."""

    status = 500
    slug = "plugin-failed"
    title = "Plugin failed"


class Bug(MinihostError):
    """Raised when the host hit a state it should never reach. Logged with a trace."""

    status = 500
    slug = "internal"
    title = "Internal error"


def problem(
    status: int, title: str, detail: str, slug: str = "error", **extras: Any
) -> dict[str, Any]:
    """Build an RFC 9457 problem object; ``extras`` become extension members."""
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + slug,
        "title": title,
        "status": status,
        "detail": detail,
    }
    body.update(extras)
    return body


def to_problem(error: MinihostError, extras: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The one place an error becomes problem JSON (``application/problem+json``)."""
    members = dict(error.problem_extras())
    if extras:
        members.update(extras)
    detail = error.detail if not isinstance(error, Bug) else "internal error; see the host log"
    return problem(error.status, error.title, detail, error.slug, **members)


def to_cli_line(error: MinihostError) -> str:
    """The message the CLI prints to stderr before exiting 1.

    Manifest and validation errors keep one problem per line, since an author
    wants all of them at once.
    """
    return f"Error: {error.detail}"


def run_error(error: MinihostError) -> dict[str, Any]:
    """The one place an error becomes a run's recorded ``error``: what failed, where
    (the manifest pointer of the request), and the provider's own words."""
    document: dict[str, Any] = {"type": error.slug, "message": error.detail}
    pointer = getattr(error, "pointer", None)
    if pointer:
        document["request"] = pointer
    status = getattr(error, "http_status", None)
    if status is not None:
        document["providerStatus"] = status
    message = getattr(error, "provider_message", None)
    if message:
        document["providerMessage"] = message
    return document
