"""Flows through the API against a live provider: documents and versions, starting
runs (input checks, Prefer: wait, Idempotency-Key, sandbox), the DAG at work
(completed/failed links, skips, forEach, map), retries with one idempotency key,
limits, control (cancel, retry, resolve), flow tokens and tenancy."""

from __future__ import annotations

import copy
import json
import time

import pytest
from werkzeug.wrappers import Response

INTAKE = {
    "key": "bug-intake", "title": "Bug intake",
    "tasks": {
        "issue": {"connection": "linear", "action": "createIssue",
                  "inputs": {"title": "{{input.title}}", "description": None, "priority": 2},
                  "retry": {"attempts": 3, "initialSeconds": 0.05, "maxSeconds": 1}},
        "note": {"needs": {"issue": "completed"}, "connection": "linear", "action": "comment",
                 "inputs": {"issue": "{{tasks.issue.output.id}}",
                            "text": "Filed as {{tasks.issue.output.url}}"}},
        "alert": {"needs": {"issue": "failed"}, "connection": "mail", "action": "send",
                  "inputs": {"to": "oncall@acme.test", "subject": "Intake failed",
                             "text": "{{tasks.issue.error}}"}},
    },
    "output": {"issue": "{{tasks.issue.output.url}}"},
}
WAIT = {"Prefer": "wait=20"}


def create(host, doc, token=None):
    return host.api("POST", "/api/v1/flows", token or host.alice_token, json=doc)


def start(host, key, body=None, token=None, headers=None, query=""):
    return host.api("POST", f"/api/v1/flows/{key}/runs{query}", token or host.alice_token,
                    json=body if body is not None else {},
                    headers=dict(WAIT if headers is None else headers))


def tasks(run):
    return {task["key"]: task for task in run["tasks"]}


def test_create_then_save_versions(flowhost):
    created = create(flowhost, INTAKE)
    assert created.status_code == 201, created.get_json()
    body = created.get_json()
    assert (body["key"], body["version"], body["enabled"]) == ("bug-intake", 1, True)
    assert body["endpoint"] == {"url": "http://127.0.0.1:5000/api/v1/flows/bug-intake/runs",
                                "method": "POST"}
    assert body["inputSchema"]["required"] == ["title"]
    assert created.headers["Location"] == "/api/v1/flows/bug-intake"
    same = create(flowhost, INTAKE)
    assert same.status_code == 200 and same.get_json()["version"] == 1
    changed = copy.deepcopy(INTAKE)
    changed["title"] = "Bug intake (v2)"
    put = flowhost.api("PUT", "/api/v1/flows/bug-intake", flowhost.alice_token, json=changed)
    assert put.status_code == 200 and put.get_json()["version"] == 2
    assert put.get_json()["title"] == "Bug intake (v2)"
    listing = flowhost.api("GET", "/api/v1/flows", flowhost.alice_token).get_json()
    assert [f["key"] for f in listing["items"]] == ["bug-intake"]


def test_yaml_documents_are_accepted(flowhost):
    text = "key: hello\ntitle: Hello\ntasks:\n  greet:\n    map:\n      text: Hi {{input.name}}\n"
    answer = flowhost.api("POST", "/api/v1/flows", flowhost.alice_token, data=text,
                          content_type="application/yaml")
    assert answer.status_code == 201, answer.get_json()
    run = start(flowhost, "hello", {"name": "Ada"}).get_json()
    assert run["status"] == "succeeded"
    assert tasks(run)["greet"]["output"] == {"text": "Hi Ada"}


def test_a_document_with_problems_stores_nothing(flowhost):
    doc = copy.deepcopy(INTAKE)
    doc["tasks"]["issue"]["connection"] = "jira"
    doc["tasks"]["note"]["inputs"]["text"] = "[[apiKey]]"
    answer = create(flowhost, doc)
    assert answer.status_code == 422
    assert [e["field"] for e in answer.get_json()["errors"]] == [
        "/tasks/note/inputs/text", "/tasks/issue/connection"]
    assert flowhost.api("GET", "/api/v1/flows", flowhost.alice_token).get_json()["items"] == []


