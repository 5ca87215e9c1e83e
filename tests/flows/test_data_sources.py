"""Data sources (FLOWS.md §6) against a live provider: a paginated list kept as records,
changes as events (none on the first sync), a flow started by a change, a sync whose
third page fails changing nothing, and 10,000 records synced twice with one change
giving one event."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from sqlalchemy import select
from werkzeug.wrappers import Request, Response

from host import executor
from host.db import DataSourceState, FlowRun, InboundEvent, get_database

from ..conftest import build_hosted


class Contacts:
    """The provider's contacts, listed 100 at a time with a cursor."""

    def __init__(self, count: int) -> None:
        self.rows = {str(n): {"id": str(n), "email": f"c{n}@acme.test",
                              "updatedAt": "2026-01-01T00:00:00Z"} for n in range(count)}
        self.fail_from: int | None = None  # answer 503 for a page starting at this index
        self.pages = 0

    def __call__(self, request: Request) -> Response:
        self.pages += 1
        after = request.args.get("after", "")
        keys = sorted(self.rows, key=int)
        start = keys.index(after) + 1 if after else 0
        if self.fail_from is not None and start >= self.fail_from:
            return Response('{"message": "temporarily unavailable"}', status=503,
                            mimetype="application/json")
        page = keys[start:start + 100]
        body: dict[str, Any] = {"results": [self.rows[k] for k in page]}
        if start + 100 < len(keys):
            body["paging"] = {"next": {"after": page[-1]}}
        return Response(json.dumps(body), mimetype="application/json")


def crm(base: str, host: str) -> dict[str, Any]:
    return {
        "name": "crm", "version": "1.0.0", "title": "CRM", "description": "Contacts.",
        "allowedHosts": [host],
        "auth": {"type": "apiKey", "fields": {"type": "object", "required": ["apiKey"],
                                              "properties": {"apiKey": {"type": "string"}}}},
        "dataSources": {"contacts": {
            "title": "Contacts",
            "list": {"url": base + "/contacts", "method": "GET",
                     "headers": {"Authorization": "Bearer [[apiKey]]"},
                     "queryParams": {"limit": 100},
                     "pagination": {"type": "cursor", "next": "$.paging.next.after",
                                    "param": "after", "maxPages": 200}},
            "items": "$.results[*]", "id": "$.id", "updatedAt": "$.updatedAt",
            "schema": {"type": "object"}, "pollSeconds": 300}}}


@pytest.fixture
def world(tmp_path, provider):
    contacts = Contacts(250)
    provider.route("/contacts", contacts)
    built = build_hosted(tmp_path, provider, manifests={"crm": crm(provider.base,
                                                                     provider.address)},
                         FLOW_WORKERS=2)
    answer = built.api("POST", "/api/v1/installations", built.alice_token,
                       json={"miniapp": "crm", "credentials": {"apiKey": "k-1"}})
    assert answer.status_code == 201, answer.get_json()
    built.contacts = contacts  # type: ignore[attr-defined]
    built.installation = answer.get_json()["id"]  # type: ignore[attr-defined]
    yield built
    executor.stop(built.app)
    get_database(built.app).engine.dispose()


def sync(world):
    return world.api("POST", f"/api/v1/installations/{world.installation}/data-sources/"
                             "contacts/sync", world.alice_token)


def change_events(world) -> list[tuple[str, Any]]:
    with get_database(world.app).sessions() as db:
        return [(e.type, e.data) for e in db.execute(
            select(InboundEvent).order_by(InboundEvent.received_at, InboundEvent.id)).scalars()]


