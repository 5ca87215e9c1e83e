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

The counts live in a ``limits`` storage in this process's memory, so each
worker process counts on its own.

Sign-ins are limited separately, in the database (``host.services.accounts``).
"""

from __future__ import annotations

import logging
import math
import time

from flask import Blueprint, Flask, Response, current_app, g
from flask_limiter import Limiter, RateLimitExceeded
from werkzeug.exceptions import Unauthorized

from ..errors import TooManyRequests
from ..identity import bearer_token, current_principal
from ..web.errors import handle_minihost_error

__all__ = ["EXTENSION", "KEY_PREFIX", "SCOPE", "WINDOW", "init_app"]

log = logging.getLogger(__name__)

EXTENSION = "minihost.api_limiter"
#: Namespace of the counts in the storage.
KEY_PREFIX = "minihost"
#: One count per token, shared by every API endpoint.
SCOPE = "api-token"
#: Seconds in the window, and the longest a refused call may be told to wait.
WINDOW = 60


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


def init_app(app: Flask, blueprint: Blueprint) -> None:
    """Limit token calls to ``blueprint`` (the API) when ``API_RATE_LIMIT`` is not 0."""
    per_minute = int(app.config["API_RATE_LIMIT"])
    if per_minute == 0:
        return
    limiter = Limiter(_token_key, strategy="moving-window", storage_uri="memory://",
                      key_prefix=KEY_PREFIX, app=app)
    limiter.shared_limit(f"{per_minute} per {WINDOW} seconds", scope=SCOPE,
                         exempt_when=_not_a_token_call)(blueprint)
    app.extensions[EXTENSION] = limiter
    app.register_error_handler(RateLimitExceeded, _refused)
