"""A plugin's auth type, end to end: the documented example plugin's ``session``
type connects through its own form, refreshes on 401, and is checked by the lint."""

import json
from pathlib import Path

import pytest
from werkzeug.wrappers import Response

from host.db import get_database
from host.manifest import validate_document
from host.plugins import get_plugins
from host.principal import Principal
from host.services import catalog
from host.services.accounts import personal_workspace
from host.services.runs import run_action

from ..conftest import build_hosted, csrf_from

EXAMPLE = Path(__file__).parent / "example_pkg"


def sessioned(base, port):
    return {
        "name": "sessioned", "version": "1.0.0", "title": "Sessioned",
        "description": "Signs in for a session token.", "allowedHosts": [f"127.0.0.1:{port}"],
        "auth": {"type": "session", "login": {
            "url": base + "/login", "method": "POST",
            "body": {"user": "{{username}}", "password": "{{password}}"},
            "expect": {"error": "$.message"},
            "mapping": {"sessionToken": "$.token", "expiresIn": "$.expires_in"}}},
        "actions": [{"name": "whoami", "title": "Who am I", "requests": [{
            "url": base + "/whoami", "method": "GET",
            "headers": {"Authorization": "Session [[sessionToken]]"},
            "mapping": {"user": "$.user"}}]}],
    }


@pytest.fixture
def session_host(tmp_path, provider):
    issued = {"count": 0, "valid": set()}

    def login(request):
        body = request.get_json()
        if body != {"user": "ada", "password": "pw-good"}:
            return Response('{"message": "wrong username or password"}', status=401,
                            mimetype="application/json")
        issued["count"] += 1
        token = f"tok-{issued['count']}"
        issued["valid"].add(token)
        return Response(json.dumps({"token": token, "expires_in": 3600}),
                        mimetype="application/json")

    def whoami(request):
        token = request.headers.get("Authorization", "").removeprefix("Session ")
        if token not in issued["valid"]:
            return Response('{"message": "session expired"}', status=401,
                            mimetype="application/json")
        return Response(json.dumps({"user": "ada", "token": token}),
                        mimetype="application/json")

    provider.route("/login", login)
    provider.route("/whoami", whoami)
    hosted = build_hosted(tmp_path, provider, manifests={
        "sessioned": sessioned(provider.base, provider.port)}, PLUGINS_DIRS=[str(EXAMPLE)])
    hosted.issued = issued
    yield hosted
    get_database(hosted.app).engine.dispose()


def test_hook_auth_types(session_host):
    hosted = session_host
    client = hosted.app.test_client()
    hosted.login(client, "alice@example.com")
    detail = client.get("/miniapps/sessioned").get_data(as_text=True)
    assert "Username and password, for a session token" in detail
    page = client.get("/miniapps/sessioned/connect").get_data(as_text=True)
    assert '<input type="text" id="f-username" name="username"' in page
    assert '<input type="password" id="f-password" name="password"' in page

    refused = client.post("/miniapps/sessioned/connect", data={
        "username": "ada", "password": "pw-wrong", "csrf_token": csrf_from(page)})
    text = refused.get_data(as_text=True)
    assert refused.status_code == 422
    assert "Sessioned did not accept the credentials: wrong username or password" in text
    assert "pw-wrong" not in text and 'value="ada"' in text

    done = client.post("/miniapps/sessioned/connect", data={
        "username": "ada", "password": "pw-good", "csrf_token": csrf_from(text)})
    assert done.status_code == 302
    login = [r for r in hosted.provider.received if r.path == "/login"][-1]
    assert json.loads(login.body) == {"user": "ada", "password": "pw-good"}
    installed = client.get(done.headers["Location"]).get_data(as_text=True)
    assert ("<code>expiresAt</code>, <code>expiresIn</code>, <code>password</code>, "
            "<code>sessionToken</code>, <code>username</code>") in installed

    with get_database(hosted.app).sessions() as db:
        who = Principal(hosted.alice, personal_workspace(db, hosted.alice), "session:x")
        from host.services.installations import list_installations
        [installation], _ = list_installations(db, who)
        first = run_action(hosted.app, db, who, installation, "whoami", {})
        assert (first.status, first.output) == ("succeeded", {"user": "ada"})
        whoami = [r for r in hosted.provider.received if r.path == "/whoami"][-1]
        assert whoami.headers["Authorization"] == "Session tok-1"
        assert first.trace["requests"][0]["headers"]["Authorization"] == "[redacted]"

        hosted.issued["valid"].clear()  # the provider ends the session: 401, sign in again
        second = run_action(hosted.app, db, who, installation, "whoami", {})
        assert (second.status, second.output) == ("succeeded", {"user": "ada"})
        assert [r.headers.get("Authorization") for r in hosted.provider.received
                if r.path == "/whoami"][-2:] == ["Session tok-1", "Session tok-2"]
        assert second.trace["requests"][0]["refreshed"].startswith("the provider refused")