def test_a_run_sends_each_task_and_records_everything(flowhost):
    create(flowhost, INTAKE)
    answer = start(flowhost, "bug-intake",
                   {"title": "Crash on save", "tasks": {"issue": {"description": "Steps…"}}})
    assert answer.status_code == 200, answer.get_json()
    assert answer.headers["Location"] == f"/api/v1/flow-runs/{answer.get_json()['id']}"
    run = answer.get_json()
    assert (run["status"], run["output"], run["error"]) == (
        "succeeded", {"issue": "https://tracker.test/ISS-1"}, None)
    states = {key: task["status"] for key, task in tasks(run).items()}
    assert states == {"issue": "succeeded", "note": "succeeded", "alert": "skipped"}
    issue = tasks(run)["issue"]
    assert issue["input"] == {"title": "Crash on save", "priority": 2, "description": "Steps…"}
    assert issue["output"] == {"id": "ISS-1", "url": "https://tracker.test/ISS-1"}
    sent = flowhost.tracker.received("POST", "/issues")
    assert len(sent) == 1
    assert json.loads(sent[0].body) == {"title": "Crash on save", "priority": 2,
                                        "description": "Steps…"}
    assert sent[0].headers["Idempotency-Key"]
    comment = flowhost.tracker.received("POST", "/issues/ISS-1/comments")
    assert [json.loads(c.body) for c in comment] == [{"text": "Filed as https://tracker.test/ISS-1"}]
    assert flowhost.tracker.received("POST", "/mail") == []
    # Each attempt is an ordinary action run with its trace.
    action_run = flowhost.api("GET", f"/api/v1/runs/{issue['runs'][0]}",
                              flowhost.alice_token).get_json()
    assert (action_run["action"], action_run["status"]) == ("createIssue", "succeeded")
    assert action_run["trace"]["requests"][0]["headers"]["X-Api-Key"] == "[redacted]"


def test_retries_keep_one_idempotency_key_and_a_failed_link_handles_the_failure(flowhost):
    create(flowhost, INTAKE)
    flowhost.tracker.fail_issues = 5
    run = start(flowhost, "bug-intake", {"title": "Broken"}).get_json()
    assert run["status"] == "succeeded"  # the failure is handled by alert's failed link
    states = {key: task["status"] for key, task in tasks(run).items()}
    assert states == {"issue": "failed", "note": "skipped", "alert": "succeeded"}
    issue = tasks(run)["issue"]
    assert issue["attempts"] == 3 and len(issue["runs"]) == 3
    sent = flowhost.tracker.received("POST", "/issues")
    # The engine itself does not repeat a POST; the flow retried it twice.
    assert len(sent) == 3
    assert len({r.headers["Idempotency-Key"] for r in sent}) == 1
    mail = flowhost.tracker.received("POST", "/mail")
    assert json.loads(mail[0].body)["text"] == issue["error"]["message"]


def test_an_unhandled_failure_fails_the_run(flowhost):
    doc = copy.deepcopy(INTAKE)
    del doc["tasks"]["alert"]
    doc["tasks"]["issue"].pop("retry")
    create(flowhost, doc)
    flowhost.tracker.fail_issues = 1
    run = start(flowhost, "bug-intake", {"title": "Broken"}).get_json()
    assert run["status"] == "failed"
    assert run["error"]["task"] == "issue"
    assert "tracker is down" in run["error"]["message"]
    assert tasks(run)["note"]["status"] == "skipped"


