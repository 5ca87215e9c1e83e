"""The errors Minihost raises, grouped by what the caller can do about them.

::

    MinihostError                  anything the host raises on purpose
    ├── BadInput                   the caller sent something wrong: fix it and retry (4xx)
    │   ├── ConfigError            a configuration key has a value we cannot use
    │   ├── ManifestError          a manifest failed validation (every problem listed)
    │   ├── ValidationError        form or API values failed their schema (per-field errors)
    │   └── NotFound               no such object, or not in the caller's workspace (404)
    ├── UpstreamFailed             a provider answered badly or not at all; its message is kept
    │   └── DatabaseUnavailable    the database cannot be reached (503)
    ├── ReconnectRequired          an installation's credentials cannot be used; connect again
    ├── PolicyDenied               the host refused on purpose (egress, auth, permissions)
    │   └── TooManyRequests        a rate limit: wait ``retry_after`` seconds (429)
    ├── OperatorSetup              the host's own setup stops this (a vault key missing): the
    │                              operator must act; never recorded as the user's problem (503)
    ├── PluginFailed               an operator's plugin raised where the host needs its answer
    └── Bug                        our own fault: logged, answered as 500

Every class carries an HTTP status and a problem ``type`` slug. One function,
:func:`to_problem`, turns any of them into RFC 9457 problem JSON; one,
:func:`to_cli_line`, into the one-line message the CLI prints before exiting 1.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "BadInput",
    "Bug",
    "ConfigError",
    "DatabaseUnavailable",
    "FieldError",
    "ManifestError",
    "ManifestProblem",
    "MinihostError",
    "NotFound",
    "OperatorSetup",
    "PluginFailed",
    "PolicyDenied",
    "ReconnectRequired",
    "TooManyRequests",
    "UpstreamFailed",
    "ValidationError",
    "problem",
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


class BadInput(MinihostError):
    """Raised when a request, command or file the caller gave cannot be used."""

    status = 400
    slug = "bad-input"
    title = "Bad input"


class ConfigError(BadInput):
    """Raised at start-up when a configuration key is unknown or malformed.

    The message names the key, the value and what is accepted, so the operator
    can fix ``minihost.cfg`` or the environment without reading code.
    """

    slug = "config"
    title = "Invalid configuration"


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
class FieldError:
    """One invalid field of a form or API body."""

    field: str
    message: str


class ValidationError(BadInput):
    """Raised when values fail their schema; nothing was sent or stored."""

    status = 422
    slug = "validation"
    title = "Invalid values"

    def __init__(self, errors: Iterable[FieldError], detail: str | None = None) -> None:
        self.errors = tuple(errors)
        summary = "; ".join(f"{e.field}: {e.message}" for e in self.errors)
        super().__init__(detail or summary or "invalid values")

    def problem_extras(self) -> dict[str, Any]:
        return {"errors": [{"field": e.field, "message": e.message} for e in self.errors]}


class NotFound(BadInput):
    """Raised when an object does not exist or belongs to another workspace."""

    status = 404
    slug = "not-found"
    title = "Not found"


class UpstreamFailed(MinihostError):
    """Raised when a provider failed; the provider's own message is kept."""

    status = 502
    slug = "upstream-failed"
    title = "Provider request failed"


class DatabaseUnavailable(UpstreamFailed):
    """Raised when the database cannot be reached or used; names the URL (no password)."""

    status = 503
    slug = "database"
    title = "Database unavailable"


class ReconnectRequired(MinihostError):
    """Raised when an installation's stored credentials can no longer be used
    (undecryptable, bound to another row, refresh outcome unknown). The
    installation is marked ``reconnect_required``; a fresh connect fixes it."""

    status = 409
    slug = "reconnect-required"
    title = "Reconnect required"


class PolicyDenied(MinihostError):
    """Raised when the host refuses on purpose: egress policy, permissions, auth."""

    status = 403
    slug = "policy-denied"
    title = "Refused by policy"


class TooManyRequests(PolicyDenied):
    """A limit on how often something may be done (sign-ins, API calls) was reached;
    ``retry_after`` is how many seconds until it may be tried again."""

    status = 429
    slug = "rate-limited"
    title = "Too many requests"

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class OperatorSetup(MinihostError):
    """Raised when the host's own setup prevents the work (stored secrets its vault keys
    cannot decrypt, say). Nothing about the caller's data is wrong and nothing is
    marked on it; the operator sees the reason in the log."""

    status = 503
    slug = "operator-setup"
    title = "Host setup problem"


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
