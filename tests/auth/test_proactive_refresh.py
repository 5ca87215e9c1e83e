"""Proactive token refresh (FLOWS.md §8): tokens of installations that enabled flows
use are renewed before they expire, by the timers every process runs."""

from host.db import Installation, get_database
from host.services import accounts, tokens
from host.vault import read_credentials


def api(tokened):
    with get_database(tokened.app).transaction() as db:
        row = db.get(Installation, tokened.installation_id)
        row.name = "tok"
        user = db.merge(tokened.principal.user)
        _, token = accounts.create_token(db, user, "t", "test")
    client = tokened.app.test_client()
    return lambda method, path, **kw: client.open(
        path, method=method, headers={"Authorization": f"Bearer {token}"}, **kw)


FLOW = {"key": "fetcher", "title": "Fetcher",
        "tasks": {"fetch": {"connection": "tok", "action": "fetch"}}}


def test_tokens_enabled_flows_use_are_renewed_before_they_expire(tokened):
    call = api(tokened)
    old = tokened.seed(expires_in=120)  # inside the five minutes, not yet expired
    assert tokens.refresh_due(tokened.app) == 0  # no flow uses the installation
    assert call("POST", "/api/v1/flows", json=FLOW).status_code == 201
    assert tokens.refresh_due(tokened.app) == 1
    assert tokened.server.refresh_calls == 1
    stored = read_credentials(tokened.app, tokened.row(), actor="t", reason="t")
    assert stored["accessToken"] != old["accessToken"]
    assert tokened.row().token_expires_at.timestamp() == stored["expiresAt"]
    assert tokens.refresh_due(tokened.app) == 0  # the new token lasts an hour
    assert tokened.server.refresh_calls == 1


def test_a_disabled_flow_keeps_no_token_fresh(tokened):
    call = api(tokened)
    assert call("POST", "/api/v1/flows", json=FLOW).status_code == 201
    assert call("POST", "/api/v1/flows/fetcher/disable").status_code == 200
    tokened.seed(expires_in=60)
    assert tokens.refresh_due(tokened.app) == 0
    assert tokened.server.refresh_calls == 0


def test_a_token_not_yet_due_is_read_once_per_process(tokened):
    """A short-lived token (lifetime 100 s: refreshed 10 s before it expires) is a
    candidate all its life; the timer reads it once, then waits for its moment."""
    call = api(tokened)
    assert call("POST", "/api/v1/flows", json=FLOW).status_code == 201
    credentials = tokened.seed(expires_in=90)
    with get_database(tokened.app).transaction() as db:
        row = db.get(Installation, tokened.installation_id)
        from host.vault import store_credentials
        store_credentials(tokened.app, row, {**credentials, "expiresIn": 100})
        row.row_version += 1
    reads = audit_reads(tokened)
    assert tokens.refresh_due(tokened.app) == 0
    assert tokens.refresh_due(tokened.app) == 0
    assert audit_reads(tokened) == reads + 1
    assert tokened.server.refresh_calls == 0


def audit_reads(tokened):
    from sqlalchemy import func, select

    from host.db import AuditEvent

    with get_database(tokened.app).sessions() as db:
        return db.execute(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.kind == "credentials_read")).scalar_one()