def test_invalid_input_starts_nothing(flowhost):
    create(flowhost, INTAKE)
    answer = start(flowhost, "bug-intake", {"title": "", "colour": "red",
                                            "tasks": {"issue": {"description": 5}}})
    assert answer.status_code == 422
    assert answer.get_json()["errors"] == [
        {"field": "input", "message": "unknown field(s) ('colour' was unexpected)"},
        {"field": "tasks.issue.description", "message": "5 is not of type 'string'"},
        {"field": "title", "message": "'' should be non-empty"},
    ]
    missing = start(flowhost, "bug-intake", {})
    assert missing.get_json()["errors"] == [{"field": "title", "message": "is required"}]
    runs = flowhost.api("GET", "/api/v1/flow-runs", flowhost.alice_token).get_json()
    assert runs["items"] == [] and flowhost.tracker.received("POST", "/issues") == []


def test_idempotency_key_returns_the_same_run(flowhost):
    create(flowhost, INTAKE)
    headers = {**WAIT, "Idempotency-Key": "order-17"}
    first = start(flowhost, "bug-intake", {"title": "Once"}, headers=headers).get_json()
    again = start(flowhost, "bug-intake", {"title": "Once"}, headers=headers)
    assert again.get_json()["id"] == first["id"]
    assert len(flowhost.tracker.received("POST", "/issues")) == 1


def test_a_sandbox_run_sends_nothing(flowhost):
    create(flowhost, INTAKE)
    before = len(flowhost.provider.received)
    run = start(flowhost, "bug-intake", {"title": "Dry"}, query="?sandbox=true").get_json()
    assert run["status"] == "succeeded" and run["sandbox"] is True
    assert len(flowhost.provider.received) == before
    action_run = flowhost.api("GET", f"/api/v1/runs/{tasks(run)['issue']['runs'][0]}",
                              flowhost.alice_token).get_json()
    assert action_run["sandbox"] is True
    assert action_run["trace"]["requests"][0]["wouldHaveSent"] is True


def test_parallel_lists_forEach_and_map_join(flowhost):
    doc = {"key": "fan", "title": "Fan out", "tasks": {
        "list": {"connection": "linear", "action": "listIssues", "inputs": {"status": "open"}},
        "again": {"connection": "linear", "action": "listIssues", "inputs": {"status": "open"}},
        "each": {"needs": {"list": "completed"}, "forEach": {
            "items": "{{tasks.list.output.items}}", "parallelism": 1,
            "task": {"connection": "linear", "action": "comment",
                     "inputs": {"issue": "{{item.id}}", "text": "#{{index}} {{item.title}}"}}}},
        "join": {"needs": {"each": "completed", "again": "completed"},
                 "map": {"comments": "{{tasks.each.output}}",
                         "count": "{{tasks.again.output.items}}"}}},
        "output": {"join": "{{tasks.join.output}}"}}
    assert create(flowhost, doc).status_code == 201
    run = start(flowhost, "fan").get_json()
    assert run["status"] == "succeeded", run
    each = tasks(run)["each"]
    assert [item["status"] for item in each["items"]] == ["succeeded", "succeeded"]
    assert each["output"] == [{"id": "c-1"}, {"id": "c-1"}]
    assert run["output"]["join"]["comments"] == [{"id": "c-1"}, {"id": "c-1"}]
    texts = [json.loads(r.body)["text"] for r in flowhost.provider.received
             if r.path.endswith("/comments")]
    assert texts == ["#0 one", "#1 two"]  # parallelism 1: in order


def test_if_conditions_skip_and_skips_propagate(flowhost):
    doc = {"key": "branch", "title": "Branch", "tasks": {
        "check": {"map": {"urgent": "{{input.urgent}}"}},
        "page": {"needs": {"check": "completed"},
                 "if": [{"value": "{{tasks.check.output.urgent}}", "op": "equals", "to": True}],
                 "connection": "mail", "action": "send",
                 "inputs": {"to": "oncall@acme.test", "subject": "Urgent"}},
        "after": {"needs": {"page": "completed"}, "map": {"done": "yes"}}}}
    create(flowhost, doc)
    calm = start(flowhost, "branch", {"urgent": False}).get_json()
    assert {k: t["status"] for k, t in tasks(calm).items()} == {
        "check": "succeeded", "page": "skipped", "after": "skipped"}
    assert calm["status"] == "succeeded"
    urgent = start(flowhost, "branch", {"urgent": True}).get_json()
    assert tasks(urgent)["after"]["status"] == "succeeded"
    assert len(flowhost.tracker.received("POST", "/mail")) == 1


