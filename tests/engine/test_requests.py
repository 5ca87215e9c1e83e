"""Requests, mapping and chains against a real HTTP server (MANIFEST §2.1–§2.4)."""

import json
import time

import pytest
from werkzeug.wrappers import Response

from host.engine import Context, run_chain
from host.errors import RenderFailed, RequestFailed

from .helpers import API_KEY_AUTH, requests_of


def run(provider, client, requests, params=(), ctx=None, persist="output", **kwargs):
    compiled = requests_of(requests, hosts=[provider.address], params=params, auth=API_KEY_AUTH)
    return run_chain(compiled, ctx or Context(), client, allowed_hosts=[provider.address],
                     deadline=time.monotonic() + 10, persist=persist, **kwargs)


def test_json_post_sends_exact_bytes(provider, client):
    provider.json("/issues", '{"id": 7, "html_url": "https://x/7"}', status=201)
    result = run(provider, client, [{
        "url": provider.base + "/issues", "method": "POST",
        "headers": {"Authorization": "Bearer [[apiKey]]", "X-Trace": "t-{{title}}"},
        "body": {"title": "{{title}}", "labels": "{{labels}}", "n": "{{n}}"},
        "mapping": {"issueId": "$.id", "url": "$.html_url", "missing": "$.nope"},
    }], params=("title", "labels", "n"), ctx=Context(
        parameters={"title": "Bug", "labels": ["a", "b"], "n": 2},
        credentials={"apiKey": "tok-123"}))
    assert result.ok, result.error
    assert result.values == {"issueId": 7, "url": "https://x/7", "missing": None}
    [received] = provider.received
    assert (received.method, received.path, received.query) == ("POST", "/issues", "")
    assert received.headers["Authorization"] == "Bearer tok-123"
    assert received.headers["X-Trace"] == "t-Bug"
    assert received.headers["Content-Type"] == "application/json"
    assert received.headers["Host"] == f"127.0.0.1:{provider.port}"
    assert received.body == b'{"title":"Bug","labels":["a","b"],"n":2}'


def test_form_and_multipart_bodies(provider, client):
    provider.json("/token", '{"access_token": "at", "expires_in": 3600}')
    provider.json("/upload", "{}")
    result = run(provider, client, [
        {"url": provider.base + "/token", "method": "POST", "bodyType": "x-www-form-urlencoded",
         "body": {"grant_type": "authorization_code", "code": "{{value}}"}},
        {"url": provider.base + "/upload", "method": "PUT", "bodyType": "formData",
         "body": {"name": "a b", "note": "{{value}}"}},
    ], params=("value",), ctx=Context(parameters={"value": "c&d=e"}))
    assert result.ok, result.error
    token, upload = provider.received
    assert token.body == b"grant_type=authorization_code&code=c%26d%3De"
    assert token.headers["Content-Type"] == "application/x-www-form-urlencoded"
    boundary = upload.headers["Content-Type"].split("boundary=")[1]
    assert upload.body == (
        f'--{boundary}\r\nContent-Disposition: form-data; name="name"\r\n\r\na b\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="note"\r\n\r\nc&d=e\r\n'
        f"--{boundary}--\r\n").encode()


def test_query_parameters_and_methods(provider, client):
    provider.json("/search", "[]")
    for method in ("GET", "DELETE", "PATCH"):
        assert run(provider, client, [{
            "url": provider.base + "/search", "method": method,
            "queryParams": {"q": "{{q}}", "limit": 5, "all": True}}],
            params=("q",), ctx=Context(parameters={"q": "a b&c"})).ok
    assert [(r.method, r.query) for r in provider.received] == [
        (m, "q=a%20b%26c&limit=5&all=true") for m in ("GET", "DELETE", "PATCH")]


def test_chain_forwards_array_and_object_mappings(provider, client):
    provider.json("/open", '{"channel": {"id": "D1"}}')
    provider.json("/post", '{"ts": "1.5", "channel": "D1"}')
    provider.json("/perma", '{"url": "https://p"}')
    result = run(provider, client, [
        {"url": provider.base + "/open", "method": "POST", "body": {"users": "{{user}}"},
         "mapping": [{"name": "dm", "value": "$.channel.id"}]},
        {"url": provider.base + "/post", "method": "POST", "body": {"channel": "{{dm}}"},
         "mapping": {"ts": "$.ts"}},
        {"url": provider.base + "/perma", "method": "GET",
         "queryParams": {"ts": "{{ts}}", "channel": "{{dm}}"}, "mapping": {"link": "$.url"}},
    ], params=("user",), ctx=Context(parameters={"user": "U1"}))
    assert result.ok, result.error
    assert result.values == {"ts": "1.5", "link": "https://p"}  # array mappings never persist
    assert provider.received[1].body == b'{"channel":"D1"}'
    assert provider.received[2].query == "ts=1.5&channel=D1"


