"""Token-authenticated API calls are rate limited per token (429 + Retry-After)."""

import logging
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis

from ..conftest import build_hosted, csrf_from

PROBLEM = "application/problem+json"


@pytest.fixture
def limited(tmp_path, provider):
    """A host whose API tokens may make 3 calls a minute, counted in memory."""
    from host.db import get_database

    built = build_hosted(tmp_path, provider, API_RATE_LIMIT=3)
    yield built
    get_database(built.app).engine.dispose()


def test_calls_over_the_limit_answer_429_with_retry_after(limited):
    for _ in range(3):
        assert limited.api("GET", "/api/v1/installations", limited.alice_token).status_code == 200
    refused = limited.api("GET", "/api/v1/installations", limited.alice_token)
    assert (refused.status_code, refused.mimetype) == (429, PROBLEM)
    # The window is 60 s from the oldest call in it: a burst waits out the minute.
    assert refused.headers["Retry-After"] == "60"
    assert refused.get_json() == {
        "type": "https://minihost.dev/problems/rate-limited", "title": "Too many requests",
        "status": 429,
        "detail": "this API token made more than 3 calls in a minute; wait 60 s (see "
                  "Retry-After) and slow down to at most 3 a minute"}
    # A refused call does nothing: a POST over the limit installs nothing.
    post = limited.api("POST", "/api/v1/installations", limited.alice_token,
                       json={"miniapp": "open"})
    assert post.status_code == 429
    assert limited.api("GET", "/api/v1/installations", limited.bob_token).get_json()["items"] == []


def test_other_tokens_sessions_and_bad_tokens_are_not_counted_against_it(limited):
    for _ in range(4):
        limited.api("GET", "/api/v1/runs", limited.alice_token)
    assert limited.api("GET", "/api/v1/runs", limited.bob_token).status_code == 200
    unknown = limited.api("GET", "/api/v1/runs", "mh_not-a-token")
    assert (unknown.status_code, unknown.get_json()["detail"]) == (
        401, "the API token is unknown, revoked or belongs to a disabled user")
    browser = limited.app.test_client()
    page = browser.get("/login").get_data(as_text=True)
    browser.post("/login", data={"email": "alice@example.com", "password": "correct horse",
                                 "csrf_token": csrf_from(page)})
    assert all(browser.get("/api/v1/runs").status_code == 200 for _ in range(5))


def test_the_catalog_stays_open_without_a_token(limited):
    client = limited.app.test_client()
    assert all(client.get("/api/v1/miniapps").status_code == 200 for _ in range(5))


def test_zero_switches_the_limit_off(tmp_path, provider):
    from host.api.ratelimit import EXTENSION
    from host.db import get_database

    unlimited = build_hosted(tmp_path, provider, API_RATE_LIMIT=0)
    try:
        assert EXTENSION not in unlimited.app.extensions
        assert all(unlimited.api("GET", "/api/v1/runs", unlimited.alice_token).status_code == 200
                   for _ in range(10))
    finally:
        get_database(unlimited.app).engine.dispose()


def test_the_default_is_600_a_minute_counted_in_memory(tmp_path):
    from limits.storage import MemoryStorage

    from host import create_app
    from host.api.ratelimit import EXTENSION

    from ..conftest import make_config

    app = create_app(make_config(tmp_path), instance_path=tmp_path)
    assert app.config["API_RATE_LIMIT"] == 600
    assert isinstance(app.extensions[EXTENSION].storage, MemoryStorage)


def test_retry_after_counts_from_the_oldest_call_in_the_window(limited):
    limited.api("GET", "/api/v1/runs", limited.alice_token)
    time.sleep(2.1)
    assert [limited.api("GET", "/api/v1/runs", limited.alice_token).status_code
            for _ in range(3)] == [200, 200, 429]
    refused = limited.api("GET", "/api/v1/runs", limited.alice_token)
    assert refused.headers["Retry-After"] == "58"


def test_an_unreachable_redis_leaves_the_api_up_counting_in_each_process(
        tmp_path, provider, caplog):
    """Fail open: a Redis outage must not become an API outage; the limit still
    holds per process, and the log says so."""
    from host.db import get_database

    from ..test_serve import free_port

    nobody = f"redis://127.0.0.1:{free_port()}/0"
    built = build_hosted(tmp_path, provider, API_RATE_LIMIT=3, REDIS_URL=nobody)
    try:
        with caplog.at_level(logging.WARNING, logger="flask-limiter"):
            started = time.monotonic()
            statuses = [built.api("GET", "/api/v1/runs", built.alice_token).status_code
                        for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        assert time.monotonic() - started < 5
        assert "Rate limit storage unreachable - falling back to in-memory storage" in caplog.text
    finally:
        get_database(built.app).engine.dispose()


@contextmanager
def redis_server(port: int, socket: Path | None = None) -> Iterator[None]:
    """A Redis of this test's own, on 127.0.0.1 (or only a unix socket), keeping
    nothing on disk."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    listen = ["--port", "0", "--unixsocket", str(socket)] if socket else [
        "--port", str(port), "--bind", "127.0.0.1"]
    server = subprocess.Popen(["redis-server", *listen, "--save", "", "--appendonly", "no"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = (redis.Redis(unix_socket_path=str(socket), socket_connect_timeout=1) if socket
                  else redis.Redis(port=port, socket_connect_timeout=1))
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except (redis.ConnectionError, FileNotFoundError):
                assert server.poll() is None and time.monotonic() < deadline
                time.sleep(0.05)
        client.close()
        yield
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_counts_go_back_to_redis_when_it_answers_again(tmp_path, provider, caplog):
    from host.db import get_database

    from ..test_serve import free_port

    port = free_port()
    client = redis.Redis(port=port, socket_connect_timeout=1)
    built = build_hosted(tmp_path, provider, API_RATE_LIMIT=100,
                         REDIS_URL=f"redis://127.0.0.1:{port}/0")

    def call() -> int:
        return built.api("GET", "/api/v1/runs", built.alice_token).status_code

    try:
        with caplog.at_level(logging.INFO, logger="flask-limiter"):
            with redis_server(port):
                assert call() == 200
                assert len(client.keys("*")) == 1
            assert call() == 200  # Redis is gone: counted in this process
            assert "falling back to in-memory storage" in caplog.text
            with redis_server(port):
                assert client.keys("*") == []
                deadline = time.monotonic() + 15
                while not client.keys("*"):  # Redis is tried again at growing intervals
                    assert time.monotonic() < deadline, "the limiter never went back to Redis"
                    assert call() == 200
                    time.sleep(0.5)
        assert "Rate limit storage recovered" in caplog.text
    finally:
        client.close()
        get_database(built.app).engine.dispose()


def test_a_unix_socket_redis_url_is_used(tmp_path, provider):
    from host.db import get_database

    socket = tmp_path / "redis.sock"
    built = build_hosted(tmp_path, provider, API_RATE_LIMIT=3, REDIS_URL=f"unix://{socket}")
    try:
        with redis_server(0, socket):
            assert built.api("GET", "/api/v1/runs", built.alice_token).status_code == 200
            client = redis.Redis(unix_socket_path=str(socket))
            try:
                assert len(client.keys("*")) == 1
            finally:
                client.close()
    finally:
        get_database(built.app).engine.dispose()