def test_a_disabled_flow_answers_409(flowhost):
    create(flowhost, {**INTAKE, "enabled": False})
    answer = start(flowhost, "bug-intake", {"title": "x"})
    assert answer.status_code == 409
    assert answer.get_json()["detail"] == (
        "the flow bug-intake is disabled; enable it to start runs "
        "(POST /api/v1/flows/bug-intake/enable)")
    flowhost.api("POST", "/api/v1/flows/bug-intake/enable", flowhost.alice_token)
    assert start(flowhost, "bug-intake", {"title": "x"}).status_code == 200


def test_a_task_output_over_256_kb_fails_the_task(flowhost):
    flowhost.provider.route("/issues", lambda r: Response(
        json.dumps({"items": [{"id": "x" * 1000, "title": "y"}] * 300}),
        mimetype="application/json"))
    doc = {"key": "big", "title": "Big", "tasks": {
        "list": {"connection": "linear", "action": "listIssues",
                 "inputs": {"status": "open"}}}}
    create(flowhost, doc)
    run = start(flowhost, "big").get_json()
    assert run["status"] == "failed"
    assert tasks(run)["list"]["error"]["message"].startswith(
        "the task's output is 299 KB, over the limit of 256 KB a task may keep; map fewer "
        "fields into it, or page the list")


def test_a_hanging_upstream_hits_the_task_timeout(flowhost):
    def slow(request):
        time.sleep(3)
        return Response("{}", mimetype="application/json")

    flowhost.provider.route("/mail", slow)
    doc = {"key": "slow", "title": "Slow", "tasks": {
        "mail": {"connection": "mail", "action": "send", "timeoutSeconds": 0.5,
                 "inputs": {"to": "a@acme.test", "subject": "s"}}}}
    create(flowhost, doc)
    began = time.monotonic()
    run = start(flowhost, "slow").get_json()
    assert run["status"] == "failed" and time.monotonic() - began < 2.5
    assert tasks(run)["mail"]["error"]["message"] == (
        "request /actions/0/requests/0: no answer before the deadline")


def test_the_run_deadline_times_a_run_out(flowhost):
    doc = {"key": "late", "title": "Late", "budgetSeconds": 1, "tasks": {
        "pause": {"wait": {"seconds": 30}},
        "after": {"needs": {"pause": "completed"}, "map": {"x": "1"}}}}
    create(flowhost, doc)
    run = start(flowhost, "late", headers={"Prefer": "wait=8"}).get_json()
    assert run["status"] == "timed_out"
    assert run["error"] == {"task": None, "message": "the run passed its budget of 1 s"}
    assert {k: t["status"] for k, t in tasks(run).items()} == {
        "pause": "cancelled", "after": "cancelled"}


def test_a_durable_wait_holds_no_worker(flowhost):
    doc = {"key": "pause", "title": "Pause", "tasks": {
        "pause": {"wait": {"seconds": 0.3}},
        "after": {"needs": {"pause": "completed"}, "map": {"x": "{{run.id}}"}}}}
    create(flowhost, doc)
    answer = start(flowhost, "pause", headers={})
    assert answer.status_code == 202
    run = answer.get_json()
    assert tasks(run)["pause"]["status"] == "ready" and "readyAt" in tasks(run)["pause"]
    time.sleep(1.0)
    done = flowhost.api("GET", f"/api/v1/flow-runs/{run['id']}", flowhost.alice_token).get_json()
    assert done["status"] == "succeeded"
    assert tasks(done)["after"]["output"] == {"x": run["id"]}


