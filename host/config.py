"""Configuration: defaults, ``instance/minihost.cfg``, then ``MINIHOST_*`` variables.

Every key is declared once in :data:`KEYS` with its parser. Parsing is strict on
purpose: a mistyped boolean such as ``"Flase"`` must stop start-up, not quietly
turn a safety switch on. Unknown keys in ``minihost.cfg`` stop start-up too (with
a suggestion); unknown ``MINIHOST_*`` variables are ignored because that prefix
also carries ``MINIHOST_INSTANCE_PATH`` and test settings.
"""

from __future__ import annotations

import difflib
import importlib.util
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flask import Config, Flask

from .errors import ConfigError

ENV_PREFIX = "MINIHOST"
CONFIG_FILE = "minihost.cfg"
SECRET_KEY_FILE = "secret_key"
VAULT_KEYS_FILE = "vault_keys"

_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


def parse_bool(key: str, value: Any) -> bool:
    """Accept ``true/false/1/0/yes/no`` in any case, and real booleans."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
    raise ConfigError(
        f"{key}={value!r} is not a boolean; use one of true, false, 1, 0, yes, no"
    )


def parse_positive_number(key: str, value: Any) -> float:
    if isinstance(value, bool):
        raise ConfigError(f"{key}={value!r} is not a number; use a positive number of seconds")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"{key}={value!r} is not a number; use a positive number of seconds"
        ) from None
    if not number > 0 or number != number or number == float("inf"):
        raise ConfigError(f"{key}={value!r} must be a positive, finite number of seconds")
    return number


def parse_count(key: str, value: Any) -> int:
    """A whole number, zero or more (``0`` switches the limit it sets off)."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ConfigError(f"{key}={value!r} is not a whole number; use e.g. 600, or 0 for none")
    text = str(value).strip()
    if not (text.isascii() and text.isdigit()):
        raise ConfigError(f"{key}={value!r} is not a whole number; use e.g. 600, or 0 for none")
    return int(text)


MAX_RETENTION_DAYS = 36_500


def parse_days(key: str, value: Any) -> int:
    """A whole number of days to keep runs, up to 100 years (a date further back is out
    of range); ``0`` keeps them for ever."""
    if isinstance(value, bool) or not isinstance(value, (int, str)) or \
            not (str(value).strip().isascii() and str(value).strip().isdigit()):
        raise ConfigError(f"{key}={value!r} is not a whole number of days; use e.g. 90, "
                          "or 0 to keep runs for ever")
    days = int(str(value).strip())
    if days > MAX_RETENTION_DAYS:
        raise ConfigError(f"{key}={value!r} is more than {MAX_RETENTION_DAYS} days; use 0 "
                          "to keep runs for ever")
    return days


def parse_optional_string(key: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{key}={value!r} is not a string; give it as text")
    return value or None


def parse_string(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key}={value!r} must be a non-empty string")
    return value


def parse_url(key: str, value: Any) -> str:
    text = parse_string(key, value)
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"{key}={value!r} is not an http(s) URL; use for example https://minihost.example.com"
        )
    if parts.query or parts.fragment:
        raise ConfigError(f"{key}={value!r} must not carry a query or fragment")
    return text.rstrip("/")


_REDIS_SCHEMES = ("redis", "rediss", "unix")
_REDIS_EXAMPLE = "redis://127.0.0.1:6379/0, rediss://:password@host:6380/0 or unix:///run/redis.sock"


def parse_redis_url(key: str, value: Any) -> str | None:
    """A Redis URL as redis-py's ``from_url`` reads it, or None (unset, or empty).

    Checked here rather than when Redis is first used, so a typo stops start-up
    instead of quietly leaving every process to count on its own. Messages never
    repeat the URL's password.
    """
    text = parse_optional_string(key, value)
    if text is None:
        return None
    text = text.strip()
    parts = urlsplit(text)
    problem = None
    if parts.scheme not in _REDIS_SCHEMES:
        problem = "is not a Redis URL"
    elif parts.scheme == "unix":
        if not parts.path:
            problem = "names no socket path"
    else:
        try:
            port_ok = parts.port is None or parts.port > 0
        except ValueError:
            port_ok = False
        database = parts.path.lstrip("/")
        if not parts.hostname or not port_ok:
            problem = "names no usable host and port"
        elif database and not (database.isascii() and database.isdigit()):
            problem = "has a database that is not a number"
    if problem:
        shown = text.replace(f":{parts.password}@", ":***@") if parts.password else text
        raise ConfigError(f"{key}={shown!r} {problem}; use for example {_REDIS_EXAMPLE}")
    return text


def parse_database_url(key: str, value: Any) -> str:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    text = parse_string(key, value)
    try:
        make_url(text)
    except ArgumentError:
        raise ConfigError(
            f"{key}={value!r} is not a database URL; use sqlite:///path/to/minihost.db "
            "or postgresql+psycopg://user@host/dbname"
        ) from None
    return text


