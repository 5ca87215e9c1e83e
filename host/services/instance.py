"""Setting up an instance folder: keys, database schema and catalog (``minihost init``)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography.fernet import Fernet
from flask import Flask
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from .. import migrations, vault
from ..config import SECRET_KEY_FILE, VAULT_KEYS_FILE, _read_generated
from ..db import exclusive, get_database
from ..errors import ConfigError, DatabaseUnavailable
from . import catalog


@dataclass(frozen=True, slots=True)
class InitReport:
    instance: Path
    created_keys: tuple[str, ...]
    revision: str | None
    catalog: catalog.SyncReport


def _write_secret(path: Path, value: str) -> None:
    """Create ``path`` readable by its owner only; never overwrite an existing key."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")


def ensure_folder(instance: Path) -> None:
    try:
        instance.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(
            f"cannot create the instance folder {instance}: {error.strerror}; "
            "choose a writable one with --instance PATH or MINIHOST_INSTANCE_PATH"
        ) from None
    if not os.access(instance, os.R_OK | os.W_OK | os.X_OK):
        raise ConfigError(
            f"the instance folder {instance} is not readable and writable by this user; "
            "fix its permissions or choose another with --instance PATH"
        )


def ensure_keys(app: Flask) -> list[str]:
    """Generate the Flask secret and the first vault key when none is configured.

    Keys another ``init`` wrote since this app read its configuration are taken,
    not overwritten (the caller holds the init lock)."""
    instance = Path(app.instance_path)
    created = []
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = _read_generated(instance, SECRET_KEY_FILE)
    if not app.config.get("VAULT_KEYS"):
        written = _read_generated(instance, VAULT_KEYS_FILE)
        if written:
            app.config["VAULT_KEYS"] = written.split()
            vault.watch_key_file(app)
    if not app.config.get("SECRET_KEY"):
        secret = Fernet.generate_key().decode()
        _write_secret(instance / SECRET_KEY_FILE, secret)
        app.config["SECRET_KEY"] = secret
        created.append(SECRET_KEY_FILE)
    if not app.config.get("VAULT_KEYS"):
        key = Fernet.generate_key().decode()
        _write_secret(instance / VAULT_KEYS_FILE, key)
        app.config["VAULT_KEYS"] = [key]
        created.append(VAULT_KEYS_FILE)
        vault.watch_key_file(app)
    return created


def safe_url(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def _unavailable(app: Flask, error: SQLAlchemyError) -> DatabaseUnavailable:
    reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
    return DatabaseUnavailable(
        f"cannot use the database {safe_url(app.config['DATABASE_URL'])}: {reason}; "
        "check DATABASE_URL and that the database server is running"
    )


def check_database(app: Flask) -> None:
    try:
        with get_database(app).engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError as error:
        raise _unavailable(app, error) from None


def migrate(app: Flask) -> str | None:
    engine = get_database(app).engine
    try:
        migrations.upgrade(engine)
        return migrations.current(engine)
    except SQLAlchemyError as error:
        raise _unavailable(app, error) from None


def prepare(app: Flask) -> str | None:
    """Make sure the folder exists and the schema is current (no keys needed)."""
    url = make_url(app.config["DATABASE_URL"])
    if url.get_backend_name() != "sqlite":
        check_database(app)  # before anything is created, so a bad URL changes nothing
    ensure_folder(Path(app.instance_path))
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        ensure_folder(Path(url.database).resolve().parent)
    with _locked(app, "migrate"):  # concurrent migrations would create tables twice
        return migrate(app)


@contextmanager
def _locked(app: Flask, name: str) -> Iterator[None]:
    try:
        with exclusive(app, name):
            yield
    except SQLAlchemyError as error:
        raise _unavailable(app, error) from None


def is_initialised(app: Flask) -> bool:
    """True when keys exist and the schema is at the newest revision."""
    if not app.config.get("SECRET_KEY") or not app.config.get("VAULT_KEYS"):
        return False
    try:
        return migrations.current(get_database(app).engine) == migrations.head()
    except SQLAlchemyError:
        return False


def init(app: Flask) -> InitReport:
    """Create or update the instance; safe to run any number of times."""
    instance = Path(app.instance_path)
    revision = prepare(app)
    with _locked(app, "keys"):  # two inits at once: the second finds the first one's keys
        created = ensure_keys(app)
    report = catalog.sync(app)
    return InitReport(instance, tuple(created), revision, report)