def test_cancel_and_retry(flowhost):
    doc = {"key": "later", "title": "Later", "tasks": {
        "pause": {"wait": {"seconds": 30}},
        "issue": {"needs": {"pause": "completed"}, "connection": "linear",
                  "action": "createIssue", "inputs": {"title": "later"}}}}
    create(flowhost, doc)
    run = start(flowhost, "later", headers={}).get_json()
    cancelled = flowhost.api("POST", f"/api/v1/flow-runs/{run['id']}/cancel",
                             flowhost.alice_token).get_json()
    assert cancelled["status"] == "cancelled"
    assert cancelled["error"]["message"] == "cancelled by alice@example.com"
    assert {t["status"] for t in cancelled["tasks"]} == {"cancelled"}
    again = flowhost.api("POST", f"/api/v1/flow-runs/{run['id']}/cancel", flowhost.alice_token)
    assert again.status_code == 409
    doc["tasks"]["pause"]["wait"]["seconds"] = 0
    flowhost.api("PUT", "/api/v1/flows/later", flowhost.alice_token, json=doc)
    retried = flowhost.api("POST", f"/api/v1/flow-runs/{run['id']}/retry", flowhost.alice_token)
    assert retried.status_code == 200 and retried.get_json()["status"] == "running"
    # A retry runs the version the run was started with: its 30 s wait again.
    body = retried.get_json()
    assert tasks(body)["pause"]["status"] == "ready" and tasks(body)["issue"]["status"] == "pending"
    assert tasks(body)["pause"]["readyAt"] > body["startedAt"]


def test_another_workspace_sees_nothing(flowhost):
    create(flowhost, INTAKE)
    run = start(flowhost, "bug-intake", {"title": "x"}).get_json()
    bob = flowhost.bob_token
    for method, path in (("GET", "/api/v1/flows/bug-intake"),
                         ("PUT", "/api/v1/flows/bug-intake"),
                         ("DELETE", "/api/v1/flows/bug-intake"),
                         ("POST", "/api/v1/flows/bug-intake/runs"),
                         ("POST", "/api/v1/flows/bug-intake/disable"),
                         ("GET", f"/api/v1/flow-runs/{run['id']}"),
                         ("POST", f"/api/v1/flow-runs/{run['id']}/cancel"),
                         ("POST", f"/api/v1/flow-runs/{run['id']}/retry")):
        answer = flowhost.api(method, path, bob, json=INTAKE if method == "PUT" else {})
        assert answer.status_code == 404, (method, path, answer.get_json())
    assert flowhost.api("GET", "/api/v1/flow-runs", bob).get_json()["items"] == []


def test_a_flow_token_may_only_start_its_flow(flowhost):
    create(flowhost, INTAKE)
    create(flowhost, {"key": "other", "title": "Other", "tasks": {"m": {"map": {"a": "1"}}}})
    token = flowhost.api("POST", "/api/v1/flows/bug-intake/tokens",
                         flowhost.alice_token).get_json()["token"]
    assert start(flowhost, "bug-intake", {"title": "from a form"}, token=token).status_code == 200
    assert start(flowhost, "other", token=token).status_code == 404
    refused = flowhost.api("GET", "/api/v1/flows", token)
    assert refused.status_code == 403
    assert refused.get_json()["detail"].startswith("this token may only start its flow")


def test_delete_waits_for_unfinished_runs(flowhost):
    doc = {"key": "later", "title": "Later", "tasks": {"pause": {"wait": {"seconds": 30}}}}
    create(flowhost, doc)
    run = start(flowhost, "later", headers={}).get_json()
    refused = flowhost.api("DELETE", "/api/v1/flows/later", flowhost.alice_token)
    assert refused.status_code == 409
    flowhost.api("POST", f"/api/v1/flow-runs/{run['id']}/cancel", flowhost.alice_token)
    assert flowhost.api("DELETE", "/api/v1/flows/later", flowhost.alice_token).status_code == 204
    assert flowhost.api("GET", f"/api/v1/flow-runs/{run['id']}",
                        flowhost.alice_token).status_code == 404


