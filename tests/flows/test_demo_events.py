"""The demo end to end, offline: connecting Demo Tasks subscribes the installation's
webhookUrl at the demo provider, which signs and delivers task changes; the README's
follow-up flow (examples/flows/demo/follow-up.json) starts on a completed task and
adds a task at the provider. Uninstalling unsubscribes."""

from __future__ import annotations

import json
import time

from sqlalchemy import select

from host.db import FlowRun, InboundEvent, get_database

from ..auth.test_connect import consent, demo, installation, local, signed_in, start
from ..conftest import REPO

__all__ = ["demo"]  # the fixture

FOLLOW_UP = REPO / "examples" / "flows" / "demo" / "follow-up.json"


def connect(app):
    client = signed_in(app)
    callback = consent(client, start(app, client))
    client.get(local(callback))
    return installation(app)


def api(app, method, path, **kwargs):
    return app.test_client().open(path, method=method,
                                  headers={"Authorization": f"Bearer {app.test_token}"}, **kwargs)


def test_a_completed_task_at_the_provider_starts_the_follow_up_flow(demo):
    row = connect(demo)
    assert row.status == "active"
    assert {"webhookId", "webhookSecret"} <= set(row.credential_keys)
    store = demo.extensions["demo_provider"]["store"]
    [subscription] = store.all("SELECT url FROM webhooks")
    assert subscription["url"] == f"{demo.test_base}/hooks/{row.id}/{row.webhook_token}"
    synced = api(demo, "POST", f"/api/v1/installations/{row.id}/data-sources/tasks/sync")
    assert synced.status_code == 200, synced.get_json()
    assert (synced.get_json()["records"], synced.get_json()["first"]) == (5, True)
    created = api(demo, "POST", "/api/v1/flows", json=json.loads(FOLLOW_UP.read_text()))
    assert created.status_code == 201, created.get_json()
    inbox = store.one("SELECT id FROM projects WHERE name = 'Inbox'")["id"]
    task = store.one("SELECT id, title FROM tasks WHERE project_id = ? ORDER BY created",
                     inbox)
    done = api(demo, "POST", f"/api/v1/installations/{row.id}/actions/completeTask/runs",
               json={"parameters": {"project": inbox, "task": task["id"]}})
    assert done.status_code == 201 and done.get_json()["status"] == "succeeded", done.get_json()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        follow = store.one("SELECT title, done FROM tasks WHERE title = ?",
                           f"Follow up: {task['title']}")
        if follow is not None:
            break
        time.sleep(0.1)
    assert follow is not None, "the follow-up task never reached the provider"
    with get_database(demo).sessions() as db:
        events = db.execute(select(InboundEvent.type, InboundEvent.verified)
                            .where(InboundEvent.installation_id == row.id)
                            .order_by(InboundEvent.id)).all()
        runs = db.execute(select(FlowRun.trigger)).scalars().all()
    # The follow-up task's own task.created arrives too, and starts nothing.
    assert ("task.completed", True) in events and ("task.created", True) in events
    assert [trigger["event"] for trigger in runs] == ["task.completed"]
    # The tasks data source sees the completed task and the follow-up.
    again = api(demo, "POST", f"/api/v1/installations/{row.id}/data-sources/tasks/sync")
    assert {k: again.get_json()[k] for k in ("records", "created", "updated", "deleted")} == {
        "records": 6, "created": 1, "updated": 1, "deleted": 0}
    gone = api(demo, "DELETE", f"/api/v1/installations/{row.id}")
    assert gone.status_code == 204
    assert store.all("SELECT url FROM webhooks") == []
