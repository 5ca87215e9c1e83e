"""Shared fixtures: a real SQLite file per test, PostgreSQL when configured.

``MINIHOST_TEST_POSTGRES_URL`` (for example
``postgresql+psycopg://postgres@127.0.0.1:5432/test``) turns on the PostgreSQL
variants: the session creates its own uniquely named database there and drops
it at the end. Without it those variants are skipped.

``MINIHOST_TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/0``) is the Redis
for shared rate limits; tests that need it are skipped when it does not answer
(failed in CI). That Redis may be shared, so each test keeps its keys under a
prefix of its own (``redis_prefix``) and deletes them afterwards.
"""

from __future__ import annotations

import functools
import json
import os
import secrets
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from host import create_app, executor
from host.services import instance as instance_service

FIXTURES = Path(__file__).resolve().parent / "fixtures"
REPO = Path(__file__).resolve().parent.parent
POSTGRES_ENV = "MINIHOST_TEST_POSTGRES_URL"
REDIS_ENV = "MINIHOST_TEST_REDIS_URL"
DEFAULT_TEST_REDIS = "redis://127.0.0.1:6379/0"


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


@pytest.fixture(scope="session")
def redis_url() -> str:
    """A Redis that answers: ``MINIHOST_TEST_REDIS_URL``, else a local one."""
    import redis

    url = os.environ.get(REDIS_ENV) or DEFAULT_TEST_REDIS
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        client.ping()
    except redis.RedisError as error:
        if os.environ.get("CI") or os.environ.get(REDIS_ENV):
            pytest.fail(f"Redis at {url} does not answer: {error}")
        pytest.skip(f"no Redis answers at {url} (set {REDIS_ENV})")
    finally:
        client.close()
    return url


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A rate-limit key prefix (``RATELIMIT_KEY_PREFIX``) no one else uses; its keys
    are deleted afterwards."""
    import redis

    prefix = f"minihost-test-{secrets.token_hex(6)}"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"*/{prefix}/*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each database test runs on a SQLite file and, when configured, on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'minihost.db'}"
        return
    url = request.getfixturevalue("postgres_url")
    yield url
    empty_schema(url)


def empty_schema(url: str) -> None:
    """Leave the next test on this PostgreSQL database an empty schema."""
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()


@dataclass
class Received:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Provider:
    host: str
    port: int = 0
    routes: dict[str, Callable[[Request], Response]] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def address(self) -> str:
        """``host:port``, as an ``allowedHosts`` entry names this server."""
        return f"{self.host}:{self.port}"

    def route(self, path: str, handler: Callable[[Request], Response] | None = None,
              **response) -> None:
        self.routes[path] = handler or (lambda request: Response(**response))

    def json(self, path: str, body: str, status: int = 200, **headers) -> None:
        self.routes[path] = lambda request: Response(body, status=status, headers=headers,
                                                     mimetype="application/json")

    def app(self, environ, start_response):
        request = Request(environ)
        self.received.append(Received(
            request.method, request.path, request.query_string.decode(),
            dict(request.headers), request.get_data()))
        handler = self.routes.get(request.path)
        if handler is None:
            response = Response("not found", status=404)
        else:
            response = handler(request)
        return response(environ, start_response)


def serve(host: str) -> Iterator[Provider]:
    provider = Provider(host)
    server = make_server(host, 0, provider.app, threaded=True)
    provider.port = server.server_port
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield provider
    finally:
        server.shutdown()
        thread.join(timeout=5)


@pytest.fixture
def provider() -> Iterator[Provider]:
    yield from serve("127.0.0.1")


REPO = Path(__file__).resolve().parents[1]


@functools.cache
def bundled_auth_types() -> dict[str, Any]:
    """The auth types a default host knows: built-in, and those of the bundled plugins
    (``jwt_bearer``), for loading bundled manifests outside an app."""
    from host.manifest import BUILTIN_AUTH_TYPES
    from host.plugins import make_plugins

    plugins = make_plugins([str(REPO / "plugins")], [])
    contributed = {kind.name: kind for _, kinds in plugins.call_each("auth_types", config={})
                   for kind in kinds or ()}
    return {**dict.fromkeys(BUILTIN_AUTH_TYPES), **contributed}


def make_config(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "TESTING": True,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'minihost.db'}",
        "SECRET_KEY": "test-secret",
        "VAULT_KEYS": [Fernet.generate_key().decode()],
        "MINIAPPS_DIRS": [str(FIXTURES / "miniapps")],
        "PLUGINS_DIRS": [],
        # No background purge thread: one outliving its test would open connections
        # after the test disposed the engine (tests of retention turn it on).
        "RUN_RETENTION_DAYS": 0,
    }
    config.update(overrides)
    return config


def many_miniapps(target: Path, copies: int) -> Path:
    """The fixture mini-apps and ``copies`` more of weather (``weather-01``, "Weather
    01", …) in ``target``: a catalog of several marketplace pages."""
    shutil.copytree(FIXTURES / "miniapps", target)
    source = target / "weather"
    for index in range(1, copies + 1):
        folder = target / f"weather-{index:02d}"
        shutil.copytree(source, folder)
        doc = json.loads((source / "manifest.json").read_text())
        doc.update(name=folder.name, title=f"Weather {index:02d}")
        (folder / "manifest.json").write_text(json.dumps(doc))
    return target


@pytest.fixture
def many_app(tmp_path: Path) -> Iterator[Flask]:
    """An initialised app whose catalog has 32 mini-apps: two marketplace pages."""
    folder = many_miniapps(tmp_path / "miniapps", 29)
    application = create_app(make_config(tmp_path, MINIAPPS_DIRS=[str(folder)]),
                             instance_path=tmp_path)
    instance_service.init(application)
    yield application
    application.extensions["minihost.db"].engine.dispose()


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    """An initialised app on a SQLite file, with the fixture mini-apps."""
    application = create_app(make_config(tmp_path), instance_path=tmp_path)
    instance_service.init(application)
    yield application
    executor.stop(application)
    application.extensions["minihost.db"].engine.dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask) -> FlaskCliRunner:
    return app.test_cli_runner()


