"""Outbound pacing shared by every process (FLOWS.md §8, manifest ``rateLimit``), and
the pause a provider's 429 puts on an installation.

A mini-app that declares ``rateLimit: {"requests": R, "perSeconds": P}`` has its
requests spaced ``P / R`` seconds apart — per installation, or for the whole mini-app
with ``scope: "miniapp"`` — whichever process, host or worker, sends them. Each
request takes the next free slot by one atomic step on a shared store: a Lua script
on Redis when ``REDIS_URL`` is set, else one upsert on the database. The slot is the
moment the request may leave; the caller waits for it, or gives up when it lies past
the request's deadline (:class:`~host.errors.RateLimited`, like a provider's own).

Spacing rather than counting within windows: R requests spaced ``P / R`` apart never
put more than R in any P-second window, whatever window the provider counts in.

Clocks: slots are compared with each process's clock (wall time); machines that run
Minihost keep their clocks in sync (NTP), as the database and the leases already
assume.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Any

from flask import Flask
from sqlalchemy import text, update

from .db import Installation, get_database, utcnow
from .engine import Hooks, Outgoing, Response
from .errors import PaceExceeded
from .manifest.model import RateLimit

__all__ = ["Paced", "pace_key", "pause", "take_slot"]

logger = logging.getLogger(__name__)

REDIS_PREFIX = "minihost:pace:"
REDIS_TIMEOUT = 2.0
# The slot after the one taken, for a key first seen or idle long enough.
_LUA = """
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local slot = tonumber(redis.call('GET', KEYS[1]) or '0')
if slot < now then slot = now end
redis.call('SET', KEYS[1], tostring(slot + interval), 'PX',
           math.ceil((slot + interval - now) * 1000) + 1000)
return tostring(slot)
"""
_UPSERT = {
    "postgresql": "INSERT INTO outbound_pace (key, tat) VALUES (:key, :first) "
                  "ON CONFLICT (key) DO UPDATE SET tat = GREATEST(outbound_pace.tat, :now) "
                  "+ :interval RETURNING tat",
    "sqlite": "INSERT INTO outbound_pace (key, tat) VALUES (:key, :first) "
              "ON CONFLICT (key) DO UPDATE SET tat = MAX(outbound_pace.tat, :now) "
              "+ :interval RETURNING tat",
}


def pace_key(limit: RateLimit, miniapp: str, installation_id: str | None) -> str:
    if limit.scope == "miniapp" or installation_id is None:
        return f"miniapp:{miniapp}"
    return f"installation:{installation_id}"


class Paced:
    """Request hooks that wait for each request's slot before the inner hooks run."""

    __slots__ = ("inner", "app", "key", "limit", "deadline")

    def __init__(self, inner: Hooks, app: Flask, key: str, limit: RateLimit,
                 deadline: float) -> None:
        self.inner, self.app, self.key, self.limit = inner, app, key, limit
        self.deadline = deadline  # time.monotonic() by which the chain must end

    def prepare_request(self, outgoing: Outgoing) -> None:
        wait = take_slot(self.app, self.key, self.limit) - time.time()
        if wait > 0:
            if time.monotonic() + wait >= self.deadline:
                raise PaceExceeded(
                    f"request {outgoing.pointer}: this mini-app may send {self.limit.requests} "
                    f"requests in {self.limit.per_seconds:g} s (its rateLimit) and the next "
                    f"free moment is {wait:.1f} s away, past the time left; try again later",
                    outgoing.pointer, 429, wait)
            time.sleep(wait)
        self.inner.prepare_request(outgoing)

    def response_received(self, outgoing: Outgoing, response: Response) -> None:
        self.inner.response_received(outgoing, response)


def take_slot(app: Flask, key: str, limit: RateLimit) -> float:
    """Take the next free slot of ``key``: the wall-clock moment (epoch seconds) the
    request may leave. Redis when configured (the database when it does not answer)."""
    now = time.time()
    interval = limit.interval
    client = _redis(app)
    if client is not None:
        try:
            return float(client["script"](keys=[REDIS_PREFIX + key], args=[now, interval]))
        except Exception as error:  # redis.RedisError: counted in the database meanwhile
            logger.warning("Redis did not answer a pacing request (%s); the database "
                           "paces instead", error)
    database = get_database(app)
    statement = text(_UPSERT["postgresql" if database.engine.dialect.name == "postgresql"
                             else "sqlite"])
    with database.transaction() as db:
        following = float(db.execute(statement, {"key": key, "first": now + interval,
                                                 "now": now, "interval": interval}).scalar_one())
    return following - interval


def pause(app: Flask, installation_id: str, seconds: float) -> None:
    """The provider asked this installation to wait ``seconds``: no flow task of it
    starts before then, in any process (a later pause only extends an earlier)."""
    until = utcnow() + timedelta(seconds=seconds)
    with get_database(app).transaction() as db:
        db.execute(update(Installation).where(
            Installation.id == installation_id,
            (Installation.paused_until.is_(None)) | (Installation.paused_until < until))
            .values(paused_until=until))
    logger.info("installation %s paused for %.0f s: the provider answered 429",
                installation_id, seconds)


def _redis(app: Flask) -> dict[str, Any] | None:
    """The Redis client and script for pacing, made once (None without REDIS_URL)."""
    url = app.config.get("REDIS_URL")
    if not url:
        return None
    found: dict[str, Any] | None = app.extensions.get("minihost.pacing_redis")
    if found is None:
        import redis

        client = redis.Redis.from_url(url, socket_connect_timeout=REDIS_TIMEOUT,
                                      socket_timeout=REDIS_TIMEOUT)
        found = {"client": client, "script": client.register_script(_LUA)}
        app.extensions["minihost.pacing_redis"] = found
    return found
