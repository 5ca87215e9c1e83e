"""Inbound webhooks and events (FLOWS.md §4, §5) through the real endpoints: each
signature type checked on the raw body, timestamps, replays, handshakes, bad input
(forged, stale, oversized, not JSON, wrong content type, uninstalled), event triggers
starting flows, and internal events from the API and the CLI."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import select

from host import executor
from host.db import AuditEvent, FlowRun, InboundEvent, get_database
from host.services import events

from ..conftest import build_hosted
from .test_cli import invoke


def hooks_app(name: str, webhooks: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "version": "1.0.0", "title": name.title(),
            "description": "Sends signed events.", "auth": {"type": "none"},
            "webhooks": webhooks}


GITHUBISH = hooks_app("repohost", {
    "verify": {"type": "hmac-sha256", "header": "X-Hub-Signature-256",
               "secret": "[[webhookSecret]]", "prefix": "sha256="},
    "eventType": "$headers.X-Event", "deliveryId": "$headers.X-Delivery"})
STRIPEISH = hooks_app("payments", {
    "verify": {"type": "hmac-sha256", "header": "Payments-Signature",
               "secret": "[[webhookSecret]]", "signatureParam": "v1", "timestampParam": "t",
               "signedPayload": "{{timestamp}}.{{body}}", "toleranceSeconds": 300},
    "eventType": "$.type", "deliveryId": "$.id"})
SLACKISH = hooks_app("chat", {
    "verify": {"type": "hmac-sha256", "header": "X-Chat-Signature", "prefix": "v0=",
               "secret": "[[webhookSecret]]", "timestampHeader": "X-Chat-Timestamp",
               "signedPayload": "v0:{{timestamp}}:{{body}}"},
    "eventType": "$.event.type", "deliveryId": "$.event_id",
    "challenge": {"when": {"$.type": "url_verification"}, "respond": "$.challenge"}})
DISCORDISH = hooks_app("voice", {
    "verify": {"type": "ed25519", "header": "X-Signature-Ed25519",
               "timestampHeader": "X-Signature-Timestamp", "secret": "[[webhookSecret]]",
               "signedPayload": "{{timestamp}}{{body}}"},
    "eventType": "$.type", "deliveryId": "$.id",
    "challenge": {"when": {"$.type": 1}, "body": {"type": 1}}})
TOKENISH = hooks_app("forge", {
    "verify": {"type": "token", "header": "X-Forge-Token", "secret": "[[webhookSecret]]"},
    "eventType": "$.object_kind"})
NOTIONISH = hooks_app("pages", {
    "verify": {"type": "hmac-sha1", "header": "X-Pages-Signature", "encoding": "base64",
               "secret": "[[webhookSecret]]"},
    "eventType": "$.type",
    "challenge": {"when": {"$.kind": "verification"}, "respond": "$.token",
                  "signed": False}})
PLAIN = {"name": "plain", "version": "1.0.0", "title": "Plain", "description": "No hooks.",
         "auth": {"type": "none"}}
APPS = {doc["name"]: doc for doc in (GITHUBISH, STRIPEISH, SLACKISH, DISCORDISH, TOKENISH,
                                     NOTIONISH, PLAIN)}


class Hooks:
    def __init__(self, host) -> None:
        self.host = host
        self.client = host.app.test_client()
        self.ids: dict[str, str] = {}
        self.urls: dict[str, str] = {}
        for name in APPS:
            answer = host.api("POST", "/api/v1/installations", host.alice_token,
                              json={"miniapp": name})
            assert answer.status_code == 201, answer.get_json()
            body = answer.get_json()
            self.ids[name] = body["id"]
            self.urls[name] = body["webhookUrl"].removeprefix("http://127.0.0.1:5000")

    def secret(self, name: str) -> str:
        answer = self.host.api("GET", f"/api/v1/installations/{self.ids[name]}/webhook-secret",
                               self.host.alice_token)
        assert answer.status_code == 200
        return answer.get_json()["secret"]

    def post(self, name: str, body: bytes | str, headers: dict[str, str],
             content_type: str = "application/json"):
        data = body.encode() if isinstance(body, str) else body
        return self.client.post(self.urls[name], data=data,
                                headers={"Content-Type": content_type, **headers})

    def stored(self) -> list[InboundEvent]:
        with get_database(self.host.app).sessions() as db:
            return list(db.execute(select(InboundEvent).order_by(
                InboundEvent.received_at, InboundEvent.id)).scalars())


@pytest.fixture
def hooks(tmp_path, provider):
    built = build_hosted(tmp_path, provider, manifests=APPS, FLOW_WORKERS=2)
    yield Hooks(built)
    executor.stop(built.app)
    get_database(built.app).engine.dispose()


def sign(secret: str, payload: bytes, digest=hashlib.sha256) -> str:
    return hmac.new(secret.encode(), payload, digest).hexdigest()


def test_hmac_sha256_with_a_prefix_accepts_the_signed_body_once(hooks):
    secret = hooks.secret("repohost")
    body = b'{"action": "opened", "issue": {"number": 7}}'
    headers = {"X-Hub-Signature-256": "sha256=" + sign(secret, body), "X-Event": "issues",
               "X-Delivery": "d-1"}
    first = hooks.post("repohost", body, headers)
    assert first.status_code == 200
    event_id = first.get_json()["id"]
    replay = hooks.post("repohost", body, headers)
    assert (replay.status_code, replay.get_json()) == (200, {"id": event_id, "replay": True})
    listed = hooks.host.api("GET", f"/api/v1/events?installation={hooks.ids['repohost']}",
                            hooks.host.alice_token).get_json()["items"]
    assert [(e["id"], e["type"], e["deliveryId"], e["verified"], e["data"]) for e in listed] == [
        (event_id, "issues", "d-1", True, {"action": "opened", "issue": {"number": 7}})]


def test_a_wrong_secret_a_missing_or_malformed_signature_is_refused_and_recorded(hooks):
    body = b'{"action": "opened"}'
    cases = [({"X-Hub-Signature-256": "sha256=" + sign("not the secret", body)},
              "the signature does not match (check the webhook secret)"),
             ({}, "no x-hub-signature-256 header"),
             ({"X-Hub-Signature-256": sign(hooks.secret("repohost"), body)},
              "the x-hub-signature-256 header does not start with 'sha256='"),
             ({"X-Hub-Signature-256": "sha256=zz"},
              "the signature does not match (check the webhook secret)")]
    for headers, reason in cases:
        answer = hooks.post("repohost", body, {"X-Event": "issues", **headers})
        assert answer.status_code == 401
        assert answer.get_json()["detail"] == reason
        assert b"opened" not in answer.data  # the body is never echoed
    rejected = sorted((e.status, e.verified, e.reason, e.data) for e in hooks.stored())
    assert rejected == sorted(("rejected", False, reason, None) for _, reason in cases)


def test_a_tampered_body_fails_the_signature_of_the_original(hooks):
    secret = hooks.secret("repohost")
    signature = "sha256=" + sign(secret, b'{"amount": 1}')
    answer = hooks.post("repohost", b'{"amount": 1000}', {"X-Hub-Signature-256": signature})
    assert answer.status_code == 401


def stripe_header(secret: str, body: bytes, at: int) -> str:
    return f"t={at},v1={sign(secret, f'{at}.'.encode() + body)},v0=ignored"


def test_a_signature_with_a_timestamp_is_refused_when_stale(hooks):
    secret = hooks.secret("payments")
    body = b'{"id": "evt_1", "type": "customer.created", "data": {"object": {"id": "cus_1"}}}'
    now = int(time.time())
    fresh = hooks.post("payments", body, {"Payments-Signature": stripe_header(secret, body, now)})
    assert fresh.status_code == 200
    stale_body = body.replace(b"evt_1", b"evt_2")
    stale = hooks.post("payments", stale_body,
                       {"Payments-Signature": stripe_header(secret, stale_body, now - 400)})
    assert stale.status_code == 401
    assert stale.get_json()["detail"].startswith("the timestamp is 40")
    assert stale.get_json()["detail"].endswith("s old, more than the 300 s allowed (a replay, "
                                               "or a clock far off)")
    assert [e.type for e in hooks.stored() if e.verified] == ["customer.created"]


def test_a_signed_handshake_is_answered_after_verification(hooks):
    secret = hooks.secret("chat")
    body = json.dumps({"type": "url_verification", "challenge": "3eZbrw1a"}).encode()
    at = str(int(time.time()))
    signed = {"X-Chat-Timestamp": at,
              "X-Chat-Signature": "v0=" + sign(secret, f"v0:{at}:".encode() + body)}
    answer = hooks.post("chat", body, signed)
    assert (answer.status_code, answer.data, answer.mimetype) == (200, b"3eZbrw1a", "text/plain")
    forged = hooks.post("chat", body, {"X-Chat-Timestamp": at, "X-Chat-Signature": "v0=00"})
    assert forged.status_code == 401 and b"3eZbrw1a" not in forged.data
    assert [(e.type, e.status) for e in hooks.stored()] == [("challenge", "challenge"),
                                                            ("rejected", "rejected")]


def test_an_unsigned_handshake_is_answered_only_when_it_is_the_handshake(hooks):
    answer = hooks.post("pages", b'{"kind": "verification", "token": "secret_tok"}', {})
    assert (answer.status_code, answer.data) == (200, b"secret_tok")
    unsigned_event = hooks.post("pages", b'{"type": "page.created"}', {})
    assert unsigned_event.status_code == 401
    secret = hooks.secret("pages")
    body = b'{"type": "page.created"}'
    digest = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha1).digest()).decode()
    assert hooks.post("pages", body, {"X-Pages-Signature": digest}).status_code == 200


def test_ed25519_signatures_and_the_ping_pong(hooks):
    key = Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
    put = hooks.host.api("PUT", f"/api/v1/installations/{hooks.ids['voice']}/webhook-secret",
                         hooks.host.alice_token, json={"secret": public})
    assert put.status_code == 200
    at = str(int(time.time()))
    ping = b'{"id": "1", "type": 1}'
    headers = {"X-Signature-Timestamp": at,
               "X-Signature-Ed25519": key.sign(at.encode() + ping).hex()}
    answer = hooks.post("voice", ping, headers)
    assert (answer.status_code, answer.get_json()) == (200, {"type": 1})
    other = Ed25519PrivateKey.generate()
    forged = hooks.post("voice", ping, {"X-Signature-Timestamp": at,
                                        "X-Signature-Ed25519": other.sign(at.encode() + ping)
                                        .hex()})
    assert forged.status_code == 401
    assert forged.get_json()["detail"] == "the signature does not match (check the public key)"


def test_a_shared_token_is_compared_as_it_is(hooks):
    secret = hooks.secret("forge")
    body = b'{"object_kind": "push"}'
    assert hooks.post("forge", body, {"X-Forge-Token": secret}).status_code == 200
    assert hooks.post("forge", body, {"X-Forge-Token": secret + "x"}).status_code == 401
    # Without a delivery id, a byte-identical request is the replay.
    again = hooks.post("forge", body, {"X-Forge-Token": secret})
    assert again.get_json()["replay"] is True


def test_bad_requests_get_clear_answers_and_lose_nothing(hooks):
    secret = hooks.secret("repohost")
    text = b"not json at all"
    signed = {"X-Hub-Signature-256": "sha256=" + sign(secret, text)}
    not_json = hooks.post("repohost", text, signed)
    assert (not_json.status_code, not_json.get_json()["detail"]) == (400, "the body is not JSON")
    wrong_type = hooks.post("repohost", text, signed, content_type="text/plain")
    assert wrong_type.status_code == 415
    assert wrong_type.get_json()["detail"] == (
        "the body is text/plain; this address takes application/json or "
        "application/x-www-form-urlencoded")
    big = b'{"x": "' + b"a" * (1024 * 1024) + b'"}'
    too_big = hooks.post("repohost", big, {"X-Hub-Signature-256": "sha256=" + sign(secret, big)})
    assert too_big.status_code == 413
    wrong_token = hooks.client.post(f"/hooks/{hooks.ids['repohost']}/not-the-token", json={})
    assert wrong_token.status_code == 404
    assert wrong_token.mimetype == "application/problem+json"
    no_hooks = hooks.post("plain", b"{}", {})
    assert (no_hooks.status_code, no_hooks.get_json()["detail"]) == (
        404, "Plain receives no webhooks")
    form = hooks.post("forge", b"object_kind=push", {"X-Forge-Token": hooks.secret("forge")},
                      content_type="application/x-www-form-urlencoded")
    assert form.status_code == 200
    assert hooks.stored()[-1].data == {"object_kind": "push"}


def test_an_uninstalled_installation_answers_gone(hooks):
    url = hooks.urls["repohost"]
    secret = hooks.secret("repohost")
    deleted = hooks.host.api("DELETE", f"/api/v1/installations/{hooks.ids['repohost']}",
                             hooks.host.alice_token)
    assert deleted.status_code == 204
    body = b"{}"
    answer = hooks.client.post(url, data=body, headers={
        "Content-Type": "application/json",
        "X-Hub-Signature-256": "sha256=" + sign(secret, body)})
    assert answer.status_code == 410
    assert hooks.stored()[-1].reason == "the installation was uninstalled"


def test_the_webhook_secret_is_read_once_per_process_and_audited(hooks):
    secret = hooks.secret("repohost")
    for number in range(5):
        body = json.dumps({"n": number}).encode()
        assert hooks.post("repohost", body, {
            "X-Hub-Signature-256": "sha256=" + sign(secret, body),
            "X-Delivery": f"d-{number}"}).status_code == 200
    with get_database(hooks.host.app).sessions() as db:
        reads = db.execute(select(AuditEvent.actor, AuditEvent.detail).where(
            AuditEvent.kind == "webhook_secret_read",
            AuditEvent.installation_id == hooks.ids["repohost"])).all()
    assert sorted(detail["reason"] for _, detail in reads) == [
        "checking a webhook's signature", "shown to its user"]


# -- event triggers ------------------------------------------------------------------


def wait_for_runs(host, count: int, seconds: float = 10) -> list[FlowRun]:
    deadline = time.monotonic() + seconds
    while True:
        with get_database(host.app).sessions() as db:
            runs = list(db.execute(select(FlowRun).order_by(FlowRun.id)).scalars())
        if len(runs) >= count or time.monotonic() > deadline:
            return runs
        time.sleep(0.05)


ON_ISSUE = {"key": "triage", "title": "Triage",
            "triggers": [{"type": "event", "connection": "repohost", "event": "issues",
                          "filter": [{"value": "{{event.data.action}}", "op": "equals",
                                      "to": "opened"}],
                          "input": {"number": "{{event.data.issue.number}}"}}],
            "input": {"type": "object", "properties": {"number": {"type": "integer"}}},
            "tasks": {"note": {"map": {"seen": "{{input.number}}"}}},
            "output": {"seen": "{{tasks.note.output.seen}}"}}


def test_a_verified_event_starts_the_matching_flows_with_input_from_the_event(hooks):
    created = hooks.host.api("POST", "/api/v1/flows", hooks.host.alice_token, json=ON_ISSUE)
    assert created.status_code == 201, created.get_json()
    secret = hooks.secret("repohost")

    def deliver(delivery: str, payload: dict[str, Any], kind: str = "issues"):
        body = json.dumps(payload).encode()
        return hooks.post("repohost", body, {"X-Hub-Signature-256": "sha256=" + sign(secret, body),
                                             "X-Event": kind, "X-Delivery": delivery})

    opened = deliver("a", {"action": "opened", "issue": {"number": 42}})
    deliver("b", {"action": "closed", "issue": {"number": 42}})  # filtered out
    deliver("c", {"action": "opened"}, kind="push")  # another event type
    runs = wait_for_runs(hooks.host, 1)
    assert len(runs) == 1
    assert (runs[0].input, runs[0].trigger["type"], runs[0].trigger["event"]) == (
        {"number": 42}, "event", "issues")
    event = hooks.host.api("GET", f"/api/v1/events/{opened.get_json()['id']}",
                           hooks.host.alice_token).get_json()
    assert event["runs"] == [runs[0].id]
    deliver("a", {"action": "opened", "issue": {"number": 42}})  # a replay starts nothing
    assert hooks.host.api("POST", "/api/v1/flows/triage/disable",
                          hooks.host.alice_token).status_code == 200
    deliver("d", {"action": "opened", "issue": {"number": 43}})
    time.sleep(0.5)
    assert len(wait_for_runs(hooks.host, 2, seconds=0.5)) == 1
    # Dispatching an event again (a timer after a crash) starts nothing twice.
    assert events.dispatch(hooks.host.app, opened.get_json()["id"]) == 0


def test_the_lint_checks_event_triggers(hooks):
    doc = {"key": "bad", "title": "Bad", "triggers": [
        {"type": "event", "connection": "nowhere", "event": "x"},
        {"type": "event", "connection": "plain", "event": "x"},
        {"type": "event", "event": "x", "input": {"a": "{{input.b}}"}, "cron": "* * * * *"}],
        "tasks": {"note": {"map": {}}}}
    answer = hooks.host.api("POST", "/api/v1/flows", hooks.host.alice_token, json=doc)
    assert answer.status_code == 422
    assert [(e["field"], e["message"]) for e in answer.get_json()["errors"]] == [
        ("/triggers/0/connection", "no installation is called 'nowhere' in this workspace"),
        ("/triggers/1/connection", "Plain (plain) sends no events"),
        ("/triggers/2/cron", "an event trigger has no 'cron'"),
        ("/triggers/2/input/a", "{{input.b}}: a trigger sees the event only"),
    ]


ON_ORDER = {"key": "orders", "title": "Orders",
            "triggers": [{"type": "event", "event": "order.paid",
                          "input": {"order": "{{event.data.order}}"}}],
            "input": {"type": "object", "properties": {"order": {"type": "string"}}},
            "tasks": {"note": {"map": {"order": "{{input.order}}"}}}}


def test_internal_events_start_flows_once_per_id(hooks):
    host = hooks.host
    assert host.api("POST", "/api/v1/flows", host.alice_token, json=ON_ORDER).status_code == 201
    sent = host.api("POST", "/api/v1/events", host.alice_token,
                    json={"type": "order.paid", "data": {"order": "A-1"}, "id": "o-1"})
    assert sent.status_code == 202
    assert sent.headers["Location"] == f"/api/v1/events/{sent.get_json()['id']}"
    again = host.api("POST", "/api/v1/events", host.alice_token,
                     json={"type": "order.paid", "data": {"order": "A-1"}, "id": "o-1"})
    assert (again.status_code, again.get_json()["id"]) == (200, sent.get_json()["id"])
    runs = wait_for_runs(host, 1)
    time.sleep(0.3)
    assert [r.input for r in wait_for_runs(host, 2, seconds=0.3)] == [{"order": "A-1"}]
    # Another workspace's events start nothing here, and its list does not show ours.
    assert host.api("POST", "/api/v1/events", host.bob_token,
                    json={"type": "order.paid", "data": {"order": "B-1"}}).status_code == 202
    assert host.api("GET", "/api/v1/events", host.bob_token).get_json()["items"][0]["data"] == \
        {"order": "B-1"}
    assert len(host.api("GET", "/api/v1/events?type=order.paid",
                        host.alice_token).get_json()["items"]) == 1
    assert host.api("GET", f"/api/v1/events/{sent.get_json()['id']}",
                    host.bob_token).status_code == 404
    bad = host.api("POST", "/api/v1/events", host.alice_token, json={"data": {}})
    assert bad.status_code == 422
    assert bad.get_json()["errors"] == [{"field": "type", "message": (
        "is required: the event's type, 1 to 200 characters (e.g. order.paid)")}]
    assert runs[0].trigger["eventId"] == sent.get_json()["id"]


def test_minihost_events_send_starts_the_flows_and_prints_them(hooks):
    host = hooks.host
    assert host.api("POST", "/api/v1/flows", host.alice_token, json=ON_ORDER).status_code == 201
    result = invoke(host, "events", "send", "order.paid", "--data", '{"order": "C-3"}',
                    "--workspace", "alice@example.com")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("evt_") and lines[1].startswith("  started frn_")
    bad = invoke(host, "events", "send", "x", "--data", "{nope",
                 "--workspace", "alice@example.com")
    assert bad.exit_code == 2 and "--data is not JSON" in bad.output


def test_the_installation_page_shows_its_webhook_url(hooks):
    client = hooks.host.app.test_client()
    hooks.host.login(client, "alice@example.com")
    page = client.get(f"/installations/{hooks.ids['repohost']}").get_data(as_text=True)
    assert f"http://127.0.0.1:5000{hooks.urls['repohost']}" in page
    plain = client.get(f"/installations/{hooks.ids['plain']}").get_data(as_text=True)
    assert "/hooks/" not in plain  # a mini-app without webhooks has no address to show


# -- registering the webhook with the provider ------------------------------------------


def registering(base: str, host: str) -> dict[str, Any]:
    return {
        "name": "registers", "version": "1.0.0", "title": "Registers",
        "description": "Registers its webhook.", "allowedHosts": [host],
        "auth": {"type": "apiKey",
                 "fields": {"type": "object", "required": ["apiKey"],
                            "properties": {"apiKey": {"type": "string"}}},
                 "registrationRequests": [{
                     "url": base + "/webhook_endpoints", "method": "POST",
                     "headers": {"Authorization": "Bearer [[apiKey]]"},
                     "body": {"url": "{{webhookUrl}}", "ourSecret": "[[webhookSecret]]"},
                     "mapping": {"webhookSecret": "$.secret", "endpointId": "$.id"}}],
                 "unregistrationRequests": [{
                     "url": base + "/webhook_endpoints/[[endpointId]]", "method": "DELETE",
                     "headers": {"Authorization": "Bearer [[apiKey]]"}}]},
        "webhooks": {"verify": {"type": "hmac-sha256", "header": "X-Sig",
                                "secret": "[[webhookSecret]]"}, "eventType": "$.type"}}


def test_a_secret_the_provider_returns_at_registration_signs_its_events(tmp_path, provider):
    provider.json("/webhook_endpoints", '{"id": "we_1", "secret": "whsec_from_provider"}')
    provider.route("/webhook_endpoints/we_1", status=200)
    built = build_hosted(tmp_path, provider,
                         manifests={"registers": registering(provider.base, provider.address)})
    try:
        answer = built.api("POST", "/api/v1/installations", built.alice_token,
                           json={"miniapp": "registers", "credentials": {"apiKey": "k-1"}})
        assert answer.status_code == 201, answer.get_json()
        body = answer.get_json()
        assert (body["status"], sorted(body["credentialKeys"])) == (
            "active", ["apiKey", "endpointId", "webhookSecret"])
        sent = [r for r in provider.received if r.path == "/webhook_endpoints"]
        own = built.api("GET", f"/api/v1/installations/{body['id']}/webhook-secret",
                        built.alice_token).get_json()["secret"]
        assert json.loads(sent[0].body) == {"url": body["webhookUrl"], "ourSecret": own}
        url = body["webhookUrl"].removeprefix("http://127.0.0.1:5000")
        event = b'{"type": "charge.succeeded"}'
        client = built.app.test_client()
        ok = client.post(url, data=event, headers={
            "Content-Type": "application/json",
            "X-Sig": sign("whsec_from_provider", event)})
        assert ok.status_code == 200  # the provider's secret, kept with the credentials
        assert client.post(url, data=event, headers={
            "Content-Type": "application/json", "X-Sig": sign(own, event)}).status_code == 401
        deleted = built.api("DELETE", f"/api/v1/installations/{body['id']}", built.alice_token)
        assert deleted.status_code == 204
        assert [r.method for r in provider.received if r.path == "/webhook_endpoints/we_1"] == \
            ["DELETE"]
    finally:
        executor.stop(built.app)
        get_database(built.app).engine.dispose()


def test_registration_is_skipped_while_the_provider_could_not_reach_this_host(tmp_path,
                                                                              provider):
    doc = registering("https://api.example.com", "api.example.com")
    built = build_hosted(tmp_path, provider, manifests={"registers": doc})
    try:
        answer = built.api("POST", "/api/v1/installations", built.alice_token,
                           json={"miniapp": "registers", "credentials": {"apiKey": "k-1"}})
        # An apiKey install checks nothing else here; no request leaves for api.example.com.
        assert answer.status_code == 201, answer.get_json()
        assert answer.get_json()["status"] == "active"
        with get_database(built.app).sessions() as db:
            detail = db.execute(select(AuditEvent.detail).where(
                AuditEvent.kind == "registration_skipped")).scalar_one()
        assert detail == {"reason": (
            "Registers cannot reach this host at http://127.0.0.1:5000 to deliver events; set "
            "PUBLIC_URL to the host's public https address and connect again to register its "
            "webhook")}
    finally:
        executor.stop(built.app)
        get_database(built.app).engine.dispose()


def test_events_past_the_retention_are_deleted_unless_not_yet_dispatched(hooks):
    from datetime import timedelta

    from sqlalchemy import update

    from host.db import utcnow
    from host.services.flow_runs import prune

    host = hooks.host
    old = host.api("POST", "/api/v1/events", host.alice_token,
                   json={"type": "a", "id": "old"}).get_json()["id"]
    waiting = host.api("POST", "/api/v1/events", host.alice_token,
                       json={"type": "b", "id": "waiting"}).get_json()["id"]
    kept = host.api("POST", "/api/v1/events", host.alice_token, json={"type": "c"}).get_json()
    long_ago = utcnow() - timedelta(days=31)
    with get_database(host.app).transaction() as db:
        db.execute(update(InboundEvent).where(InboundEvent.id.in_([old, waiting]))
                   .values(received_at=long_ago))
        db.execute(update(InboundEvent).where(InboundEvent.id == waiting)
                   .values(status="received"))
    prune(host.app, force=True)
    assert {e.id for e in hooks.stored()} == {waiting, kept["id"]}


def test_a_trigger_whose_run_cannot_start_is_listed_with_the_reason(hooks):
    host = hooks.host
    doc = {"key": "strict", "title": "Strict",
           "triggers": [{"type": "event", "event": "order.paid",
                         "input": {"amount": "{{event.data.amount}}"}}],
           "input": {"type": "object", "properties": {"amount": {"type": "integer"}},
                     "required": ["amount"]},
           "tasks": {"note": {"map": {"amount": "{{input.amount}}"}}}}
    assert host.api("POST", "/api/v1/flows", host.alice_token, json=doc).status_code == 201
    sent = host.api("POST", "/api/v1/events", host.alice_token,
                    json={"type": "order.paid", "data": {"amount": "ten"}}).get_json()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        event = host.api("GET", f"/api/v1/events/{sent['id']}", host.alice_token).get_json()
        if event["failures"]:
            break
        time.sleep(0.05)
    assert event["runs"] == []
    assert event["failures"] == [{"flow": "strict", "error": "amount: 'ten' is not of type "
                                                             "'integer'"}]