def test_first_failure_stops_the_chain_with_the_provider_message(provider, client):
    provider.json("/first", '{"message": "Validation Failed", "errors": []}', status=422)
    provider.json("/second", "{}")
    result = run(provider, client, [
        {"url": provider.base + "/first", "method": "POST", "body": {},
         "expect": {"error": "$.message"}},
        {"url": provider.base + "/second", "method": "GET"},
    ])
    assert not result.ok
    assert isinstance(result.error, RequestFailed)
    assert str(result.error) == (
        "request /actions/0/requests/0 (POST) failed with HTTP 422: Validation Failed")
    assert (result.error.http_status, result.error.provider_message) == (422, "Validation Failed")
    assert [r.path for r in provider.received] == ["/first"]
    assert result.trace[0]["status"] == 422 and "error" in result.trace[0]


def test_expect_body_conditions_catch_ok_false(provider, client):
    provider.json("/chat.postMessage", '{"ok": false, "error": "channel_not_found"}')
    result = run(provider, client, [{
        "url": provider.base + "/chat.postMessage", "method": "POST", "body": {},
        "expect": {"status": [200], "body": {"$.ok": True}, "error": "$.error"}}])
    assert str(result.error) == (
        "request /actions/0/requests/0 (POST) failed with HTTP 200: channel_not_found")


def test_expect_status_list(provider, client):
    provider.json("/accepted", "{}", status=202)
    request = {"url": provider.base + "/accepted", "method": "POST", "body": {}}
    assert run(provider, client, [request]).ok
    refused = run(provider, client, [dict(request, expect={"status": [201]})])
    assert refused.error.http_status == 202


def test_non_json_bodies_map_at_root_and_headers_map(provider, client):
    provider.route("/text", lambda r: Response("plain answer", mimetype="text/plain",
                                               headers={"X-Request-Id": "rid-1"}))
    result = run(provider, client, [{
        "url": provider.base + "/text", "method": "GET",
        "mapping": {"all": "$", "rid": "$headers.x-request-id", "field": "$.x"}}])
    assert result.values == {"all": "plain answer", "rid": "rid-1", "field": None}


def test_html_error_pages_become_a_short_snippet(provider, client):
    provider.route("/bad", lambda r: Response("<html>" + "x" * 2000 + "</html>", status=502,
                                              mimetype="application/json"))
    result = run(provider, client, [{"url": provider.base + "/bad", "method": "POST",
                                     "body": {}}])
    message = result.error.provider_message
    assert message.startswith("<html>xxx") and len(message) == 501 and message.endswith("…")


def test_credentials_persist_with_expires_at_and_are_redacted_in_traces(provider, client):
    provider.json("/token", '{"access_token": "AT-9f8e7d", "refresh_token": "RT-1", '
                            '"expires_in": 3600}')
    result = run(provider, client, [{
        "url": provider.base + "/token", "method": "POST", "bodyType": "x-www-form-urlencoded",
        "body": {"client_secret": "[[apiKey]]"},
        "mapping": {"accessToken": "$.access_token", "refreshToken": "$.refresh_token",
                    "expiresIn": "$.expires_in", "tokenType": "$.token_type"}}],
        ctx=Context(credentials={"apiKey": "client-secret-value"}), persist="credentials",
        clock=lambda: 1_000_000)
    assert result.values == {"accessToken": "AT-9f8e7d", "refreshToken": "RT-1",
                             "expiresIn": 3600, "expiresAt": 1_003_600}
    trace = json.dumps(result.trace)
    assert "AT-9f8e7d" not in trace and "client-secret-value" not in trace
    assert result.trace[0]["mapped"]["accessToken"] == "[redacted]"
    assert result.trace[0]["body"] == {"client_secret": "[redacted]"}


