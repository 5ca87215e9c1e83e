"""Shared fixtures: a real SQLite file per test, PostgreSQL when configured.

``MINIHOST_TEST_POSTGRES_URL`` (for example
``postgresql+psycopg://postgres@127.0.0.1:5432/test``) turns on the PostgreSQL
variants: the session creates its own uniquely named database there and drops
it at the end. Without it those variants are skipped.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from host import create_app
from host.services import instance as instance_service

FIXTURES = Path(__file__).resolve().parent / "fixtures"
REPO = Path(__file__).resolve().parent.parent
POSTGRES_ENV = "MINIHOST_TEST_POSTGRES_URL"


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped afterwards."""
    base = os.environ.get(POSTGRES_ENV)
    if not base:
        if os.environ.get("CI"):
            pytest.fail(f"{POSTGRES_ENV} must be set in CI")
        pytest.skip(f"{POSTGRES_ENV} is not set")
    url = make_url(base)
    name = f"minihost_test_{secrets.token_hex(6)}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = :name AND pid <> pg_backend_pid()"
            ), {"name": name})
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each database test runs on a SQLite file and, when configured, on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'minihost.db'}"
        return
    url = request.getfixturevalue("postgres_url")
    yield url
    # Leave the next test an empty schema.
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()


def make_config(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "TESTING": True,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'minihost.db'}",
        "SECRET_KEY": "test-secret",
        "VAULT_KEYS": [Fernet.generate_key().decode()],
        "MINIAPPS_DIRS": [str(FIXTURES / "miniapps")],
        "PLUGINS_DIRS": [],
    }
    config.update(overrides)
    return config


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    """An initialised app on a SQLite file, with the fixture mini-apps."""
    application = create_app(make_config(tmp_path), instance_path=tmp_path)
    instance_service.init(application)
    yield application
    application.extensions["minihost.db"].engine.dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask) -> FlaskCliRunner:
    return app.test_cli_runner()
