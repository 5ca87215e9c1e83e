"""Every audit event as one JSON line in a file, for log shippers and ``grep``.

The audit log lives in the database, where the API and ``/admin`` read it; many
operators also want it in their log store. This plugin appends each event the
``audit_event`` hook offers (sign-ins, installs, credential reads, key rotation,
…) to the file named by its ``path`` setting, one compact JSON object per line,
and rotates that file the way :class:`logging.handlers.RotatingFileHandler`
does (``path.1`` … ``path.N``). Without settings it does nothing.

Writing goes through the standard library: one dedicated, non-propagating
logger per file, with a rotating handler whose lock makes concurrent writers in
one process safe. The host checks the settings against ``SETTINGS_SCHEMA`` at
start-up (a wrong one fails every event with its message); a file that cannot
be written raises from the hook, so the host lists it on ``/-/plugins``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import threading
from collections.abc import Mapping
from logging.handlers import RotatingFileHandler
from typing import Any

from host.plugins import hookimpl, plugin_settings

__version__ = "1.0.0"
MINIHOST_REQUIRES = ">=0.1"

NAME = "audit_jsonl"
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_BACKUPS = 5
SETTINGS_SCHEMA = {
    "type": "object",
    "required": ["path"],
    "additionalProperties": False,
    "properties": {
        "path": {
            "type": "string", "pattern": r"\S",
            "description": "write the file to append events to, as a string, for example "
                           '"/var/log/minihost/audit.jsonl"',
        },
        "max_bytes": {
            "type": "integer", "minimum": 0,
            "description": "write a whole number, at least 0, of bytes a file may reach "
                           f"before it is rotated (default {DEFAULT_MAX_BYTES}, 0 to never "
                           "rotate)",
        },
        "backups": {
            "type": "integer", "minimum": 1,
            "description": "write a whole number, at least 1, of rotated files to keep "
                           f'(default {DEFAULT_BACKUPS}); to never rotate write "max_bytes": 0',
        },
    },
}

_lock = threading.Lock()
_loggers: dict[str, logging.Logger] = {}


class JsonLinesHandler(RotatingFileHandler):
    """A :class:`RotatingFileHandler` that measures lines in bytes and reports
    failures to its caller.

    The standard handler counts characters, so lines with non-ASCII text would
    let the file grow past ``maxBytes``; it also rolls an empty file over when a
    single line is longer than ``maxBytes``, pushing an empty backup out in front
    of real ones. Here a file rolls over when the next line would make it larger
    than ``maxBytes`` and it already holds something. Rotation itself
    (:meth:`doRollover`) is the standard library's.
    """

    def shouldRollover(self, record: logging.LogRecord) -> bool:
        if self.maxBytes <= 0:
            return False
        if os.path.exists(self.baseFilename) and not os.path.isfile(self.baseFilename):
            return False  # never roll /dev/stdout or a pipe over (as the stdlib does)
        if self.stream is None:
            self.stream = self._open()
        size = self.stream.seek(0, os.SEEK_END)
        line = len(self.format(record).encode("utf-8")) + len(self.terminator)
        return size > 0 and size + line > self.maxBytes

    def handleError(self, record: logging.LogRecord) -> None:
        """Raise instead of printing to stderr, so the host reports the failure."""
        error = sys.exc_info()[1]
        if error is not None:
            raise error


def read_settings(config: Mapping[str, Any]) -> tuple[str, int, int] | None:
    """``(absolute path, max_bytes, backups)``, or ``None`` when unconfigured.

    The host checked the entry against :data:`SETTINGS_SCHEMA` at start-up."""
    settings = plugin_settings(config, NAME)
    if not settings:
        return None
    path = os.path.abspath(os.path.expanduser(settings["path"]))
    return (path, settings.get("max_bytes", DEFAULT_MAX_BYTES),
            settings.get("backups", DEFAULT_BACKUPS))


def logger_for(path: str, max_bytes: int, backups: int) -> logging.Logger:
    """The one logger writing ``path`` (created on first use, then reused)."""
    with _lock:
        logger = _loggers.get(path)
        if logger is None:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            handler = JsonLinesHandler(path, maxBytes=max_bytes, backupCount=backups,
                                       encoding="utf-8")
            handler.setFormatter(logging.Formatter("%(message)s"))
            # Not logging.getLogger(): a logger outside the registry cannot be
            # disabled or re-routed by a later logging.config call elsewhere.
            logger = logging.Logger(f"{NAME}:{path}", logging.INFO)
            logger.propagate = False
            logger.addHandler(handler)
            _loggers[path] = logger
        for existing in logger.handlers:
            if isinstance(existing, RotatingFileHandler):  # settings may change between apps
                existing.maxBytes, existing.backupCount = max_bytes, backups
        return logger


def close() -> None:
    """Close every file this plugin opened (they reopen on the next event)."""
    with _lock:
        for logger in _loggers.values():
            for handler in list(logger.handlers):
                logger.removeHandler(handler)
                with contextlib.suppress(OSError):  # a full disk: the file is closed anyway
                    handler.close()
        _loggers.clear()


@hookimpl
def audit_event(event: Mapping[str, Any], config: Mapping[str, Any]) -> None:
    settings = read_settings(config)
    if settings is None:
        return
    line = json.dumps(dict(event), ensure_ascii=False, separators=(",", ":"), default=str)
    logger_for(*settings).info(line)