# -- a host with mini-apps that talk to a live local provider ---------------------------


def local_manifests(base: str, port: int) -> dict[str, dict]:
    """Mini-apps whose requests go to ``base`` (a test server on 127.0.0.1)."""
    hosts = [f"127.0.0.1:{port}"]
    return {
        "keyed": {
            "name": "keyed", "version": "1.0.0", "title": "Keyed Service",
            "description": "An API-key service on a local test server.",
            "categories": ["testing"], "allowedHosts": hosts,
            "auth": {
                "type": "apiKey",
                "fields": {"type": "object", "required": ["apiKey"], "properties": {
                    "apiKey": {"type": "string", "title": "API key", "minLength": 8}}},
                "test": {"url": base + "/me", "method": "GET",
                         "headers": {"X-Api-Key": "[[apiKey]]"},
                         "expect": {"error": "$.message"},
                         "mapping": {"account": "$.name"}},
                "unregistrationRequests": [{"url": base + "/hooks/[[hookId]]",
                                            "method": "DELETE",
                                            "headers": {"X-Api-Key": "[[apiKey]]"}}],
                "registrationRequests": [{"url": base + "/hooks", "method": "POST",
                                          "headers": {"X-Api-Key": "[[apiKey]]"},
                                          "body": {"url": "{{webhookUrl}}"},
                                          "mapping": {"hookId": "$.id"}}],
            },
            "actions": [{"name": "echo", "title": "Echo", "parameters": {
                "type": "object", "properties": {"text": {"type": "string"}}},
                "requests": [{"url": base + "/echo", "method": "POST",
                              "headers": {"X-Api-Key": "[[apiKey]]"},
                              "body": {"text": "{{text}}"}, "mapping": {"echo": "$.text"}}]}],
        },
        "basicapp": {
            "name": "basicapp", "version": "1.0.0", "title": "Basic Service",
            "description": "A username and password service.", "allowedHosts": hosts,
            "auth": {"type": "basic",
                     "test": {"url": base + "/basic", "method": "GET",
                              "headers": {"Authorization": "[[basicAuth]]"}}},
        },
        "board": {
            "name": "board", "version": "1.0.0", "title": "Board",
            "description": "Cards on boards, with dependent dropdowns.", "allowedHosts": hosts,
            "sources": {
                "rpc_boards": {"requests": [{"url": base + "/boards", "method": "GET"}],
                               "options": {"items": "$.boards[*]", "value": "$",
                                           "label": "$.name"}, "cacheSeconds": 60},
                "rpc_lists": {"requests": [{"url": base + "/boards/{{board.id}}/lists",
                                            "method": "GET"}],
                              "options": {"items": "$[*]", "value": "$.id", "label": "$.name"},
                              "dependsOn": ["board"]},
                "rpc_columns": {"requests": [{"url": base + "/columns", "method": "GET",
                                              "expect": {"error": "$.message"}}],
                                "options": {"items": "$[*]", "value": "$", "label": "$"}},
            },
            "dataSources": {"boards": {
                "title": "Boards", "list": {"url": base + "/boards", "method": "GET"},
                "items": "$.boards[*]", "id": "$.id"}},
            "actions": [{
                "name": "addCard", "title": "Add card", "description": "Add a card to a list.",
                "parameters": {
                    "type": "object", "required": ["board", "list", "title"],
                    "properties": {
                        "board": {"type": "object", "title": "Board", "x-source": "rpc_boards"},
                        "list": {"type": "string", "title": "List", "x-source": "rpc_lists"},
                        "title": {"type": "string", "title": "Title", "minLength": 1},
                        "priority": {"type": "integer", "enum": [1, 2, 3], "default": 2},
                        "urgent": {"type": "boolean", "title": "Urgent"},
                        "tags": {"type": "array", "items": {"type": "string"}},
                        "estimate": {"type": "number", "minimum": 0},
                        "details": {"type": "object", "title": "Details", "properties": {
                            "notes": {"type": "string", "x-widget": "textarea"},
                            "points": {"type": "integer"}}},
                        "column": {"type": "string", "title": "Column",
                                   "x-source": "rpc_columns", "x-fallback": "input"},
                    }},
                "requests": [{
                    "url": base + "/boards/{{board.id}}/lists/{{list}}/cards", "method": "POST",
                    "body": {"title": "{{title}}", "priority": "{{priority}}",
                             "urgent": "{{urgent}}", "tags": "{{tags}}",
                             "estimate": "{{estimate}}", "details": "{{details}}",
                             "column": "{{column}}", "owner": "{{board.owner.login}}"},
                    "mapping": {"cardId": "$.id", "url": "$.url"}}],
            }],
        },
        "open": {
            "name": "open", "version": "1.0.0", "title": "Open Data",
            "description": "Needs no account.", "allowedHosts": hosts,
            "actions": [{"name": "ping", "title": "Ping",
                         "requests": [{"url": base + "/ping", "method": "GET"}]}],
        },
    }


