"""OAuth connect against a real authorization server: the bundled demo provider
(authlib) served on 127.0.0.1, driven like a browser would."""

import base64
import hashlib
import html
import json
import re
import shutil
import threading
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select, update
from werkzeug.serving import make_server

from host import create_app
from host.db import Installation, OAuthState, get_database, utcnow
from host.services import accounts, clients
from host.services import instance as instance_service

from ..conftest import csrf_from, make_config

REPO = Path(__file__).resolve().parents[2]
DEMO_TASKS = REPO / "plugins" / "demo_provider" / "demo-tasks"


class Recorder:
    """WSGI middleware keeping the bodies of token requests the provider receives."""

    def __init__(self) -> None:
        self.app = None
        self.token_bodies: list[bytes] = []
        self.fail: set[str] = set()  # paths answered 500, to play a failing provider

    def __call__(self, environ, start_response):
        if environ["PATH_INFO"] in self.fail:
            start_response("500 INTERNAL SERVER ERROR", [("Content-Type", "application/json")])
            return [b'{"error": "server_error", "message": "the demo API is down"}']
        if environ["PATH_INFO"] == "/demo-provider/oauth/token":
            import io

            body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            self.token_bodies.append(body)
            environ["wsgi.input"] = io.BytesIO(body)
        return self.app(environ, start_response)


@pytest.fixture
def demo(tmp_path):
    recorder = Recorder()
    server = make_server("127.0.0.1", 0, recorder, threaded=True)
    try:
        yield from _demo(tmp_path, recorder, server)
    finally:
        server.server_close()


def _demo(tmp_path, recorder, server):
    port = server.server_port
    base = f"http://127.0.0.1:{port}"
    apps = tmp_path / "apps"
    manifest = json.loads((DEMO_TASKS / "manifest.json").read_text())
    text = json.dumps(manifest).replace("127.0.0.1:5000", f"127.0.0.1:{port}").replace(
        "localhost:5000", f"localhost:{port}")
    with_issuer = json.loads(text)
    with_issuer.update(name="demo-issuer", title="Demo with issuer")
    with_issuer["auth"]["issuer"] = f"{base}/demo-provider"
    for name, doc in (("demo-tasks", text), ("demo-issuer", json.dumps(with_issuer))):
        (apps / name).mkdir(parents=True)
        (apps / name / "manifest.json").write_text(doc)
        shutil.copy(DEMO_TASKS / "icon.svg", apps / name / "icon.svg")
    app = create_app(make_config(tmp_path, MINIAPPS_DIRS=[str(apps)], DEMO=True,
                                 EGRESS_ALLOW_PRIVATE=True, PUBLIC_URL=base,
                                 PLUGINS_DIRS=[str(REPO / "plugins")]),
                     instance_path=tmp_path)
    instance_service.init(app)
    recorder.app = app
    state = app.extensions["demo_provider"]
    with app.app_context(), get_database(app).sessions() as db:
        for name in ("demo-tasks", "demo-issuer"):
            clients.set_client(app, db, name, state["client_id"], state["client_secret"], "test")
        accounts.create_user(db, "alice@example.com", "correct horse")
        accounts.create_user(db, "bob@example.com", "correct horse")
        _, token = accounts.create_token(db, accounts.get_user(db, "alice@example.com"), "t",
                                         "test")
        db.commit()
    state["store"].ensure_client(state["client_id"], f"{base}/connect/demo-issuer/callback",
                                 "tasks:read tasks:write profile")
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    app.test_base = base
    app.test_token = token
    app.recorder = recorder
    yield app
    server.shutdown()
    thread.join(timeout=5)
    get_database(app).engine.dispose()


def signed_in(app, email="alice@example.com"):
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    client.post("/login", data={"email": email, "password": "correct horse",
                                "csrf_token": csrf_from(page)})
    return client


def local(url):
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def start(app, client, name="demo-tasks"):
    """Install from the marketplace: answers the provider's authorize URL."""
    page = client.get(f"/miniapps/{name}").get_data(as_text=True)
    response = client.post(f"/miniapps/{name}/install", data={"csrf_token": csrf_from(page)})
    assert response.status_code == 302, response.get_data(as_text=True)
    return response.headers["Location"]


