"""Timeouts, retries, rate limits and hostile answers (MANIFEST §2.5)."""

import gzip
import socket
import time
from urllib.parse import urlsplit

import pytest
from werkzeug.wrappers import Response

from host.engine import Context, EgressPolicy, GuardedClient, run_chain
from host.errors import ConnectFailed, RateLimited, RequestTimedOut, ResponseTooLarge

from .helpers import requests_of


def run(url, client, method="GET", budget=5.0, **request):
    spec = dict({"url": url, "method": method}, **request)
    if method in ("POST", "PUT", "PATCH") and "body" not in spec:
        spec["body"] = {}
    hosts = [urlsplit(url).netloc]
    compiled = requests_of([spec], hosts=hosts)
    return run_chain(compiled, Context(), client, allowed_hosts=hosts,
                     deadline=time.monotonic() + budget)


def statuses(*answers):
    answers = list(answers)

    def handler(request):
        status, headers = answers.pop(0) if len(answers) > 1 else answers[0]
        return Response("{}", status=status, headers=headers, mimetype="application/json")

    return handler


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_idempotent_requests_are_retried_on_503(provider, client, method):
    provider.route("/flaky", statuses((503, {}), (502, {}), (200, {})))
    result = run(provider.base + "/flaky", client, method)
    assert result.ok
    assert len(provider.received) == 3 and result.trace[0]["attempts"] == 3


@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_unsafe_requests_are_not_retried_on_503(provider, client, method):
    provider.route("/flaky", statuses((503, {}), (200, {})))
    result = run(provider.base + "/flaky", client, method)
    assert result.error.http_status == 503
    assert len(provider.received) == 1


def test_at_most_three_attempts(provider, client):
    provider.route("/down", statuses((504, {})))
    result = run(provider.base + "/down", client)
    assert result.error.http_status == 504 and len(provider.received) == 3


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_connection_refused_is_retried_even_for_post():
    slept = []
    client = GuardedClient(EgressPolicy(allow_private=True), sleep=slept.append)
    result = run(f"http://127.0.0.1:{free_port()}/x", client, "POST")
    assert isinstance(result.error, ConnectFailed)
    assert "Connection refused" in str(result.error)
    assert len(slept) == 2 and all(0 < s <= 4 for s in slept)


def test_retry_after_that_fits_is_honoured(provider):
    slept = []
    client = GuardedClient(EgressPolicy(allow_private=True), sleep=slept.append)
    provider.route("/limited", statuses((429, {"Retry-After": "2"}), (200, {})))
    result = run(provider.base + "/limited", client)
    assert result.ok and slept == [2.0]


@pytest.mark.parametrize("value", ["99999", "40"])
def test_retry_after_beyond_the_deadline_fails_at_once(provider, client, value):
    provider.route("/limited", statuses((429, {"Retry-After": value})))
    result = run(provider.base + "/limited", client)
    assert isinstance(result.error, RateLimited)
    assert str(result.error).startswith(
        f"request /actions/0/requests/0: the provider answered 429 and asks to retry after "
        f"{value} s, which does not fit the remaining")
    assert len(provider.received) == 1


def test_retry_after_as_an_http_date(provider):
    slept = []
    client = GuardedClient(EgressPolicy(allow_private=True), sleep=slept.append)
    when = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 2))
    provider.route("/limited", statuses((503, {"Retry-After": when}), (200, {})))
    assert run(provider.base + "/limited", client).ok
    assert 0 <= slept[0] <= 2.5


