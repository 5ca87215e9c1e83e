"""Every audit event as one JSON line in a file, for log shippers and ``grep``.

The audit log lives in the database, where the API and ``/admin`` read it; many
operators also want it in their log store. This plugin appends each event the
``audit_event`` hook offers (sign-ins, installs, credential reads, key rotation,
…) to the file named by its ``path`` setting, one compact JSON object per line,
and rotates that file the way :class:`logging.handlers.RotatingFileHandler`
does (``path.1`` … ``path.N``). Without settings it does nothing.

Writing goes through the standard library: one dedicated, non-propagating
logger per file, with a rotating handler whose lock makes concurrent writers in
one process safe. A setting that is wrong, or a file that cannot be written,
raises from the hook, so the host lists it on ``/-/plugins``.
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
SETTINGS = ("path", "max_bytes", "backups")
EXAMPLE = '{"audit_jsonl": {"path": "/var/log/minihost/audit.jsonl"}}'

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


def _problem(setting: str, message: str) -> ValueError:
    return ValueError(f'PLUGIN_SETTINGS["{NAME}"]["{setting}"] {message}')


def _whole_number(settings: Mapping[str, Any], setting: str, default: int, least: int,
                  advice: str) -> int:
    value = settings.get(setting, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise _problem(setting, f"is {value!r}; write a whole number, at least {least}, "
                                f"{advice}")
    return value


def read_settings(config: Mapping[str, Any]) -> tuple[str, int, int] | None:
    """``(absolute path, max_bytes, backups)``, or ``None`` when unconfigured.

    Raises :class:`ValueError` naming the setting and what to write instead.
    """
    raw = (config.get("PLUGIN_SETTINGS") or {}).get(NAME)
    if raw is not None and not isinstance(raw, Mapping):
        raise ValueError(f'PLUGIN_SETTINGS["{NAME}"] is {raw!r}; write '
                         f"a dict of settings, for example PLUGIN_SETTINGS = {EXAMPLE}")
    settings = plugin_settings(config, NAME)
    if not settings:
        return None
    unknown = sorted(str(key) for key in settings if key not in SETTINGS)
    if unknown:
        raise ValueError(f'PLUGIN_SETTINGS["{NAME}"] has unknown setting(s) '
                         f"{', '.join(map(repr, unknown))}; the settings are 'path' "
                         "(required), 'max_bytes' and 'backups'")
    path = settings.get("path")
    if not isinstance(path, str) or not path.strip():
        found = "is missing" if path is None else f"is {path!r}"
        raise _problem("path", f"{found}; write the file to append events to, as a string, "
                               'for example "/var/log/minihost/audit.jsonl"')
    max_bytes = _whole_number(settings, "max_bytes", DEFAULT_MAX_BYTES, 0,
                              f"of bytes a file may reach before it is rotated (default "
                              f"{DEFAULT_MAX_BYTES}, 0 to never rotate)")
    backups = _whole_number(settings, "backups", DEFAULT_BACKUPS, 1,
                            f"of rotated files to keep (default {DEFAULT_BACKUPS}); to never "
                            'rotate write "max_bytes": 0')
    return os.path.abspath(os.path.expanduser(path)), max_bytes, backups


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