def parse_string_list(key: str, value: Any) -> list[str]:
    """A list of strings: a real list, a JSON array, or ``os.pathsep``-separated text."""
    if isinstance(value, str):
        stripped = value.strip()
        if stripped.startswith("["):
            try:
                value = json.loads(stripped)
            except ValueError:
                raise ConfigError(f"{key}={value!r} is not a valid JSON array of strings") from None
        else:
            value = [part for part in stripped.split(os.pathsep) if part]
    if isinstance(value, tuple):
        value = list(value)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(
            f"{key}={value!r} is not a list of strings; use a list such as "
            f'["/srv/a", "/srv/b"] or a {os.pathsep!r}-separated string'
        )
    return value


BROKER_SCHEMES = ("redis", "rediss", "amqp", "amqps", "pyamqp")


def parse_celery_broker_url(key: str, value: Any) -> str | None:
    """A Redis or RabbitMQ URL for Celery, or None (attempts run in the host
    processes). Messages never repeat it: it carries a password."""
    text = parse_optional_string(key, value)
    if text is None:
        return None
    text = text.strip()
    parts = urlsplit(text)
    example = "redis://127.0.0.1:6379/0 or amqp://guest:guest@127.0.0.1:5672//"
    if parts.scheme not in BROKER_SCHEMES:
        raise ConfigError(f"{key} is not a Redis or RabbitMQ URL (its scheme is "
                          f"{parts.scheme or 'missing'!r}); use for example {example}")
    if not parts.hostname:
        raise ConfigError(f"{key} names no broker host; use for example {example}")
    return text


def parse_queue_name(key: str, value: Any) -> str:
    """A queue name both brokers accept (letters, digits, ``.-_:``)."""
    text = parse_string(key, value).strip()
    if not (0 < len(text) <= 200) or not all(c.isascii() and (c.isalnum() or c in ".-_:")
                                               for c in text):
        raise ConfigError(f"{key}={value!r} is not a queue name; use letters, digits and "
                          ". - _ : (for example minihost or minihost-staging)")
    return text


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("text", "json")


def parse_log_level(key: str, value: Any) -> str:
    """A level name of the logging module, in any case."""
    if isinstance(value, str) and value.strip().upper() in LOG_LEVELS:
        return value.strip().upper()
    raise ConfigError(f"{key}={value!r} is not a log level; use one of {', '.join(LOG_LEVELS)}")


def parse_log_format(key: str, value: Any) -> str:
    if isinstance(value, str) and value.strip().lower() in LOG_FORMATS:
        return value.strip().lower()
    raise ConfigError(f"{key}={value!r} is not a log format; use text or json")


_SETTINGS_EXAMPLE = '{"audit_jsonl": {"path": "/var/log/minihost/audit.jsonl"}}'


def parse_plugin_settings(key: str, value: Any) -> dict[str, dict[str, Any]]:
    """Each plugin's own settings, by plugin name: a dict of dicts (JSON in the
    environment)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise ConfigError(f"{key} is not valid JSON; give an object such as "
                              f"{_SETTINGS_EXAMPLE}") from None
    if not isinstance(value, dict) or not all(
        isinstance(name, str) and isinstance(settings, dict) for name, settings in value.items()
    ):
        raise ConfigError(f"{key} must map plugin names to objects of settings, such as "
                          f"{_SETTINGS_EXAMPLE}")
    return value


def parse_vault_keys(key: str, value: Any) -> list[str]:
    from cryptography.fernet import Fernet

    keys = parse_string_list(key, value)
    for item in keys:
        try:
            Fernet(item.encode())
        except (ValueError, TypeError):
            raise ConfigError(
                f"{key} holds a value that is not a Fernet key (32 url-safe base64 bytes); "
                "generate one with `minihost init` or Fernet.generate_key()"
            ) from None
    return keys


def bundled_folder(name: str) -> Path:
    """The bundled ``miniapps`` or ``plugins`` folder.

    Both stay at the repository's top level; setup.py ships them in the wheel as
    the data-only package ``minihost_bundled``, and an editable install maps that
    name onto the checkout. Looking the name up therefore finds site-packages in an
    installed host and the repository in a development one, with no guessing from
    where ``host/`` happens to sit.
    """
    try:
        spec = importlib.util.find_spec(f"minihost_bundled.{name}")
    except ModuleNotFoundError:
        spec = None
    for location in (spec.submodule_search_locations or ()) if spec else ():
        if Path(location).is_dir():
            return Path(location)
    raise ConfigError(
        f"the bundled {name} folder is not installed; reinstall Minihost "
        "(pip install minihost, or pip install -e . in a checkout)"
    )


@dataclass(frozen=True, slots=True)
class Key:
    parse: Callable[[str, Any], Any]
    default: Callable[[Path], Any]


KEYS: Mapping[str, Key] = {
    "DATABASE_URL": Key(parse_database_url, lambda inst: f"sqlite:///{inst / 'minihost.db'}"),
    "SECRET_KEY": Key(parse_optional_string, lambda inst: None),
    "VAULT_KEYS": Key(parse_vault_keys, lambda inst: []),
    "PUBLIC_URL": Key(parse_url, lambda inst: "http://127.0.0.1:5000"),
    "MINIAPPS_DIRS": Key(parse_string_list, lambda inst: [str(bundled_folder("miniapps"))]),
    "PLUGINS_DIRS": Key(parse_string_list, lambda inst: [str(bundled_folder("plugins"))]),
    "DISABLED_PLUGINS": Key(parse_string_list, lambda inst: []),
    "EGRESS_ALLOW_PRIVATE": Key(parse_bool, lambda inst: False),
    "SANDBOX": Key(parse_bool, lambda inst: False),
    "ACTION_TIMEOUT": Key(parse_positive_number, lambda inst: 60),
    "CELERY_BROKER_URL": Key(parse_celery_broker_url, lambda inst: None),
    "CELERY_QUEUE": Key(parse_queue_name, lambda inst: "minihost"),
    "API_RATE_LIMIT": Key(parse_count, lambda inst: 600),
    "REDIS_URL": Key(parse_redis_url, lambda inst: None),
    "RUN_RETENTION_DAYS": Key(parse_days, lambda inst: 90),
    "FLOW_WORKERS": Key(parse_count, lambda inst: 4),
    "FLOW_TIMEOUT": Key(parse_positive_number, lambda inst: 3000),
    "FLOW_RUN_RETENTION_DAYS": Key(parse_days, lambda inst: 30),
    "PLUGIN_SETTINGS": Key(parse_plugin_settings, lambda inst: {}),
    "LOG_LEVEL": Key(parse_log_level, lambda inst: "INFO"),
    "LOG_FORMAT": Key(parse_log_format, lambda inst: "text"),
}

# Flask's own keys a deployment may legitimately set in minihost.cfg.
FLASK_KEYS = frozenset(
    {
        "SERVER_NAME",
        "SESSION_COOKIE_SECURE",
        "SESSION_COOKIE_NAME",
        "PREFERRED_URL_SCHEME",
        "MAX_CONTENT_LENGTH",
        "TESTING",
        "DEBUG",
    }
)


def default_instance_path() -> Path:
    """``MINIHOST_INSTANCE_PATH`` when set, else ``instance/`` in the working directory.

    Never beside the package: an installed package sits in site-packages, which is
    neither the operator's nor, often, writable."""
    env = os.environ.get(f"{ENV_PREFIX}_INSTANCE_PATH")
    return Path(env or "instance").resolve()