@pytest.mark.parametrize("status", ["succeeded", "failed", "retry"])
def test_an_unknown_task_waits_to_be_resolved(flowhost, status):
    from sqlalchemy import update

    from host.db import Run, TaskRun, get_database, utcnow
    from host.services.flow_runs import sweep

    doc = {"key": "mail", "title": "Mail", "tasks": {
        "send": {"connection": "mail", "action": "send",
                 "inputs": {"to": "a@acme.test", "subject": "s"}},
        "after": {"needs": {"send": "completed"},
                  "map": {"id": "{{tasks.send.output.messageId}}"}}}}
    create(flowhost, doc)
    run = start(flowhost, "mail").get_json()
    sent_run = tasks(run)["send"]["runs"][0]
    # As if the process running `send` died after its request left: its row is
    # running, its action run exists, its lease has run out.
    with get_database(flowhost.app).transaction() as db:
        db.execute(update(TaskRun).where(TaskRun.key == "send").values(
            status="running", output=None, finished_at=None, holder="elsewhere|1",
            lease_expires_at=utcnow(), current_run=sent_run, runs=[]))
        db.execute(update(Run).where(Run.id == sent_run).values(status="running"))
        db.execute(update(TaskRun).where(TaskRun.key == "after").values(status="pending",
                                                                          output=None))
        from host.db import FlowRun
        db.execute(update(FlowRun).values(status="running", output=None, finished_at=None))
    sweep(flowhost.app)
    waiting = flowhost.api("GET", f"/api/v1/flow-runs/{run['id']}", flowhost.alice_token)
    body = waiting.get_json()
    assert body["status"] == "running"
    assert tasks(body)["send"]["status"] == "unknown"
    assert tasks(body)["send"]["error"]["message"].startswith(
        "the process running this task stopped after a request may have reached the provider")
    answer = {"as": status}
    if status == "succeeded":
        answer["output"] = {"messageId": "msg-seen"}
    resolved = flowhost.api("POST", f"/api/v1/flow-runs/{run['id']}/tasks/send/resolve",
                            flowhost.alice_token, json=answer)
    assert resolved.status_code == 200, resolved.get_json()
    deadline = time.monotonic() + 10
    final = resolved.get_json()
    while final["status"] == "running" and time.monotonic() < deadline:
        time.sleep(0.05)
        final = flowhost.api("GET", f"/api/v1/flow-runs/{run['id']}",
                             flowhost.alice_token).get_json()
    if status == "succeeded":
        assert final["status"] == "succeeded"
        assert tasks(final)["after"]["output"] == {"id": "msg-seen"}
    elif status == "failed":
        assert final["status"] == "failed"
        assert tasks(final)["send"]["error"]["message"] == (
            "marked failed by alice@example.com after an unknown outcome")
    else:
        assert final["status"] == "succeeded"
        assert len(flowhost.tracker.received("POST", "/mail")) == 2
    second = flowhost.api("POST", f"/api/v1/flow-runs/{run['id']}/tasks/send/resolve",
                          flowhost.alice_token, json={"as": "failed"})
    assert second.status_code == 409


