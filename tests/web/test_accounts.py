"""Signing in, sessions, CSRF, tokens and operator pages, through the test client."""

import re

import pytest
from sqlalchemy import select

from host.db import AuditEvent, LoginSession, get_database
from host.services import accounts
from host.web.helpers import safe_next

from ..conftest import csrf_from

FAILED = "the email or password is wrong, or the account is disabled"


def test_login_and_logout(hosted):
    client = hosted.app.test_client()
    response = hosted.login(client, "alice@example.com")
    assert (response.status_code, response.headers["Location"]) == (302, "/installations")
    page = client.get("/installations")
    assert page.status_code == 200 and "alice@example.com" in page.get_data(as_text=True)
    token = csrf_from(page.get_data(as_text=True))
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    assert client.get("/installations").headers["Location"].startswith("/login?next=")


@pytest.mark.parametrize(("email", "password"), [
    ("alice@example.com", "wrong password"), ("nobody@example.com", "correct horse"),
    ("disabled@example.com", "correct horse")])
def test_every_failure_gets_the_same_answer(hosted, email, password):
    with get_database(hosted.app).transaction() as db:
        accounts.create_user(db, "disabled@example.com", "correct horse")
        accounts.disable_user(db, "disabled@example.com")
    response = hosted.login(hosted.app.test_client(), email, password)
    assert response.status_code == 401
    assert FAILED in response.get_data(as_text=True)


def test_failed_logins_are_rate_limited(hosted):
    client = hosted.app.test_client()
    for _ in range(5):
        assert hosted.login(client, "alice@example.com", "nope nope").status_code == 401
    response = hosted.login(client, "alice@example.com", "correct horse")
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "900"
    assert "too many failed sign-ins; wait 15 minutes" in response.get_data(as_text=True)
    # The account's owner reads who tried, from where, and until when it was locked.
    with get_database(hosted.app).transaction() as db:
        events = db.execute(select(AuditEvent).where(AuditEvent.kind.in_(
            ("login_failed", "login_locked"))).order_by(AuditEvent.at, AuditEvent.kind)
        ).scalars().all()
        workspace = accounts.personal_workspace(db, hosted.alice)
    assert [(e.kind, e.actor, e.workspace_id, e.detail["address"]) for e in events] == [
        *[("login_failed", "email:alice@example.com", workspace, "127.0.0.1")] * 5,
        ("login_locked", "email:alice@example.com", workspace, "127.0.0.1")]
    assert events[-1].detail["until"] > events[-1].at.isoformat(timespec="seconds")


def cookie(client):
    return client.get_cookie("session").value


def test_a_new_session_on_login_and_revoked_cookies_stay_dead(hosted):
    client = hosted.app.test_client()
    client.get("/login")
    before = cookie(client)
    hosted.login(client, "alice@example.com")
    after = cookie(client)
    assert before != after
    assert client.get("/account").status_code == 200
    page = client.get("/account").get_data(as_text=True)
    client.post("/logout", data={"csrf_token": csrf_from(page)})
    replay = hosted.app.test_client()
    replay.set_cookie("session", after)
    assert replay.get("/account").status_code == 302  # sent to sign in


def test_login_needs_a_csrf_token(hosted):
    client = hosted.app.test_client()
    client.get("/login")
    missing = client.post("/login", data={"email": "alice@example.com",
                                          "password": "correct horse"})
    assert missing.status_code == 400
    assert "The CSRF token is missing." in missing.get_data(as_text=True)
    forged = client.post("/login", data={"email": "alice@example.com",
                                         "password": "correct horse", "csrf_token": "forged"})
    assert forged.status_code == 400


def test_every_changing_form_needs_the_token(hosted):
    client = hosted.app.test_client()
    hosted.login(client, "alice@example.com")
    for path in ("/account/tokens", "/logout", "/miniapps/open/install",
                 "/admin/clients/chat"):
        assert client.post(path).status_code == 400, path


def test_cookie_flags(hosted):
    client = hosted.app.test_client()
    response = hosted.login(client, "alice@example.com")
    header = response.headers["Set-Cookie"]
    assert "HttpOnly" in header and "SameSite=Lax" in header


