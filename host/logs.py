"""Logging, set up by ``create_app`` from ``LOG_LEVEL`` and ``LOG_FORMAT``.

Minihost is the application, so it configures the root logger: the host's own
loggers, plugins', werkzeug's access log and libraries' all share one handler on
stderr. Creating another application in the same process replaces that handler
instead of adding a second one, so every record is written once.

``text`` is for a person at a terminal. ``json`` writes one object per line with
``time`` (UTC, ISO 8601), ``level``, ``logger`` and ``message`` (and
``exception`` when a traceback is attached), for log collectors.

Work that belongs to a flow run says so: what is logged while a task attempt runs
(:func:`context`) carries ``flowRun``, ``taskRun``, ``attempt`` and ``task`` (its key) — as
fields in ``json``, in brackets after the message in ``text`` — whichever process,
host or worker, runs it.

Secrets are kept out before a record is made, never by the formatter: the
development server's access log drops OAuth codes and hook tokens from URLs
(``host.cli``), plugin failures are redacted before they are logged, urllib3's
request lines (which carry query strings) stay off below WARNING
(``host.engine.transport``). The formatters only add the fields above.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO

from flask import Flask

HANDLER_NAME = "minihost"
# Libraries that speak at INFO about routine work: alembic announces its context
# each time the schema is checked. They are heard from at DEBUG.
QUIET_BELOW_DEBUG = ("alembic",)
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_TERMINAL_STYLE = re.compile(r"\x1b\[[0-9;]*m")


_CONTEXT: ContextVar[dict[str, Any] | None] = ContextVar("minihost_log_context", default=None)


@contextmanager
def context(**fields: Any) -> Iterator[None]:
    """Records logged inside carry ``fields`` (the flow run and task an attempt is
    for)."""
    token = _CONTEXT.set({**(_CONTEXT.get() or {}), **fields})
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def annotate(**fields: Any) -> None:
    """Add ``fields`` to the current :func:`context` (what became known inside it)."""
    current = _CONTEXT.get()
    if current is not None:
        current.update(fields)


class TextFormatter(logging.Formatter):
    """The text line, with the record's context in brackets after the message."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = _CONTEXT.get()
        if not fields:
            return line
        head, _, tail = line.partition("\n")
        shown = " ".join(f"{key}={value}" for key, value in fields.items())
        return f"{head} [{shown}]" + (f"\n{tail}" if tail else "")


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        document = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            # werkzeug colours its access log for terminals; a JSON reader wants text.
            "message": _TERMINAL_STYLE.sub("", record.getMessage()),
        }
        fields = _CONTEXT.get()
        if fields:
            document.update(fields)
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            document["stack"] = self.formatStack(record.stack_info)
        return json.dumps(document)


class StderrHandler(logging.StreamHandler[TextIO]):
    """Writes to ``sys.stderr`` as it is when a record comes (as ``logging.lastResort``
    does), so a stderr replaced later — a test's capture, a redirection — is followed
    rather than a closed stream kept."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self) -> TextIO:  # type: ignore[override]  # read-only on purpose
        return sys.stderr


def init_app(app: Flask) -> None:
    """Install (or replace) the one Minihost handler on the root logger."""
    handler = StderrHandler()
    handler.set_name(HANDLER_NAME)
    if app.config["LOG_FORMAT"] == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter(TEXT_FORMAT))
    root = logging.getLogger()
    for previous in [h for h in root.handlers if h.get_name() == HANDLER_NAME]:
        root.removeHandler(previous)
    root.addHandler(handler)
    root.setLevel(app.config["LOG_LEVEL"])
    for name in QUIET_BELOW_DEBUG:
        logging.getLogger(name).setLevel(
            logging.NOTSET if app.config["LOG_LEVEL"] == "DEBUG" else logging.WARNING)