def test_the_first_sync_fills_the_records_and_later_ones_emit_the_changes(world):
    first = sync(world)
    assert first.status_code == 200, first.get_json()
    assert first.get_json() == {"source": "contacts", "records": 250, "created": 0,
                                "updated": 0, "deleted": 0, "first": True, "events": []}
    assert world.contacts.pages == 3  # 100 + 100 + 50, the cursor followed
    records, cursor = [], ""
    while cursor is not None:
        page = world.api("GET", f"/api/v1/installations/{world.installation}/data-sources/"
                                f"contacts/records?limit=100&cursor={cursor}",
                         world.alice_token).get_json()
        records.extend(page["items"])
        cursor = page["next"]
    assert sorted(records, key=lambda r: int(r["id"])) == list(world.contacts.rows.values())
    rows = world.contacts.rows
    rows["7"] = {**rows["7"], "email": "new@acme.test", "updatedAt": "2026-02-01T00:00:00Z"}
    deleted = rows.pop("9")
    rows["1000"] = {"id": "1000", "email": "c1000@acme.test", "updatedAt": "2026-02-02"}
    second = sync(world).get_json()
    assert (second["created"], second["updated"], second["deleted"], second["first"]) == (
        1, 1, 1, False)
    assert sorted(change_events(world), key=lambda e: e[0]) == [
        ("contacts.created", rows["1000"]), ("contacts.deleted", deleted),
        ("contacts.updated", rows["7"])]
    assert sync(world).get_json()["events"] == []  # nothing changed since


def test_a_change_starts_the_flow_waiting_for_it(world):
    doc = {"key": "on-contact", "title": "On contact change",
           "triggers": [{"type": "event", "connection": "crm", "event": "contacts.updated",
                         "input": {"email": "{{event.data.email}}"}}],
           "input": {"type": "object", "properties": {"email": {"type": "string"}}},
           "tasks": {"note": {"map": {"email": "{{input.email}}"}}}}
    saved = world.api("POST", "/api/v1/flows", world.alice_token, json=doc)
    assert saved.status_code == 201, saved.get_json()
    usage = world.api("GET", f"/api/v1/installations/{world.installation}/usage",
                      world.alice_token).get_json()
    assert usage["flows"] == [{"flow": "on-contact", "title": "On contact change",
                               "enabled": True,
                               "tasks": [{"trigger": 0, "event": "contacts.updated"}]}]
    with get_database(world.app).sessions() as db:  # the flow made the source polled
        state = db.execute(select(DataSourceState)).scalar_one()
        assert (state.source, state.synced_at, state.next_sync_at is not None) == (
            "contacts", None, True)
    sync(world)
    world.contacts.rows["3"] = {**world.contacts.rows["3"], "email": "changed@acme.test",
                                "updatedAt": "2026-03-01T00:00:00Z"}
    assert sync(world).get_json()["updated"] == 1
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with get_database(world.app).sessions() as db:
            runs = list(db.execute(select(FlowRun)).scalars())
        if runs:
            break
        time.sleep(0.05)
    assert [(r.input, r.trigger["event"]) for r in runs] == [
        ({"email": "changed@acme.test"}, "contacts.updated")]


def test_a_sync_whose_third_page_fails_changes_nothing(world):
    sync(world)
    world.contacts.rows.pop("5")  # would be a deletion...
    world.contacts.fail_from = 200  # ...but the third page fails
    failed = sync(world)
    assert failed.status_code == 502
    assert failed.get_json()["detail"].endswith("failed with HTTP 503: temporarily unavailable")
    assert change_events(world) == []
    with get_database(world.app).sessions() as db:
        state = db.execute(select(DataSourceState)).scalar_one()
        assert state.records == 250 and "HTTP 503" in state.error
    world.contacts.fail_from = None
    assert sync(world).get_json()["deleted"] == 1  # the next good sync sees it


def test_a_list_cut_short_by_max_pages_changes_nothing(tmp_path, provider):
    contacts = Contacts(250)
    provider.route("/contacts", contacts)
    doc = crm(provider.base, provider.address)
    doc["dataSources"]["contacts"]["list"]["pagination"]["maxPages"] = 2
    built = build_hosted(tmp_path, provider, manifests={"crm": doc})
    try:
        installation = built.api("POST", "/api/v1/installations", built.alice_token, json={
            "miniapp": "crm", "credentials": {"apiKey": "k-1"}}).get_json()["id"]
        answer = built.api("POST", f"/api/v1/installations/{installation}/data-sources/"
                                   "contacts/sync", built.alice_token)
        assert answer.status_code == 502
        assert "did not end within its maxPages" in answer.get_json()["detail"]
    finally:
        get_database(built.app).engine.dispose()