def test_trace_redacts_secret_headers_urls_and_bodies(provider, client):
    provider.json("/k/key-abc/def", "{}")
    result = run(provider, client, [{
        "url": provider.base + "/k/[[apiKey]]", "method": "POST",
        "headers": {"X-Key": "k=[[apiKey]]", "X-Plain": "visible"},
        "queryParams": {"key": "[[apiKey]]"},
        "body": {"note": "the key is [[apiKey]]!", "title": "{{t}}"}}],
        params=("t",), ctx=Context(parameters={"t": "T"}, credentials={"apiKey": "key-abc/def"}))
    assert result.ok, result.error
    [entry] = result.trace
    assert entry["url"] == provider.base + "/k/[redacted]?key=[redacted]"
    assert entry["headers"]["X-Key"] == "[redacted]"
    assert entry["headers"]["X-Plain"] == "visible"
    assert entry["body"] == {"note": "the key is [redacted]!", "title": "T"}
    assert "key-abc" not in json.dumps(result.trace)


def test_render_failures_send_nothing(provider, client):
    provider.json("/x", "{}")
    result = run(provider, client, [{"url": provider.base + "/x/{{missing}}", "method": "GET"}],
                 params=("missing",))
    assert isinstance(result.error, RenderFailed)
    assert provider.received == []


def test_hooks_can_sign_and_observe(provider, client):
    provider.json("/signed", '{"ok": true}')
    seen = []

    class Signer:
        def prepare_request(self, outgoing):
            outgoing.headers.append(("X-Signature", f"sig:{outgoing.method}"))

        def response_received(self, outgoing, response):
            seen.append(response.status)

    assert run(provider, client, [{"url": provider.base + "/signed", "method": "GET"}],
               hooks=Signer()).ok
    assert provider.received[0].headers["X-Signature"] == "sig:GET"
    assert seen == [200]


def test_non_latin1_header_values_are_sent_as_utf8(provider, client):
    provider.json("/h", "{}")
    result = run(provider, client, [{"url": provider.base + "/h", "method": "GET",
                                     "headers": {"X-Name": "{{title}}"}}],
                 params=("title",), ctx=Context(parameters={"title": "café €"}))
    assert result.ok, result.error
    assert provider.received[0].headers["X-Name"].encode("latin-1") == "café €".encode()


def test_credentials_in_query_strings_never_reach_the_logs(provider, client, caplog):
    import logging

    caplog.set_level(logging.DEBUG)
    provider.json("/q", "{}")
    result = run(provider, client, [{"url": provider.base + "/q", "method": "GET",
                                     "queryParams": {"key": "[[apiKey]]"}}],
                 ctx=Context(credentials={"apiKey": "query-secret-99"}))
    assert result.ok
    engine_logs = [r.getMessage() for r in caplog.records if r.name.startswith(("urllib3",
                                                                               "host"))]
    assert not any("query-secret-99" in text for text in engine_logs)


def test_the_host_header_is_always_the_checked_host(provider, client):
    """Even a plugin adding a Host header cannot steer the request elsewhere."""
    provider.json("/h", "{}")

    class Sneaky:
        def prepare_request(self, outgoing):
            outgoing.headers.append(("Host", "internal-admin.corp"))
            outgoing.headers.append(("transfer-encoding", "chunked"))

        def response_received(self, outgoing, response):
            pass

    assert run(provider, client, [{"url": provider.base + "/h", "method": "GET"}],
               hooks=Sneaky()).ok
    received = provider.received[-1]
    assert received.headers["Host"] == f"127.0.0.1:{provider.port}"
    assert "Transfer-Encoding" not in received.headers


@pytest.mark.parametrize("lifetime", [0, -3600, "-5", 10 ** 12, "soon", True])
def test_an_unusable_token_lifetime_means_unknown_expiry(provider, client, lifetime):
    """A negative, zero or absurd ``expires_in`` would store an expiry already past (a
    refresh before every call) or centuries away: the expiry is unknown instead, the
    token is refreshed when the provider refuses it, and the trace says why."""
    import json

    provider.route("/token", lambda r: Response(json.dumps(
        {"access_token": "tok-1", "expires_in": lifetime}), mimetype="application/json"))
    result = run(provider, client, [{"url": provider.base + "/token", "method": "POST",
                                     "body": {}, "mapping": {"accessToken": "$.access_token",
                                                             "expiresIn": "$.expires_in"}}],
                 persist="credentials")
    assert result.ok
    assert result.values == {"accessToken": "tok-1", "expiresAt": None}
    assert result.trace[-1]["note"] == (
        f"expiresIn {json.dumps(lifetime)} is not a usable token lifetime; the expiry is "
        "treated as unknown and the token is refreshed when the provider refuses it")