def consent(client, authorize_url, decision="allow"):
    """Sign in at the provider and answer its consent page: the callback URL."""
    first = client.get(local(authorize_url))
    if first.status_code == 302:  # not signed in at the provider yet
        assert "/demo-provider/login" in first.headers["Location"]
        form_page = client.get(first.headers["Location"]).get_data(as_text=True)
        back = client.post(first.headers["Location"], data={
            "username": "demo", "password": "demo", "csrf_token": csrf_from(form_page)})
        consent_page = client.get(back.headers["Location"]).get_data(as_text=True)
    else:
        consent_page = first.get_data(as_text=True)
    assert "Allow access?" in consent_page
    answer = client.post(local(authorize_url), data={"decision": decision,
                                                     "csrf_token": csrf_from(consent_page)})
    assert answer.status_code == 302
    return answer.headers["Location"]


def installation(app):
    with get_database(app).sessions() as db:
        return db.scalars(select(Installation)).one()


def test_a_full_connect(demo):
    client = signed_in(demo)
    authorize = start(demo, client)
    query = parse_qs(urlsplit(authorize).query)
    assert installation(demo).status == "pending"
    redirect_uri = f"{demo.test_base}/connect/demo-tasks/callback"
    assert query["redirect_uri"] == [redirect_uri]
    assert query["code_challenge_method"] == ["S256"]
    assert query["client_id"] == ["minihost-demo"] and query["response_type"] == ["code"]
    assert query["scope"] == ["tasks:read tasks:write profile"]
    callback = consent(client, authorize)
    done = client.get(local(callback))
    assert done.headers["Referrer-Policy"] == "no-referrer"
    page = client.get(done.headers["Location"]).get_data(as_text=True)
    assert 'id="installation-status">active<' in page
    assert "Demo User" in page and "demo@example.com" in page
    [body] = demo.recorder.token_bodies
    form = parse_qs(body.decode())
    assert list(form) == ["grant_type", "code", "redirect_uri", "code_verifier", "client_id",
                          "client_secret"]
    assert form["redirect_uri"] == [redirect_uri]  # byte-identical to the authorize request
    assert form["code"] == parse_qs(urlsplit(callback).query)["code"]
    verifier = form["code_verifier"][0]
    assert 43 <= len(verifier) <= 128
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(
        b"=").decode()
    assert query["code_challenge"] == [challenge]
    assert verifier not in authorize and verifier not in page
    row = installation(demo)
    assert row.credential_keys == ["accessToken", "expiresAt", "expiresIn", "refreshToken",
                                   "webhookId", "webhookSecret"]  # subscribed to its events
    assert row.meta["email"] == "demo@example.com"


def test_a_connected_installation_runs_actions(demo):
    from host.services.runs import run_action

    client = signed_in(demo)
    client.get(local(consent(client, start(demo, client))))
    with get_database(demo).sessions() as db:
        row = db.scalars(select(Installation)).one()
        user = accounts.get_user(db, "alice@example.com")
        who = accounts.Principal(user, row.workspace_id, "session:x")
        project = demo.extensions["demo_provider"]["store"].one(
            "SELECT id FROM projects WHERE name = 'Home'")["id"]
        run = run_action(demo, db, who, row, "createTask",
                         {"project": project, "title": "Call the plumber"})
    assert run.status == "succeeded", run.error
    assert run.output["title"] == "Call the plumber" and run.output["done"] is False


def rejected(client, url):
    response = client.get(local(url))
    assert response.status_code == 400
    assert response.headers["Referrer-Policy"] == "no-referrer"
    return re.sub(r"\s+", " ", html.unescape(response.get_data(as_text=True)))


def test_unknown_state_changes_nothing(demo):
    client = signed_in(demo)
    callback = consent(client, start(demo, client))
    forged = callback.replace("state=", "state=x")
    assert "matches no connect started here (unknown state)" in rejected(client, forged)
    assert installation(demo).status == "pending"
    assert demo.recorder.token_bodies == []
    client.get(local(callback))  # the genuine callback still works
    assert installation(demo).status == "active"


def test_a_used_state_cannot_be_replayed(demo):
    client = signed_in(demo)
    callback = consent(client, start(demo, client))
    client.get(local(callback))
    assert "already finished (the state was used)" in rejected(client, callback)
    assert len(demo.recorder.token_bodies) == 1