def test_ten_thousand_records_synced_twice_with_one_change_give_one_event(world):
    world.contacts.rows = Contacts(10_000).rows
    assert sync(world).get_json()["records"] == 10_000
    world.contacts.rows["4242"].update(email="changed@acme.test", updatedAt="2026-03-01")
    second = sync(world).get_json()
    assert (second["records"], second["created"], second["updated"], second["deleted"]) == (
        10_000, 0, 1, 0)
    assert [kind for kind, _ in change_events(world)] == ["contacts.updated"]


def test_an_unknown_data_source_and_event_name_are_refused(world):
    missing = world.api("POST", f"/api/v1/installations/{world.installation}/data-sources/"
                                "deals/sync", world.alice_token)
    assert (missing.status_code, missing.get_json()["detail"]) == (
        404, "CRM has no data source 'deals' (it has: contacts)")
    doc = {"key": "bad", "title": "Bad", "tasks": {"n": {"map": {}}}, "triggers": [
        {"type": "event", "connection": "crm", "event": "contacts.changed"}]}
    answer = world.api("POST", "/api/v1/flows", world.alice_token, json=doc)
    assert [(e["field"], e["message"]) for e in answer.get_json()["errors"]] == [
        ("/triggers/0/event", "contacts is a data source: its events are contacts.created, "
                              "contacts.updated and contacts.deleted")]


def test_without_updated_at_a_change_of_content_is_a_change(tmp_path, provider):
    contacts = Contacts(120)
    provider.route("/contacts", contacts)
    doc = crm(provider.base, provider.address)
    del doc["dataSources"]["contacts"]["updatedAt"]
    built = build_hosted(tmp_path, provider, manifests={"crm": doc})
    try:
        installation = built.api("POST", "/api/v1/installations", built.alice_token, json={
            "miniapp": "crm", "credentials": {"apiKey": "k-1"}}).get_json()["id"]
        path = f"/api/v1/installations/{installation}/data-sources/contacts/sync"
        assert built.api("POST", path, built.alice_token).get_json()["first"] is True
        contacts.rows["7"]["email"] = "new@acme.test"  # updatedAt unchanged
        contacts.rows["8"] = dict(reversed(list(contacts.rows["8"].items())))  # same content
        second = built.api("POST", path, built.alice_token).get_json()
        assert (second["updated"], second["created"], second["deleted"]) == (1, 0, 0)
    finally:
        get_database(built.app).engine.dispose()



def test_a_webhook_mapped_onto_the_source_keeps_its_record_and_emits_the_change(tmp_path,
                                                                                provider):
    contacts = Contacts(150)
    provider.route("/contacts", contacts)
    doc = crm(provider.base, provider.address)
    doc["webhooks"] = {
        "verify": {"type": "token", "header": "X-Token", "secret": "[[webhookSecret]]"},
        "eventType": "$.type", "deliveryId": "$.eventId",
        "events": {"contact.changed": {"dataSource": "contacts", "record": "$.contact"},
                   "contact.removed": {"dataSource": "contacts", "record": "$.contact",
                                       "action": "delete"}}}
    built = build_hosted(tmp_path, provider, manifests={"crm": doc}, FLOW_WORKERS=2)
    try:
        body = built.api("POST", "/api/v1/installations", built.alice_token, json={
            "miniapp": "crm", "credentials": {"apiKey": "k-1"}}).get_json()
        path = f"/api/v1/installations/{body['id']}/data-sources/contacts/sync"
        secret = built.api("GET", f"/api/v1/installations/{body['id']}/webhook-secret",
                           built.alice_token).get_json()["secret"]
        client = built.app.test_client()
        url = body["webhookUrl"].removeprefix("http://127.0.0.1:5000")

        def deliver(payload):
            answer = client.post(url, json=payload, headers={"X-Token": secret})
            assert answer.status_code == 200, answer.get_json()

        changed = {**contacts.rows["5"], "email": "five@acme.test", "updatedAt": "2026-05-05"}
        deliver({"type": "contact.changed", "eventId": "e-0", "contact": changed})
        time.sleep(0.3)
        assert [k for k, _ in change_events_of(built)] == ["contact.changed"]  # not synced yet
        built.api("POST", path, built.alice_token)  # the first sync fills the records
        deliver({"type": "contact.changed", "eventId": "e-1", "contact": changed})
        deliver({"type": "contact.removed", "eventId": "e-2", "contact": contacts.rows["6"]})
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(change_events_of(built)) < 5:
            time.sleep(0.05)
        assert [(k, d) for k, d in change_events_of(built) if k.startswith("contacts.")] == [
            ("contacts.updated", changed), ("contacts.deleted", contacts.rows["6"])]
        # The provider's list now agrees; the next sync finds those changes already kept.
        contacts.rows["5"] = changed
        del contacts.rows["6"]
        again = built.api("POST", path, built.alice_token).get_json()
        assert (again["updated"], again["deleted"], again["records"]) == (0, 0, 149)
    finally:
        executor.stop(built.app)
        get_database(built.app).engine.dispose()