def test_the_auth_types_schema_and_credentials_are_checked_when_manifests_load(session_host):
    types = catalog.known_auth_types(session_host.app)
    doc = sessioned("https://api.example.com", 443)
    doc["allowedHosts"] = ["api.example.com"]
    assert validate_document(doc, "m.json", types) == []
    del doc["auth"]["login"]
    doc["actions"][0]["requests"][0]["headers"]["Authorization"] = "Session [[sesionToken]]"
    problems = [(p.pointer, p.message) for p in validate_document(doc, "m.json", types)]
    assert ("/auth", "'login' is a required property (auth type session)") in problems
    assert any(pointer == "/actions/0/requests/0/headers/Authorization"
               and "[[sesionToken]]" in message for pointer, message in problems)


def test_without_the_plugin_the_type_is_unknown_and_nothing_breaks(tmp_path, provider):
    hosted = build_hosted(tmp_path, provider, manifests={
        "sessioned": sessioned(provider.base, provider.port)})
    try:
        client = hosted.app.test_client()
        assert client.get("/").status_code == 200
        assert client.get("/miniapps/sessioned").status_code == 404
        problems = [p.message for p in validate_document(
            sessioned("https://a.example", 443), "m.json")]
        assert problems[0].startswith("unknown auth type 'session'")
    finally:
        get_database(hosted.app).engine.dispose()


@pytest.fixture
def odd_session(session_host, monkeypatch):
    """The example's session type, made to misbehave on demand."""
    module = get_plugins(session_host.app).manager.get_plugin("minihost_hello")
    kind = session_host.app.extensions["minihost.auth_types"]["session"]
    behaviour = {}

    def connect(flow):
        answer = module.sign_in(flow)
        return behaviour.get("connect", answer)

    def refresh(flow):
        if "refresh_raises" in behaviour:
            raise behaviour["refresh_raises"]
        return behaviour.get("refresh", module.sign_in(flow))

    object.__setattr__(kind, "connect", connect)
    object.__setattr__(kind, "refresh", refresh)
    session_host.behaviour = behaviour
    return session_host


def connect_via_api(hosted):
    return hosted.api("POST", "/api/v1/installations", hosted.alice_token, json={
        "miniapp": "sessioned", "credentials": {"username": "ada", "password": "pw-good"}})


@pytest.mark.parametrize(("answer", "problem"), [
    ("a token", "connect returned str, not a mapping of names to values"),
    ({"sessionToken": b"bytes"},
     "connect returned values that cannot be stored (Object of type bytes is not JSON "
     "serializable)"),
])
def test_an_auth_type_returning_what_cannot_be_stored_stores_nothing(odd_session, answer,
                                                                     problem):
    odd_session.behaviour["connect"] = answer
    response = connect_via_api(odd_session)
    assert response.status_code == 500
    assert response.get_json()["detail"] == (
        f"auth type session (plugin minihost_hello): {problem}; nothing was stored")
    assert odd_session.api("GET", "/api/v1/installations",
                           odd_session.alice_token).get_json()["items"] == []


def test_a_refresh_returning_junk_fails_the_run_and_frees_the_lease(odd_session):
    installation = connect_via_api(odd_session).get_json()["id"]
    odd_session.issued["valid"].clear()  # 401 → refresh
    odd_session.behaviour["refresh"] = {"sessionToken": b"bytes"}
    url = f"/api/v1/installations/{installation}/actions/whoami/runs"
    run = odd_session.api("POST", url, odd_session.alice_token, json={}).get_json()
    assert run["status"] == "failed" and run["error"]["type"] == "plugin-failed"
    del odd_session.behaviour["refresh"]  # fixed: the next run refreshes at once
    again = odd_session.api("POST", url, odd_session.alice_token, json={}).get_json()
    assert again["status"] == "succeeded", again["error"]


def test_a_refresh_the_auth_type_refuses_asks_for_a_reconnect(odd_session):
    from host.errors import FieldError, ValidationError

    installation = connect_via_api(odd_session).get_json()["id"]
    odd_session.issued["valid"].clear()
    odd_session.behaviour["refresh_raises"] = ValidationError(
        [FieldError("password", "is no longer accepted")])
    url = f"/api/v1/installations/{installation}/actions/whoami/runs"
    run = odd_session.api("POST", url, odd_session.alice_token, json={}).get_json()
    assert run["status"] == "failed"
    shown = odd_session.api("GET", f"/api/v1/installations/{installation}",
                            odd_session.alice_token).get_json()
    assert shown["status"] == "reconnect_required"
    assert shown["error"].startswith("the stored credentials can no longer be used")