@pytest.fixture
def east_coast_clock(monkeypatch):
    """The host's local time is not UTC."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.parametrize("form", ["%a, %d %b %Y %H:%M:%S -0000", "%a, %d %b %Y %H:%M:%S",
                                  "%a %b %d %H:%M:%S %Y"])
def test_an_http_date_without_a_zone_is_utc(provider, east_coast_clock, form):
    slept = []
    client = GuardedClient(EgressPolicy(allow_private=True), sleep=slept.append)
    when = time.strftime(form, time.gmtime(time.time() + 2))
    provider.route("/limited", statuses((503, {"Retry-After": when}), (200, {})))
    assert run(provider.base + "/limited", client).ok
    assert 0 <= slept[0] <= 2.5


@pytest.mark.parametrize("value", ["soon", "-1", "\u00b2", "1.5"])
def test_unparseable_retry_after_uses_backoff(provider, client, value):
    provider.route("/limited", statuses((503, {"Retry-After": value}), (200, {})))
    assert run(provider.base + "/limited", client).ok


def test_post_429_is_not_retried(provider, client):
    provider.route("/limited", statuses((429, {"Retry-After": "1"}), (200, {})))
    result = run(provider.base + "/limited", client, "POST")
    assert result.error.http_status == 429 and len(provider.received) == 1


class Hangup:
    """A server that reads each whole request, counts it, then closes the connection
    without answering: the request reached it, the answer never came."""

    def __init__(self):
        import threading

        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.port = self.listener.getsockname()[1]
        self.requests = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            with connection:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = connection.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                head, _, body = data.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(body) < length:
                    body += connection.recv(65536)
                self.requests.append(head.split(b" ", 1)[0].decode())

    def close(self):
        self.listener.close()


@pytest.mark.parametrize(("method", "attempts"), [("POST", 1), ("PATCH", 1), ("GET", 3),
                                                  ("PUT", 3)])
def test_a_request_that_may_have_arrived_is_retried_only_when_idempotent(method, attempts):
    """The connection breaks after the whole request was sent: a POST may have taken
    effect, so it is sent exactly once and fails as a broken connection; idempotent
    methods are tried up to three times."""
    from host.errors import ConnectionBroken

    server = Hangup()
    try:
        client = GuardedClient(EgressPolicy(allow_private=True), sleep=lambda s: None)
        result = run(f"http://127.0.0.1:{server.port}/x", client, method)
    finally:
        server.close()
    assert isinstance(result.error, ConnectionBroken)
    assert server.requests == [method] * attempts


def test_a_silent_server_hits_the_chain_deadline():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        client = GuardedClient(EgressPolicy(allow_private=True), sleep=lambda s: None)
        started = time.monotonic()
        result = run(f"http://127.0.0.1:{listener.getsockname()[1]}/x", client, "POST",
                     budget=1.0)
        elapsed = time.monotonic() - started
    assert isinstance(result.error, RequestTimedOut)
    assert elapsed < 2.0


def test_a_trickling_server_hits_the_deadline(provider, client):
    def trickle(request):
        def stream():
            for _ in range(20):
                time.sleep(0.3)
                yield b" "
        return Response(stream(), mimetype="application/json")

    provider.route("/slow", trickle)
    started = time.monotonic()
    result = run(provider.base + "/slow", client, "POST", budget=1.0)
    assert isinstance(result.error, RequestTimedOut)
    assert time.monotonic() - started < 2.0


def test_the_request_timeout_is_capped_by_the_manifest(provider, client):
    provider.route("/slow", lambda r: time.sleep(1.5) or Response("{}"))
    result = run(provider.base + "/slow", client, "POST", timeout=0.5)
    assert isinstance(result.error, RequestTimedOut)


@pytest.fixture
def small_client():
    client = GuardedClient(EgressPolicy(allow_private=True), max_bytes=1024, sleep=lambda s: None)
    yield client
    client.transport.close()


def test_announced_oversize_answers_are_refused(provider, small_client):
    provider.route("/big", lambda r: Response("x" * 5000, mimetype="application/json"))
    result = run(provider.base + "/big", small_client)
    assert isinstance(result.error, ResponseTooLarge)
    assert "announces 5000 bytes, more than the 1024-byte limit" in str(result.error)


def test_endless_streams_are_cut_at_the_cap(provider, small_client):
    provider.route("/endless", lambda r: Response((b"x" * 512 for _ in range(10_000)),
                                                  mimetype="application/json"))
    result = run(provider.base + "/endless", small_client)
    assert isinstance(result.error, ResponseTooLarge)
    assert "the decoded answer passed the 1024-byte limit" in str(result.error)


def test_decompression_bombs_are_cut_while_decoding(provider):
    client = GuardedClient(EgressPolicy(allow_private=True), max_bytes=1024 * 1024)
    bomb = gzip.compress(b"0" * (50 * 1024 * 1024))
    provider.route("/bomb", lambda r: Response(bomb, headers={"Content-Encoding": "gzip"},
                                               mimetype="application/json"))
    result = run(provider.base + "/bomb", client)
    assert isinstance(result.error, ResponseTooLarge)
    client.transport.close()


@pytest.mark.parametrize(
    ("body", "mimetype", "expected"),
    [
        (b"<html>502 Bad Gateway</html>", "application/json", "<html>502 Bad Gateway</html>"),
        (b"", "application/json", None),
        (b"\xff\xfe bad utf8", "text/plain", "\ufffd\ufffd bad utf8"),
        (b'{"a": 1, "a": 2}', "application/json", {"a": 2}),
        (b"\xef\xbb\xbf{\"a\": 1}", "application/json", {"a": 1}),
        (b"[1, 2]", "application/json", [1, 2]),
    ],
)
def test_surprising_bodies_map_without_crashing(provider, client, body, mimetype, expected):
    provider.route("/odd", lambda r: Response(body, mimetype=mimetype))
    result = run(provider.base + "/odd", client, mapping={"all": "$", "a": "$.a"})
    assert result.ok
    assert result.values["all"] == expected


def test_expect_on_a_non_json_body_is_false_not_an_error(provider, client):
    provider.route("/odd", lambda r: Response("<html>oops</html>", mimetype="text/html"))
    result = run(provider.base + "/odd", client, expect={"body": {"$.ok": True}})
    assert result.error.http_status == 200
    assert result.error.provider_message == "<html>oops</html>"
