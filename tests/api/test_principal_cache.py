"""API tokens' callers are cached for a second: the token query runs once per token a
second, a revocation made here takes effect at once, one made elsewhere within the
second."""

from sqlalchemy import event, update

from host.db import ApiToken, get_database, utcnow
from host.services.accounts import PrincipalCache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def token_queries(hosted):
    """Counts the statements that look a token up, on the app's own engine."""
    seen = []

    def count(conn, cursor, statement, parameters, context, executemany):
        if "api_token.token_hash" in statement:
            seen.append(statement)

    event.listen(get_database(hosted.app).engine, "before_cursor_execute", count)
    return seen


def test_the_token_is_looked_up_once_a_second(hosted):
    clock = Clock()
    hosted.app.extensions["minihost.principals"] = PrincipalCache(clock=clock)
    seen = token_queries(hosted)
    for _ in range(5):
        assert hosted.api("GET", "/api/v1/installations", hosted.alice_token).status_code == 200
    assert len(seen) == 1
    clock.now += 1.0
    assert hosted.api("GET", "/api/v1/installations", hosted.alice_token).status_code == 200
    assert len(seen) == 2


def test_a_revocation_written_elsewhere_takes_effect_within_the_second(hosted):
    """Another process (the command line, another worker) revokes by writing the row:
    this process learns of it when its cached answer is a second old."""
    clock = Clock()
    hosted.app.extensions["minihost.principals"] = PrincipalCache(clock=clock)
    assert hosted.api("GET", "/api/v1/installations", hosted.alice_token).status_code == 200
    with get_database(hosted.app).transaction() as db:
        db.execute(update(ApiToken).values(revoked_at=utcnow()))
    clock.now += 0.5
    assert hosted.api("GET", "/api/v1/installations", hosted.alice_token).status_code == 200
    clock.now += 0.5
    refused = hosted.api("GET", "/api/v1/installations", hosted.alice_token)
    assert refused.status_code == 401
    assert refused.get_json()["detail"] == (
        "the API token is unknown, revoked or belongs to a disabled user")


def test_a_revocation_made_here_takes_effect_at_once(hosted):
    from host.services import accounts

    clock = Clock()
    hosted.app.extensions["minihost.principals"] = PrincipalCache(clock=clock)
    assert hosted.api("GET", "/api/v1/installations", hosted.bob_token).status_code == 200
    with get_database(hosted.app).transaction() as db:
        accounts.disable_user(db, "bob@example.com", actor="test")
    assert hosted.api("GET", "/api/v1/installations", hosted.bob_token).status_code == 401