def test_finished_runs_past_the_retention_are_deleted(flowhost):
    from datetime import timedelta

    from sqlalchemy import func, select, update

    from host.db import FlowRun, TaskRun, get_database, utcnow
    from host.services.flow_runs import prune

    create(flowhost, {"key": "m", "title": "M", "tasks": {"m": {"map": {"a": "1"}}}})
    old = start(flowhost, "m").get_json()["id"]
    kept = start(flowhost, "m").get_json()["id"]
    create(flowhost, {"key": "w", "title": "W", "tasks": {"w": {"wait": {"seconds": 60}}}})
    unfinished = start(flowhost, "w", headers={}).get_json()["id"]
    long_ago = utcnow() - timedelta(days=31)
    with get_database(flowhost.app).transaction() as db:
        db.execute(update(FlowRun).where(FlowRun.id.in_([old, unfinished]))
                   .values(created_at=long_ago, finished_at=None))
        db.execute(update(FlowRun).where(FlowRun.id == old).values(finished_at=long_ago))
    assert prune(flowhost.app, force=True) == 1
    with get_database(flowhost.app).sessions() as db:
        left = set(db.execute(select(FlowRun.id)).scalars())
        tasks_left = db.execute(select(func.count()).select_from(TaskRun)
                                .where(TaskRun.flow_run_id == old)).scalar()
    assert left == {kept, unfinished} and tasks_left == 0


def test_usage_lists_the_flows_and_tasks_that_name_an_installation(flowhost):
    create(flowhost, INTAKE)
    create(flowhost, {"key": "digest", "title": "Digest", "enabled": False, "tasks": {
        "each": {"forEach": {"items": "{{input.list}}", "task": {
            "connection": "linear", "action": "comment",
            "inputs": {"issue": "{{item}}", "text": "ping"}}}}}})
    installations = flowhost.api("GET", "/api/v1/installations",
                                 flowhost.alice_token).get_json()["items"]
    linear = next(i for i in installations if i["name"] == "linear")
    usage = flowhost.api("GET", f"/api/v1/installations/{linear['id']}/usage",
                         flowhost.alice_token).get_json()
    assert usage["flows"] == [
        {"flow": "bug-intake", "title": "Bug intake", "enabled": True,
         "tasks": [{"task": "issue", "action": "createIssue"},
                   {"task": "note", "action": "comment"}]},
        {"flow": "digest", "title": "Digest", "enabled": False,
         "tasks": [{"task": "each", "action": "comment"}]}]
    client = flowhost.app.test_client()
    flowhost.login(client, "alice@example.com")
    page = client.get(f"/installations/{linear['id']}").get_data(as_text=True)
    assert "Bug intake <code>bug-intake</code>: <code>issue</code> (createIssue)" in page


def test_cancel_stops_a_running_chain_before_its_next_request(flowhost):
    import threading

    entered, release = threading.Event(), threading.Event()

    def slow(request):
        entered.set()
        release.wait(10)
        return Response('{"id": "ISS-5"}', status=201, mimetype="application/json")

    flowhost.provider.route("/slow-issues", slow)
    flowhost.provider.route("/issues/ISS-5/labels", lambda r: Response(
        '{"label": "bug"}', mimetype="application/json"))
    create(flowhost, {"key": "two", "title": "Two requests", "tasks": {
        "file": {"connection": "linear", "action": "fileAndLabel",
                 "inputs": {"title": "x"}}}})
    run = start(flowhost, "two", headers={}).get_json()
    assert entered.wait(10)
    cancelled = flowhost.api("POST", f"/api/v1/flow-runs/{run['id']}/cancel",
                             flowhost.alice_token).get_json()
    assert cancelled["status"] == "cancelled"
    release.set()
    deadline = time.monotonic() + 10
    task = {}
    while time.monotonic() < deadline:
        body = flowhost.api("GET", f"/api/v1/flow-runs/{run['id']}",
                            flowhost.alice_token).get_json()
        task = tasks(body)["file"]
        if task["status"] != "running":
            break
        time.sleep(0.05)
    assert task["status"] == "failed"
    assert task["error"]["message"] == (
        "request /actions/2/requests/1 was not sent: the flow run is cancelled")
    assert [r.path for r in flowhost.provider.received
            if "issues" in r.path] == ["/slow-issues"]