def _suggest(name: str) -> str:
    close = difflib.get_close_matches(name, [*KEYS, *FLASK_KEYS], n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


def _read_config_file(path: Path) -> dict[str, Any]:
    """Run ``minihost.cfg`` (Python syntax, like any Flask config file) and check its keys."""
    try:
        source = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        raise ConfigError(
            f"cannot read {path}: {reason}; check that the file is readable"
        ) from None
    namespace: dict[str, Any] = {"__file__": str(path)}
    try:
        exec(compile(source, str(path), "exec"), namespace)
    except Exception as error:  # the file is operator code; any failure is a config error
        raise ConfigError(f"{path} could not be loaded: {error}; fix the file's syntax") from None
    values = {name: value for name, value in namespace.items() if name.isupper()}
    for name in values:
        if name not in KEYS and name not in FLASK_KEYS:
            raise ConfigError(f"{path}: unknown key {name}{_suggest(name)}")
    return values


def _read_environment() -> dict[str, Any]:
    holder = Config(".")
    holder.from_prefixed_env(ENV_PREFIX)
    return {name: holder[name] for name in holder if name in KEYS}


def _read_generated(instance: Path, name: str) -> str | None:
    path = instance / name
    try:
        return path.read_text().strip() or None
    except FileNotFoundError:
        return None
    except NotADirectoryError as error:
        raise ConfigError(
            f"the instance folder {instance} is not a usable folder ({error.strerror}); "
            "choose another with --instance PATH or MINIHOST_INSTANCE_PATH"
        ) from None
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error.strerror}; check its permissions") from None


def load_config(app: Flask, overrides: Mapping[str, Any] | None = None) -> None:
    """Fill ``app.config``: defaults < generated keys < minihost.cfg < env < overrides.

    ``overrides`` is what ``create_app(config)`` was given (tests, embedding).
    """
    instance = Path(app.instance_path)
    merged: dict[str, Any] = {name: key.default(instance) for name, key in KEYS.items()}
    secret = _read_generated(instance, SECRET_KEY_FILE)
    if secret:
        merged["SECRET_KEY"] = secret
    vault = _read_generated(instance, VAULT_KEYS_FILE)
    if vault:
        merged["VAULT_KEYS"] = vault.split()
    cfg_path = instance / CONFIG_FILE
    if cfg_path.exists():
        merged.update(_read_config_file(cfg_path))
    merged.update(_read_environment())
    if overrides:
        merged.update(overrides)
    for name, key in KEYS.items():
        merged[name] = key.parse(name, merged[name])
    app.config.update(merged)


def init_app(app: Flask, overrides: Mapping[str, Any] | None = None) -> None:
    load_config(app, overrides)