def change_events_of(host) -> list[tuple[str, Any]]:
    with get_database(host.app).sessions() as db:
        return [(e.type, e.data) for e in db.execute(
            select(InboundEvent).order_by(InboundEvent.received_at, InboundEvent.id)).scalars()]


def test_a_data_source_is_a_flow_task(world):
    doc = {"key": "count-contacts", "title": "Count contacts",
           "tasks": {"contacts": {"connection": "crm", "dataSource": "contacts"},
                     "report": {"needs": {"contacts": "completed"},
                                "map": {"count": "{{tasks.contacts.output.count}}",
                                        "first": "{{tasks.contacts.output.records.0.email}}"}}},
           "output": {"count": "{{tasks.report.output.count}}"}}
    saved = world.api("POST", "/api/v1/flows", world.alice_token, json=doc)
    assert saved.status_code == 201, saved.get_json()
    run = world.api("POST", "/api/v1/flows/count-contacts/runs", world.alice_token, json={},
                    headers={"Prefer": "wait=20"}).get_json()
    assert (run["status"], run["output"]) == ("succeeded", {"count": 250}), run
    assert world.contacts.pages == 3  # never synced: the task synced it first
    report = {t["key"]: t for t in run["tasks"]}["report"]
    assert report["output"] == {"count": 250, "first": "c0@acme.test"}
    again = world.api("POST", "/api/v1/flows/count-contacts/runs", world.alice_token, json={},
                      headers={"Prefer": "wait=20"}).get_json()
    assert again["status"] == "succeeded" and world.contacts.pages == 3  # fresh: kept records
    bad = dict(doc, key="bad")
    bad["tasks"] = {"x": {"connection": "crm", "dataSource": "deals"}}
    del bad["output"]
    answer = world.api("POST", "/api/v1/flows", world.alice_token, json=bad)
    assert [(e["field"], e["message"]) for e in answer.get_json()["errors"]] == [
        ("/tasks/x/dataSource", "CRM has no data source 'deals'")]


def test_a_dropdown_source_offers_the_options_of_every_page(tmp_path, provider):
    contacts = Contacts(230)
    provider.route("/contacts", contacts)
    doc = crm(provider.base, provider.address)
    doc["sources"] = {"rpc_contacts": {
        "requests": [{"url": provider.base + "/contacts", "method": "GET",
                      "headers": {"Authorization": "Bearer [[apiKey]]"},
                      "pagination": {"type": "cursor", "next": "$.paging.next.after",
                                     "param": "after"}}],
        "options": {"items": "$.results[*]", "value": "$.id", "label": "$.email"}}}
    built = build_hosted(tmp_path, provider, manifests={"crm": doc})
    try:
        installation = built.api("POST", "/api/v1/installations", built.alice_token, json={
            "miniapp": "crm", "credentials": {"apiKey": "k-1"}}).get_json()["id"]
        answer = built.api("GET", f"/api/v1/installations/{installation}/sources/rpc_contacts",
                           built.alice_token)
        options = answer.get_json()["options"]
        assert len(options) == 230 and contacts.pages == 3
        assert options[229] == {"value": "229", "label": "c229@acme.test"}
    finally:
        get_database(built.app).engine.dispose()
