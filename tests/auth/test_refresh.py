"""Token refresh: proactive, on 401, on refreshOn; rotation; invalid_grant; never lost."""

import time

import pytest
from sqlalchemy import select

from host.db import AuditEvent, Run, get_database
from host.errors import NotReady
from host.services.runs import run_action
from host.vault import read_credentials


def run(tokened, action="fetch"):
    with get_database(tokened.app).sessions() as db:
        from host.db import Installation

        installation = db.get(Installation, tokened.installation_id)
        return run_action(tokened.app, db, tokened.principal, installation, action, {})


def stored(tokened):
    return read_credentials(tokened.app, tokened.row(), actor="test", reason="test")


def test_a_token_about_to_expire_is_refreshed_before_the_request(tokened):
    old = tokened.seed(expires_in=60)  # inside the 5-minute margin
    result = run(tokened)
    assert result.status == "succeeded", result.error
    assert tokened.server.refresh_calls == 1
    new = stored(tokened)
    assert new["accessToken"] != old["accessToken"]
    assert new["refreshToken"] != old["refreshToken"]  # rotated and kept
    assert new["expiresAt"] > time.time() + 3000
    assert result.output == {"value": 42, "token": new["accessToken"].upper()}
    assert tokened.server.token_requests[-1] == {
        "grant_type": "refresh_token", "refresh_token": old["refreshToken"],
        "client_id": "client-1", "client_secret": "client-secret-1"}


def test_a_fresh_token_is_not_refreshed(tokened):
    tokened.seed(expires_in=3000)
    assert run(tokened).status == "succeeded"
    assert tokened.server.refresh_calls == 0


def test_short_lived_tokens_use_a_tenth_of_their_lifetime():
    from host.auth.refresh import needs_refresh

    now = 1_000_000
    assert not needs_refresh({"expiresIn": 60, "expiresAt": now + 10}, now)
    assert needs_refresh({"expiresIn": 60, "expiresAt": now + 5}, now)
    assert needs_refresh({"expiresIn": 3600, "expiresAt": now + 299}, now)
    assert not needs_refresh({"accessToken": "x"}, now)


def test_a_401_refreshes_once_and_retries(tokened):
    credentials = tokened.seed(expires_in=3000)
    tokened.server.live_access.discard(credentials["accessToken"])  # revoked early
    result = run(tokened)
    assert result.status == "succeeded", result.error
    assert tokened.server.refresh_calls == 1 and tokened.server.api_calls == 2
    first, second = result.trace["requests"]
    assert first["status"] == 401 and "refreshed" in first
    assert second["status"] == 200


def test_refresh_on_matches_an_ok_false_answer(tokened):
    credentials = tokened.seed(expires_in=3000)
    tokened.server.live_access.discard(credentials["accessToken"])
    result = run(tokened, "chat")
    assert result.status == "succeeded", result.error
    assert tokened.server.refresh_calls == 1


def test_a_second_401_is_a_failure_not_a_loop(tokened):
    tokened.seed(expires_in=3000)
    tokened.server.provider.json("/api", '{"message": "no"}', status=401)
    result = run(tokened)
    assert result.status == "failed"
    assert tokened.server.refresh_calls == 1
    assert result.error["providerStatus"] == 401
    assert result.error["providerMessage"] == "no"


def test_an_answer_without_a_refresh_token_keeps_the_old_one(tokened):
    tokened.server.rotate = False
    old = tokened.seed(expires_in=10)
    tokened.server.omit_refresh_token = True
    assert run(tokened).status == "succeeded"
    new = stored(tokened)
    assert new["refreshToken"] == old["refreshToken"]
    assert new["accessToken"] != old["accessToken"]


def test_invalid_grant_requires_a_reconnect_and_never_loops(tokened):
    tokened.seed(expires_in=10)
    tokened.server.live_refresh.clear()
    result = run(tokened)
    assert result.status == "failed"
    assert tokened.server.refresh_calls == 1
    row = tokened.row()
    assert row.status == "reconnect_required"
    assert row.error == ("the provider refused the refresh token (invalid_grant: refresh token is "
                         "invalid or was used); connect this installation again")
    with pytest.raises(NotReady) as info:
        run(tokened)
    assert str(info.value) == f"the installation cannot run actions: {row.error}"
    assert tokened.server.refresh_calls == 1
    with get_database(tokened.app).sessions() as db:
        kinds = [e.kind for e in db.scalars(select(AuditEvent))]
    assert "reconnect_required" in kinds


def test_a_token_answer_without_an_access_token_changes_nothing_stored(tokened):
    old = tokened.seed(expires_in=10)
    tokened.server.provider.json("/token", '{"token_type": "Bearer"}')
    result = run(tokened)
    assert result.status == "failed"
    row = tokened.row()
    assert row.status == "reconnect_required"
    assert row.error.startswith("the refresh answer held no access token")
    with get_database(tokened.app).sessions() as db:
        from host.db import Installation

        assert read_credentials(tokened.app, db.get(Installation, row.id), actor="t",
                                reason="t") == old


