"""Rate limits on token-authenticated API calls.

Each API token gets a bucket of ``API_RATE_LIMIT`` calls that refills evenly
over a minute, so a program may burst up to the limit and then goes on at the
limit's pace. A call over it answers 429 problem JSON with ``Retry-After``.

The buckets live in the serving process: with several worker processes a
token may make up to (workers × limit) calls a minute. That keeps the check
free of a database write on every call; a deployment that needs one exact
figure across processes sets it at its reverse proxy too. Sign-ins are limited
separately, in the database (``host.services.accounts``).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from flask import Flask, current_app, g

from ..errors import TooManyRequests

# Buckets of tokens not seen for a while are full again, so forgetting them
# changes nothing; pruning past this many keeps memory bounded.
_PRUNE_AT = 10_000


class TokenBuckets:
    """A token bucket per key: ``per_minute`` calls, refilled continuously."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """Spend one call for ``key``: 0 when allowed, else seconds until one is."""
        now = self.clock()
        with self._lock:
            level, then = self._buckets.get(key, (self.capacity, now))
            level = min(self.capacity, level + (now - then) * self.rate)
            if level >= 1.0:
                self._buckets[key] = (level - 1.0, now)
                if len(self._buckets) > _PRUNE_AT:
                    self._prune(now)
                return 0.0
            self._buckets[key] = (level, now)
            return (1.0 - level) / self.rate

    def _prune(self, now: float) -> None:
        full = [key for key, (level, then) in self._buckets.items()
                if level + (now - then) * self.rate >= self.capacity]
        for key in full:
            del self._buckets[key]


def check_token_call(via: str) -> None:
    """Count one call made with an API token; raise ``TooManyRequests`` when over."""
    buckets: TokenBuckets | None = current_app.extensions.get("minihost.api_buckets")
    if buckets is None or g.get("rate_counted"):
        return
    g.rate_counted = True
    wait = buckets.take(via)
    if wait > 0:
        limit = int(buckets.capacity)
        raise TooManyRequests(
            f"this API token made more than {limit} calls in a minute; wait "
            f"{math.ceil(wait)} s (see Retry-After) and slow down to at most {limit} a minute",
            math.ceil(wait))


def init_app(app: Flask) -> None:
    per_minute = int(app.config["API_RATE_LIMIT"])
    if per_minute > 0:
        app.extensions["minihost.api_buckets"] = TokenBuckets(per_minute)