def test_tokens_are_shown_once_and_revocable(hosted):
    client = hosted.app.test_client()
    hosted.login(client, "alice@example.com")
    page = client.get("/account").get_data(as_text=True)
    created = client.post("/account/tokens", data={"csrf_token": csrf_from(page),
                                                   "name": "deploy"})
    assert (created.status_code, created.headers["Location"]) == (303, "/account")
    assert "mh_" not in created.headers.get("Set-Cookie", "")  # the cookie holds it sealed
    shown = client.get("/account")
    html = shown.get_data(as_text=True)
    secret = re.search(r'id="new-token">(mh_[^<]+)<', html).group(1)
    assert shown.headers["Cache-Control"] == "no-store"
    assert secret not in client.get("/account").get_data(as_text=True)  # once only
    assert hosted.api("GET", "/api/v1/installations", secret).status_code == 200
    token_id = re.search(r"<code>(tok_[^<]+)</code>", html).group(1)
    page = client.get("/account").get_data(as_text=True)
    with get_database(hosted.app).sessions() as db:
        names = [t.name for t in accounts.list_tokens(db, hosted.alice)]
    assert "deploy" in names
    client.post(f"/account/tokens/{token_id}/revoke", data={"csrf_token": csrf_from(page)})
    refused = hosted.api("GET", "/api/v1/installations", secret)
    assert refused.status_code == 401


def test_sessions_are_listed_and_revocable(hosted):
    phone, laptop = hosted.app.test_client(), hosted.app.test_client()
    hosted.login(phone, "alice@example.com")
    hosted.login(laptop, "alice@example.com")
    page = laptop.get("/account").get_data(as_text=True)
    with get_database(hosted.app).sessions() as db:
        rows = db.scalars(select(LoginSession).where(LoginSession.revoked_at.is_(None))).all()
    assert len(rows) == 2
    other = next(r.id for r in rows if r.id in page and "this browser" not in page.split(r.id)[0]
                 [-300:])
    laptop.post(f"/account/sessions/{other}/revoke", data={"csrf_token": csrf_from(page)})
    results = {phone.get("/account").status_code, laptop.get("/account").status_code}
    assert results == {200, 302}


def test_disabling_a_user_ends_sessions_and_tokens_at_once(hosted):
    client = hosted.app.test_client()
    hosted.login(client, "alice@example.com")
    with get_database(hosted.app).transaction() as db:
        accounts.disable_user(db, "alice@example.com")
    assert client.get("/account").status_code == 302
    assert hosted.api("GET", "/api/v1/installations", hosted.alice_token).status_code == 401


def test_admin_pages_answer_only_operators(hosted):
    client = hosted.app.test_client()
    assert client.get("/admin/").status_code == 302
    hosted.login(client, "alice@example.com")
    assert client.get("/admin/").status_code == 403
    operator = hosted.app.test_client()
    hosted.login(operator, "ops@example.com")
    assert operator.get("/admin/").status_code == 200
    page = operator.get("/admin/clients")
    assert page.status_code == 200
    assert "No OAuth mini-app is in the catalog." in page.get_data(as_text=True)


def test_security_headers(hosted):
    response = hosted.app.test_client().get("/")
    assert response.headers["Content-Security-Policy"].startswith("default-src 'self'")
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"


def test_next_never_leaves_the_site(hosted):
    client = hosted.app.test_client()
    page = client.get("/login?next=//evil.example/x").get_data(as_text=True)
    assert "evil.example" not in page
    response = client.post("/login", data={"email": "alice@example.com",
                                           "password": "correct horse",
                                           "csrf_token": csrf_from(page),
                                           "next": "https://evil.example/"})
    assert response.headers["Location"] == "/installations"
    tabbed = client.get("/login?next=/%09/evil.example/x").get_data(as_text=True)
    assert "evil.example" not in tabbed


@pytest.mark.parametrize("target", [
    "/\t/evil.example/x", "/\\evil.example", "/\n/evil.example", "/ /evil.example",
    "https://evil.example/", "//evil.example", "javascript:alert(1)"])
def test_next_refuses_paths_a_browser_reads_as_another_site(target):
    assert safe_next(target) is None


@pytest.mark.parametrize("target",
                         ["/installations", "/runs?status=failed", "/catalog/postmark#top"])
def test_next_keeps_local_paths(target):
    assert safe_next(target) == target