def test_runs_record_the_refresh_step(tokened):
    tokened.seed(expires_in=10)
    run(tokened)
    with get_database(tokened.app).sessions() as db:
        names = [(r.kind, r.name, r.status) for r in db.scalars(select(Run).order_by(Run.id))]
    assert names == [("auth", "refresh_token", "succeeded"), ("action", "fetch", "succeeded")]


def test_tokens_that_cannot_be_stored_are_never_used(tokened):
    """B7: the provider rotated the tokens but the write fails: fail closed."""
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    tokened.seed(expires_in=10)

    def refuse(session, flush_context, instances):
        from host.db import Installation

        if any(isinstance(o, Installation) and o.refresh_started_at is None
               and o.lease_owner is None for o in session.dirty):
            raise RuntimeError("disk full")

    event.listen(Session, "before_flush", refuse)
    try:
        result = run(tokened)
    finally:
        event.remove(Session, "before_flush", refuse)
    assert result.status == "failed"
    assert tokened.server.refresh_calls == 1 and tokened.server.api_calls == 0
    row = tokened.row()
    assert row.status == "reconnect_required"
    assert row.error.startswith("a token refresh succeeded but its tokens could not be stored")


def test_a_sibling_refresh_is_reused_instead_of_failing(tokened):
    """B4: someone stored newer tokens between our read and our refresh."""
    from host.auth import refresh

    tokened.seed(expires_in=10)
    stale_version = tokened.row().row_version
    newer = tokened.seed(expires_in=3000)  # a sibling refreshed meanwhile
    from host.services.installations import manifest_of

    with get_database(tokened.app).sessions() as db:
        manifest = manifest_of(tokened.app, db, tokened.row())
    held = refresh.refresh(tokened.app, tokened.installation_id, manifest, stale_version,
                           actor="t", deadline=time.monotonic() + 5)
    assert held.values["accessToken"] == newer["accessToken"]
    assert tokened.server.refresh_calls == 0


def test_a_reconnect_during_a_refresh_wins(tokened):
    """New tokens stored while a refresh is in flight are kept, not overwritten."""
    from werkzeug.wrappers import Response

    tokened.seed(expires_in=10)
    newer = {}

    def token_while_reconnecting(request):
        newer.update(tokened.seed(expires_in=3000))  # a reconnect lands meanwhile
        return Response('{"access_token": "from-refresh", "expires_in": 3600}',
                        mimetype="application/json")

    tokened.server.provider.route("/token", token_while_reconnecting)
    result = run(tokened)
    assert result.status == "succeeded", result.error
    row = tokened.row()
    assert (row.status, row.error) == ("active", None)
    assert stored(tokened)["accessToken"] == newer["accessToken"]


def test_a_broken_refresh_answer_keeps_the_outcome_unknown(tokened):
    """A token request that may have arrived keeps the marker, so the next attempt
    knows a refresh token may have been spent."""
    import socket

    tokened.seed(expires_in=10)

    def hang_up(request):
        sock = request.environ.get("werkzeug.socket")
        sock.shutdown(socket.SHUT_RDWR)
        sock.close()
        raise ConnectionAbortedError

    tokened.server.provider.route("/token", hang_up)
    result = run(tokened)
    assert result.status == "failed"
    assert result.error["type"] == "refresh-outcome-unknown"
    assert tokened.row().refresh_started_at is not None


def test_runs_read_the_client_secret_only_when_their_requests_use_it(tokened):
    tokened.seed(expires_in=3000)
    for _ in range(3):
        assert run(tokened).status == "succeeded"
    with get_database(tokened.app).sessions() as db:
        kinds = [e.kind for e in db.scalars(select(AuditEvent))]
    assert kinds.count("client_secret_read") == 0
    tokened.seed(expires_in=10)
    run(tokened)  # refreshing uses the secret: read (and audited) once
    with get_database(tokened.app).sessions() as db:
        kinds = [e.kind for e in db.scalars(select(AuditEvent))]
    assert kinds.count("client_secret_read") == 1


@pytest.mark.parametrize("lifetime", [-10, 0])
def test_a_refresh_with_an_unusable_lifetime_is_not_repeated(tokened, lifetime):
    """The provider answers ``expires_in`` ≤ 0: the new token's expiry is unknown (the
    old past ``expiresAt`` is cleared), so the next runs use it instead of refreshing
    before every request."""
    tokened.seed(expires_in=-5)
    tokened.server.expires_in = lifetime
    assert run(tokened).status == "succeeded"
    assert stored(tokened)["expiresAt"] is None
    for _ in range(3):
        assert run(tokened).status == "succeeded"
    assert tokened.server.refresh_calls == 1