def test_an_expired_state_is_refused(demo):
    client = signed_in(demo)
    callback = consent(client, start(demo, client))
    with get_database(demo).transaction() as db:
        db.execute(update(OAuthState).values(expires_at=utcnow()))
    assert "This connect expired" in rejected(client, callback)
    assert demo.recorder.token_bodies == [] and installation(demo).status == "pending"


def test_another_browser_session_cannot_finish_it(demo):
    alice = signed_in(demo)
    callback = consent(alice, start(demo, alice))
    bob = signed_in(demo, "bob@example.com")
    assert "started in another browser session" in rejected(bob, callback)
    anonymous = demo.test_client()
    assert "started in another browser session" in rejected(anonymous, callback)
    assert demo.recorder.token_bodies == []
    alice.get(local(callback))
    assert installation(demo).status == "active"


def test_an_api_started_connect_finishes_in_any_browser(demo):
    response = demo.test_client().post("/api/v1/installations", json={"miniapp": "demo-tasks"},
                                       headers={"Authorization": f"Bearer {demo.test_token}"})
    assert response.status_code == 201
    body = response.get_json()
    assert body["status"] == "pending" and body["authorizeUrl"].startswith(demo.test_base)
    browser = demo.test_client()  # no Minihost session at all
    done = browser.get(local(consent(browser, body["authorizeUrl"])))
    assert done.status_code == 302
    assert installation(demo).status == "active"


def test_the_user_denying_access_is_an_error_with_the_reason(demo):
    client = signed_in(demo)
    callback = consent(client, start(demo, client), decision="deny")
    assert "error=access_denied" in callback
    done = client.get(local(callback))
    page = client.get(done.headers["Location"]).get_data(as_text=True)
    row = installation(demo)
    assert row.status == "error"
    assert row.error.startswith("Demo Tasks answered access_denied")
    assert row.error.endswith("; connect again to retry")
    assert "Reconnect with" in page or "Connect with" in page
    assert demo.recorder.token_bodies == []


def test_hostile_error_descriptions_are_escaped(demo):
    client = signed_in(demo)
    callback = consent(client, start(demo, client))
    state = parse_qs(urlsplit(callback).query)["state"][0]
    hostile = (f"/connect/demo-tasks/callback?state={state}&error=access_denied"
               "&error_description=%3Cscript%3Ealert(1)%3C%2Fscript%3E")
    done = client.get(hostile)
    page = client.get(done.headers["Location"]).get_data(as_text=True)
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


@pytest.mark.parametrize(("extra", "message"), [
    ("", "sent back no authorization code"),
    ("&code=a&code=b", "the callback carries more than one code"),
    ("&code=" + "x" * 5000, "the authorization code is implausibly long"),
])
def test_odd_codes_are_never_sent(demo, extra, message):
    client = signed_in(demo)
    callback = consent(client, start(demo, client))
    state = parse_qs(urlsplit(callback).query)["state"][0]
    client.get(f"/connect/demo-tasks/callback?state={state}{extra}")
    assert message in installation(demo).error
    assert demo.recorder.token_bodies == []


def test_a_mismatched_issuer_is_refused(demo):
    client = signed_in(demo)
    callback = consent(client, start(demo, client, "demo-issuer"))
    evil = callback + "&iss=https%3A%2F%2Fevil.example"
    assert "not from Demo with issuer's authorization server" in rejected(client, evil)
    assert demo.recorder.token_bodies == []
    good = callback + "&iss=" + f"{demo.test_base}/demo-provider"
    client.get(local(good))
    assert installation(demo).status == "active"


def test_a_callback_for_another_miniapp_is_refused(demo):
    client = signed_in(demo)
    callback = consent(client, start(demo, client))
    other = callback.replace("/connect/demo-tasks/", "/connect/demo-issuer/")
    assert "arrived for another mini-app" in rejected(client, other)


def test_extra_parameters_never_redirect_elsewhere(demo):
    client = signed_in(demo)
    callback = consent(client, start(demo, client))
    done = client.get(local(callback) + "&next=https://evil.test&redirect=//evil.test")
    assert done.headers["Location"] == f"/installations/{installation(demo).id}"


