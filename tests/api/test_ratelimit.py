"""Token-authenticated API calls are rate limited per token (429 + Retry-After)."""

import pytest

from host.api.ratelimit import TokenBuckets

from ..conftest import csrf_from

PROBLEM = "application/problem+json"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_a_burst_then_the_limits_pace():
    clock = Clock()
    buckets = TokenBuckets(3, clock=clock)
    assert [buckets.take("t1") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("t1") == pytest.approx(20.0)  # 3 a minute: one every 20 s
    assert buckets.take("t2") == 0.0  # every token has its own bucket
    clock.now += 10
    assert buckets.take("t1") == pytest.approx(10.0)
    clock.now += 10
    assert buckets.take("t1") == 0.0
    assert buckets.take("t1") == pytest.approx(20.0)
    clock.now += 3600  # an idle hour refills to the limit, not beyond
    assert [buckets.take("t1") for _ in range(4)][-2:] == [0.0, pytest.approx(20.0)]


def test_idle_full_buckets_are_forgotten(monkeypatch):
    from host.api import ratelimit

    monkeypatch.setattr(ratelimit, "_PRUNE_AT", 3)
    clock = Clock()
    buckets = TokenBuckets(60, clock=clock)
    for key in ("a", "b", "c"):
        buckets.take(key)
    clock.now += 60
    buckets.take("d")
    assert set(buckets._buckets) == {"d"}


@pytest.fixture
def limited(hosted):
    hosted.app.extensions["minihost.api_buckets"] = TokenBuckets(3)
    return hosted


def test_calls_over_the_limit_answer_429_with_retry_after(limited):
    for _ in range(3):
        assert limited.api("GET", "/api/v1/installations", limited.alice_token).status_code == 200
    refused = limited.api("GET", "/api/v1/installations", limited.alice_token)
    assert (refused.status_code, refused.mimetype) == (429, PROBLEM)
    assert refused.headers["Retry-After"] == "20"
    assert refused.get_json() == {
        "type": "https://minihost.dev/problems/rate-limited", "title": "Too many requests",
        "status": 429,
        "detail": "this API token made more than 3 calls in a minute; wait 20 s (see "
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


def test_zero_switches_the_limit_off(tmp_path):
    from host import create_app

    from ..conftest import make_config

    app = create_app(make_config(tmp_path, API_RATE_LIMIT=0), instance_path=tmp_path)
    assert "minihost.api_buckets" not in app.extensions
    default = create_app(make_config(tmp_path / "d"), instance_path=tmp_path / "d")
    assert default.extensions["minihost.api_buckets"].capacity == 600
