"""Rate limits on token-authenticated API calls, kept by Flask-Limiter.

Each API token may make ``API_RATE_LIMIT`` calls in any 60 seconds (a moving
window: a burst of up to the limit, then each call waits for the oldest of the
window to age out). The call over the limit answers 429 problem JSON with
``Retry-After``, before its handler runs, so it does nothing. ``0`` switches
the limit off.

Why a moving window: ``limits`` offers fixed windows, moving windows and a
sliding-window counter, and no token bucket. The moving window is the literal
"N calls a minute" (never more in any 60 s, which the old per-process token
bucket allowed up to 2N - 1), and its ``Retry-After`` is
exact too: when the oldest call of the window leaves it.

The counts live in a ``limits`` storage: this process's memory by default, so
each worker process counts on its own; Redis when ``REDIS_URL`` is set, so every
process and machine shares one count per token (the moving window is one
atomic Lua script there).

When Redis cannot be reached the API stays up: Flask-Limiter falls back to
counting in this process's memory (the default's per-process figure) and logs a
warning, then tries Redis again at growing intervals (up to 32 s) and
logs when it is back. A shared count is a guard rail, not state that matters;
refusing every API call because the guard rail is down would turn a Redis outage
into a whole-API outage. Connections time out after :data:`REDIS_TIMEOUT` so
an unreachable Redis never holds a request for long.

Sign-ins are limited separately, in the database (``host.services.accounts``).
"""

from __future__ import annotations

import logging
import math
import time

from flask import Blueprint, Flask, Response, current_app, g
from flask_limiter import Limiter, RateLimitExceeded
from limits.errors import ConfigurationError as LimitsConfigurationError
from werkzeug.exceptions import Unauthorized

from ..errors import ConfigError, TooManyRequests
from ..identity import bearer_token, current_principal
from ..problems import handle_minihost_error

__all__ = ["EXTENSION", "KEY_PREFIX", "REDIS_TIMEOUT", "SCOPE", "WINDOW", "init_app"]

log = logging.getLogger(__name__)

EXTENSION = "minihost.api_limiter"
#: Namespace of the counts in the storage; ``RATELIMIT_KEY_PREFIX`` in the
#: ``create_app`` config replaces it (tests sharing one Redis, embedding).
KEY_PREFIX = "minihost"
#: One count per token, shared by every API endpoint.
SCOPE = "api-token"
#: Seconds in the window, and the longest a refused call may be told to wait.
WINDOW = 60
#: Seconds to connect to, and to wait for, Redis before counting in memory.
REDIS_TIMEOUT = 1


def _not_a_token_call() -> bool:
    """Calls without a token (the open catalog, browser sessions) are not counted;
    nor are calls whose token does not sign in, which the handler refuses with 401
    (``g.principal`` is dropped so that it asks again and gets that refusal)."""
    if bearer_token() is None:
        return True
    try:
        principal = current_principal()
    except Unauthorized:
        g.pop("principal", None)
        return True
    return principal is None


def _token_key() -> str:
    """The count's key: the token's id (``token:tok_…``), never its secret."""
    principal = current_principal()
    assert principal is not None  # _not_a_token_call ran first
    return principal.via


def _refused(error: RateLimitExceeded) -> Response | tuple[str, int]:
    """Answer a refused call as the host's own TooManyRequests, through the one
    problem-JSON path, with the seconds until the window lets a call through."""
    limiter: Limiter = current_app.extensions[EXTENSION]
    per_minute = error.limit.limit.amount
    wait = WINDOW
    breached = limiter.current_limit
    if breached is not None:
        try:
            wait = max(1, math.ceil(breached.window.reset_time - time.time()))
        except Exception:  # the storage went away since the count: the window is the bound
            log.warning("rate limit storage failed reading the window; answering "
                        "Retry-After %s", WINDOW, exc_info=True)
    return handle_minihost_error(TooManyRequests(
        f"this API token made more than {per_minute} calls in a minute; wait {wait} s "
        f"(see Retry-After) and slow down to at most {per_minute} a minute", wait))


def _storage(app: Flask) -> tuple[str, dict[str, str | int]]:
    redis_url: str | None = app.config["REDIS_URL"]
    if redis_url is None:
        return "memory://", {}
    if redis_url.startswith("unix://"):  # limits spells redis-py's unix:// this way
        redis_url = "redis+unix://" + redis_url.removeprefix("unix://")
    return redis_url, {"socket_connect_timeout": REDIS_TIMEOUT, "socket_timeout": REDIS_TIMEOUT}


def init_app(app: Flask, blueprint: Blueprint) -> None:
    """Limit token calls to ``blueprint`` (the API) when ``API_RATE_LIMIT`` is not 0."""
    per_minute = int(app.config["API_RATE_LIMIT"])
    if per_minute == 0:
        return
    storage_uri, storage_options = _storage(app)
    try:
        limiter = Limiter(
            _token_key,
            strategy="moving-window",
            storage_uri=storage_uri,
            storage_options=storage_options,
            in_memory_fallback_enabled=storage_uri != "memory://",
            key_prefix=app.config.get("RATELIMIT_KEY_PREFIX") or KEY_PREFIX,
            app=app,
        )
    except LimitsConfigurationError as error:
        raise ConfigError(
            f"REDIS_URL is set but its client cannot be used ({error}); install it with "
            "pip install 'minihost[redis]'") from None
    limiter.shared_limit(f"{per_minute} per {WINDOW} seconds", scope=SCOPE,
                         exempt_when=_not_a_token_call)(blueprint)
    app.extensions[EXTENSION] = limiter
    app.register_error_handler(RateLimitExceeded, _refused)
