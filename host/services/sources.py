"""Dropdown sources (MANIFEST §5): options loaded from the provider, per installation.

A source runs its request chain with the installation's credentials (refreshed
like an action's) and picks ``options.items`` / ``value`` / ``label`` from the
last answer. ``dependsOn`` values arrive as strings (query parameters, form
fields); a value that parses as JSON is used parsed, so an option whose value is
an object (a repository ``{"owner", "name"}``) comes back as that object.
Results are cached in this process for ``cacheSeconds``, per installation and
inputs; a load that fails is never cached.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from flask import Flask
from sqlalchemy.orm import Session

from ..auth.refresh import Keeper
from ..db import Installation
from ..engine import jsonlimits, options_from
from ..errors import FieldError, NotFound, NotReady, SourceFailed, ValidationError
from ..execution import Step, run_step
from ..principal import Principal
from .installations import manifest_of

__all__ = ["decode_input", "load_options"]

MAX_CACHE_ENTRIES = 1024


def decode_input(value: Any) -> Any:
    """A dependsOn value as sent: JSON when it parses (option values travel as JSON)."""
    if not isinstance(value, str):
        return value
    try:
        return jsonlimits.loads(value)
    except jsonlimits.TooDeep:
        raise ValidationError([FieldError("", f"a value nests deeper than "
                                              f"{jsonlimits.MAX_DEPTH} levels")]) from None
    except ValueError:
        return value


class _Cache:
    def __init__(self) -> None:
        self._entries: OrderedDict[str, tuple[float, list[dict[str, Any]]]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> list[dict[str, Any]] | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry[0] < time.monotonic():
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return entry[1]

    def put(self, key: str, seconds: int, options: list[dict[str, Any]]) -> None:
        with self._lock:
            self._entries[key] = (time.monotonic() + seconds, options)
            self._entries.move_to_end(key)
            while len(self._entries) > MAX_CACHE_ENTRIES:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def _cache(app: Flask) -> _Cache:
    cache = app.extensions.get("minihost.source_cache")
    if cache is None:
        cache = app.extensions.setdefault("minihost.source_cache", _Cache())
    return cache


def load_options(app: Flask, db: Session, principal: Principal, installation: Installation,
                 source_name: str,
                 inputs: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``[{"value", "label"}]`` of a source, given the values of its ``dependsOn`` fields."""
    manifest = manifest_of(app, db, installation)
    source = manifest.sources.get(source_name)
    if source is None:
        raise NotFound(f"{manifest.title} has no source {source_name!r}")
    if installation.status != "active":
        raise NotReady.of(installation.status, installation.error)
    values = {name: decode_input(inputs[name]) for name in source.depends_on
              if name in inputs and inputs[name] not in (None, "")}
    missing = [name for name in source.depends_on if name not in values]
    if missing:
        raise ValidationError([FieldError(name, "choose this first; the options depend on it")
                               for name in missing])
    key = json.dumps([installation.id, installation.row_version, source_name, values],
                     sort_keys=True, default=str)
    cache = _cache(app)
    if source.cache_seconds:
        cached = cache.get(key)
        if cached is not None:
            return cached
    db.commit()  # hand the caller's connection back while the provider answers
    result, _ = run_step(app, Step(
        installation=installation, manifest=manifest, requests=source.requests, kind="source",
        name=source_name, actor=principal.actor, actor_id=principal.user.id, parameters=values,
        pages_items=source.items,
        keeper=Keeper(app, installation, manifest, actor=principal.actor, reason="source")))
    if not result.ok:
        error = result.error
        message = getattr(error, "provider_message", None) or (
            error.detail if error is not None else "unknown error")
        raise SourceFailed(f"{manifest.title} did not return the options for {source_name}: "
                           f"{message}")
    options = options_from(source, result.bodies())
    if source.cache_seconds:
        cache.put(key, source.cache_seconds, options)
    return options