def test_two_callbacks_at_once_exchange_the_code_once(demo):
    client = signed_in(demo)
    callback = consent(client, start(demo, client))
    cookie = client.get_cookie("session").value
    barrier = threading.Barrier(2)
    statuses = []

    def deliver():
        twin = demo.test_client()
        twin.set_cookie("session", cookie)
        barrier.wait()
        statuses.append(twin.get(local(callback)).status_code)

    threads = [threading.Thread(target=deliver) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [302, 400]
    assert len(demo.recorder.token_bodies) == 1


def test_reconnect_keeps_the_installation_id(demo):
    client = signed_in(demo)
    client.get(local(consent(client, start(demo, client))))
    first = installation(demo)
    page = client.get(f"/installations/{first.id}").get_data(as_text=True)
    assert "Reconnect with 127.0.0.1" in page
    again = client.post(f"/installations/{first.id}/connect",
                        data={"csrf_token": csrf_from(page)})
    client.get(local(consent(client, again.headers["Location"])))
    second = installation(demo)
    assert (second.id, second.status) == (first.id, "active")
    assert second.row_version > first.row_version


def test_no_operator_client_means_a_clear_error(demo):
    from host.db import AppClient

    demo.test_client().get("/healthz")  # the demo provider registers its client once
    with get_database(demo).transaction() as db:
        db.execute(AppClient.__table__.delete())
    response = demo.test_client().post(
        "/api/v1/installations", json={"miniapp": "demo-tasks"},
        headers={"Authorization": f"Bearer {demo.test_token}"})
    assert response.status_code == 400
    assert response.get_json()["detail"].startswith(
        "Demo Tasks needs the operator's OAuth client first: register an app with the provider "
        "and run `minihost clients set demo-tasks --client-id …`")
    with get_database(demo).sessions() as db:
        assert db.scalars(select(Installation)).all() == []


def test_an_authorize_url_its_settings_cannot_fill_stores_nothing(demo, tmp_path):
    from host.services import catalog

    doc = json.loads((tmp_path / "apps" / "demo-tasks" / "manifest.json").read_text())
    doc.update(name="demo-tenant", title="Demo per tenant")
    authorize = doc["auth"]["authorize"]
    authorize["url"] = authorize["url"].replace("/demo-provider/", "/{{subdomain}}/demo-provider/")
    (tmp_path / "apps" / "demo-tenant").mkdir()
    (tmp_path / "apps" / "demo-tenant" / "manifest.json").write_text(json.dumps(doc))
    shutil.copy(DEMO_TASKS / "icon.svg", tmp_path / "apps" / "demo-tenant")
    with demo.app_context():
        report = catalog.sync(demo)
    assert report.added == ("demo-tenant 1.0.0",), report.refused
    with get_database(demo).transaction() as db:
        clients.set_client(demo, db, "demo-tenant", "id", "secret", "test")
    response = demo.test_client().post(
        "/api/v1/installations", json={"miniapp": "demo-tenant"},
        headers={"Authorization": f"Bearer {demo.test_token}"})
    assert response.status_code == 422, response.get_json()
    assert "{{subdomain}}" in response.get_json()["detail"]
    with get_database(demo).sessions() as db:
        assert db.scalars(select(Installation)).all() == []
    with_subdomain = demo.test_client().post(
        "/api/v1/installations", json={"miniapp": "demo-tenant", "config": {"subdomain": "acme"}},
        headers={"Authorization": f"Bearer {demo.test_token}"})
    assert with_subdomain.status_code == 201
    assert "/acme/demo-provider/" in with_subdomain.get_json()["authorizeUrl"]


def test_the_token_exchange_trace_hides_the_code_and_the_verifier(demo):
    from host.db import Run

    client = signed_in(demo)
    authorize = start(demo, client)
    callback = consent(client, authorize)
    client.get(local(callback))
    [body] = demo.recorder.token_bodies
    form = parse_qs(body.decode())
    code, verifier = form["code"][0], form["code_verifier"][0]
    with get_database(demo).sessions() as db:
        run = db.scalars(select(Run).where(Run.name == "get_token")).one()
    shown = demo.test_client().get(f"/api/v1/runs/{run.id}", headers={
        "Authorization": f"Bearer {demo.test_token}"}).get_json()
    [entry] = shown["trace"]["requests"]
    assert entry["body"]["code"] == "[redacted]"
    assert entry["body"]["code_verifier"] == "[redacted]"
    stored = json.dumps(run.trace)
    assert code not in stored and verifier not in stored
    assert code not in json.dumps(shown) and verifier not in json.dumps(shown)