@dataclass
class Hosted:
    """An initialised host, its provider, and two people in separate workspaces."""

    app: Flask
    provider: Provider
    alice: Any
    bob: Any
    alice_token: str
    bob_token: str
    admin_token: str

    def api(self, method: str, path: str, token: str | None = None, **kwargs: Any) -> Any:
        client = self.app.test_client()
        headers = kwargs.pop("headers", {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return client.open(path, method=method, headers=headers, **kwargs)

    def login(self, client: FlaskClient, email: str, password: str = "correct horse") -> Any:
        page = client.get("/login")
        token = csrf_from(page.get_data(as_text=True))
        return client.post("/login", data={"email": email, "password": password,
                                           "csrf_token": token})


def csrf_from(html: str) -> str:
    import re

    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF token on the page"
    return match.group(1)


def good_provider(provider: Provider) -> None:
    """The provider's answers for the local mini-apps."""
    import json as _json

    def me(request: Request) -> Response:
        if request.headers.get("X-Api-Key") == "key-good-123":
            return Response('{"name": "Alice Corp"}', mimetype="application/json")
        return Response('{"message": "Invalid API key"}', status=401,
                        mimetype="application/json")

    def basic(request: Request) -> Response:
        auth = request.authorization
        if auth and auth.username == "ada" and auth.password == "s3cret-pw":
            return Response("{}", mimetype="application/json")
        return Response('{"error": "bad login"}', status=401, mimetype="application/json")

    provider.route("/me", me)
    provider.route("/basic", basic)
    provider.json("/hooks", '{"id": "hook-42"}', status=201)
    provider.route("/hooks/hook-42", lambda r: Response(status=204))
    provider.route("/echo", lambda r: Response(_json.dumps({"text": r.get_json()["text"]}),
                                               mimetype="application/json"))
    provider.json("/ping", '{"pong": true}')
    provider.json("/boards", _json.dumps({"boards": [
        {"id": "b1", "name": "Roadmap", "owner": {"login": "ada"}},
        {"id": "b2", "name": "Bugs", "owner": {"login": "bob"}}]}))
    provider.json("/boards/b1/lists", '[{"id": "l1", "name": "Now"}, {"id": "l2", "name": "Next"}]')
    provider.json("/boards/b2/lists",
                  '[{"id": "l3", "name": "Triage"}, {"id": "l1", "name": "Now"}]')
    provider.json("/columns", '{"message": "columns are down for maintenance"}', status=500)
    provider.route("/boards/b1/lists/l1/cards", lambda r: Response(
        _json.dumps({"id": "card-7", "url": "https://board.example/card-7",
                     "echo": r.get_json()}), status=201, mimetype="application/json"))


def build_hosted(tmp_path: Path, provider: Provider, *, manifests: dict[str, dict] | None = None,
                 **config: Any) -> Hosted:
    """An initialised host on ``provider`` with the local mini-apps (plus
    ``manifests``) and two people; ``config`` overrides settings (plugins, say)."""
    import json as _json

    from host.db import get_database
    from host.services import accounts

    apps = tmp_path / "apps"
    documents = {**local_manifests(provider.base, provider.port), **(manifests or {})}
    for name, doc in documents.items():
        (apps / name).mkdir(parents=True)
        (apps / name / "manifest.json").write_text(_json.dumps(doc))
    good_provider(provider)
    app = create_app(make_config(tmp_path, **{"MINIAPPS_DIRS": [str(apps)],
                                              "EGRESS_ALLOW_PRIVATE": True,
                                              "ACTION_TIMEOUT": 2, **config}),
                     instance_path=tmp_path)
    instance_service.init(app)
    with get_database(app).transaction() as db:
        alice = accounts.create_user(db, "alice@example.com", "correct horse")
        bob = accounts.create_user(db, "bob@example.com", "correct horse")
        admin = accounts.create_user(db, "ops@example.com", "correct horse", admin=True)
        _, alice_token = accounts.create_token(db, alice, "test", "test")
        _, bob_token = accounts.create_token(db, bob, "test", "test")
        _, admin_token = accounts.create_token(db, admin, "test", "test")
    return Hosted(app, provider, alice, bob, alice_token, bob_token, admin_token)


@pytest.fixture
def hosted(tmp_path: Path, provider: Provider) -> Iterator[Hosted]:
    from host.db import get_database

    built = build_hosted(tmp_path, provider)
    yield built
    executor.stop(built.app)
    get_database(built.app).engine.dispose()
