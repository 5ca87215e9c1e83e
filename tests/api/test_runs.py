"""Forms, sources and runs through the API, as a program uses them."""

import pytest

PROBLEM = "application/problem+json"


@pytest.fixture
def board(hosted):
    response = hosted.api("POST", "/api/v1/installations", hosted.alice_token,
                          json={"miniapp": "board"})
    return response.get_json()["id"]


def run(hosted, installation, parameters, token=None, action="addCard", **extra):
    return hosted.api("POST", f"/api/v1/installations/{installation}/actions/{action}/runs",
                      token or hosted.alice_token, json={"parameters": parameters, **extra})


GOOD = {"board": {"id": "b1", "name": "Roadmap", "owner": {"login": "ada"}}, "list": "l1",
        "title": "Write docs", "tags": ["docs"], "details": {"points": 3}}


def test_the_form_endpoint(hosted, board):
    body = hosted.api("GET", f"/api/v1/installations/{board}/actions/addCard/form",
                      hosted.alice_token).get_json()
    assert body["schema"]["required"] == ["board", "list", "title"]
    fields = {f["name"]: f for f in body["fields"]}
    assert fields["board"]["widget"] == "source"
    assert [o["label"] for o in fields["board"]["options"]] == ["Roadmap", "Bugs"]
    assert fields["list"]["waitingFor"] == ["board"] and "options" not in fields["list"]
    assert fields["column"]["fallback"] == "input"
    assert fields["column"]["optionsError"].endswith("columns are down for maintenance")
    assert fields["priority"] == {"name": "priority", "title": "priority", "type": "integer",
                                  "widget": "select", "required": False, "default": 2,
                                  "enum": [1, 2, 3]}
    chosen = hosted.api("GET", f"/api/v1/installations/{board}/actions/addCard/form"
                               '?board={"id":"b2"}', hosted.alice_token).get_json()
    lists = {f["name"]: f for f in chosen["fields"]}["list"]
    assert [o["value"] for o in lists["options"]] == ["l3", "l1"]


def test_the_sources_endpoint(hosted, board):
    ok = hosted.api("GET", f"/api/v1/installations/{board}/sources/rpc_lists?board=%7B%22id%22"
                           "%3A%22b1%22%7D", hosted.alice_token)
    assert ok.get_json() == {"options": [{"value": "l1", "label": "Now"},
                                         {"value": "l2", "label": "Next"}]}
    failing = hosted.api("GET", f"/api/v1/installations/{board}/sources/rpc_columns",
                         hosted.alice_token)
    assert (failing.status_code, failing.mimetype) == (502, PROBLEM)
    assert failing.get_json()["detail"] == ("Board did not return the options for rpc_columns: "
                                            "columns are down for maintenance")
    missing = hosted.api("GET", f"/api/v1/installations/{board}/sources/nope",
                         hosted.alice_token)
    assert missing.status_code == 404


def test_a_run_through_the_api(hosted, board):
    response = run(hosted, board, GOOD)
    assert response.status_code == 201
    body = response.get_json()
    assert (body["status"], body["output"], body["error"]) == (
        "succeeded", {"cardId": "card-7", "url": "https://board.example/card-7"}, None)
    assert isinstance(body["durationMs"], int) and "trace" not in body
    sent = hosted.provider.received[-1]
    assert (sent.method, sent.path) == ("POST", "/boards/b1/lists/l1/cards")
    # JSON Schema defaults are hints for forms: a program's omitted field stays omitted.
    assert sent.body == (b'{"title":"Write docs","tags":["docs"],"details":{"points":3},'
                         b'"owner":"ada"}')
    detail = hosted.api("GET", f"/api/v1/runs/{body['id']}", hosted.alice_token).get_json()
    [entry] = detail["trace"]["requests"]
    assert entry["status"] == 201 and entry["url"].endswith("/boards/b1/lists/l1/cards")
    assert detail["parameters"] == GOOD


def test_invalid_parameters_answer_422_and_send_nothing(hosted, board):
    before = len(hosted.provider.received)
    response = run(hosted, board, {"board": "b1", "title": "", "priority": 7, "nope": 1})
    assert (response.status_code, response.mimetype) == (422, PROBLEM)
    assert sorted((e["field"], e["message"]) for e in response.get_json()["errors"]) == [
        ("board", "must be an object"), ("list", "is required"),
        ("nope", "is not a field of this form"), ("priority", "must be one of: 1, 2, 3"),
        ("title", "is required")]
    assert len(hosted.provider.received) == before


def test_a_failed_run_is_201_with_the_provider_message(hosted, board):
    hosted.provider.json("/boards/b1/lists/l1/cards", '{"message": "list is archived"}',
                         status=409)
    body = run(hosted, board, GOOD).get_json()
    assert body["status"] == "failed"
    assert body["error"] == {"type": "upstream-failed",
                             "message": "request /actions/0/requests/0 (POST) failed with HTTP "
                                        "409: list is archived",
                             "request": "/actions/0/requests/0", "providerStatus": 409,
                             "providerMessage": "list is archived"}


def test_sandbox_runs_send_nothing(hosted, board):
    before = len(hosted.provider.received)
    body = run(hosted, board, GOOD, sandbox=True).get_json()
    assert (body["status"], body["sandbox"]) == ("succeeded", True)
    assert len(hosted.provider.received) == before
    detail = hosted.api("GET", f"/api/v1/runs/{body['id']}", hosted.alice_token).get_json()
    assert detail["trace"]["requests"][0]["wouldHaveSent"] is True


def test_run_lists_are_paginated_and_filtered(hosted, board):
    hosted.provider.json("/ping", '{"pong": true}')
    ids = [run(hosted, board, GOOD).get_json()["id"] for _ in range(3)]
    failed = run(hosted, board, {**GOOD, "list": "l9"}).get_json()["id"]
    page = hosted.api("GET", "/api/v1/runs?limit=2&kind=action", hosted.alice_token).get_json()
    assert [r["id"] for r in page["items"]] == [failed, ids[2]]
    rest = hosted.api("GET", f"/api/v1/runs?limit=10&kind=action&cursor={page['next']}",
                      hosted.alice_token).get_json()
    assert [r["id"] for r in rest["items"]] == [ids[1], ids[0]] and rest["next"] is None
    only_failed = hosted.api("GET", f"/api/v1/runs?installation={board}&status=failed",
                             hosted.alice_token).get_json()
    assert [r["id"] for r in only_failed["items"]] == [failed]
    bad = hosted.api("GET", "/api/v1/runs?status=weird", hosted.alice_token)
    assert bad.status_code == 422


def test_another_workspace_sees_none_of_it(hosted, board):
    run_id = run(hosted, board, GOOD).get_json()["id"]
    for method, path in [
        ("GET", f"/api/v1/installations/{board}/actions/addCard/form"),
        ("GET", f"/api/v1/installations/{board}/sources/rpc_boards"),
        ("POST", f"/api/v1/installations/{board}/actions/addCard/runs"),
        ("GET", f"/api/v1/runs/{run_id}"),
        ("GET", f"/api/v1/runs?installation={board}"),
    ]:
        response = hosted.api(method, path, hosted.bob_token,
                              json={"parameters": GOOD} if method == "POST" else None)
        assert response.status_code == 404, path
    assert hosted.api("GET", "/api/v1/runs", hosted.bob_token).get_json()["items"] == []


def test_unknown_action(hosted, board):
    response = run(hosted, board, {}, action="nope")
    assert response.status_code == 404
    assert response.get_json()["detail"] == "Board has no action 'nope'"


def test_a_pathological_pattern_fails_its_field_fast(tmp_path, provider):
    """An overlapping-alternatives pattern passes the lint (it has no nested repeat), so
    the bounded matcher is what keeps a long input from holding the worker."""
    import time

    from tests.conftest import build_hosted

    manifest = {
        "name": "patterned", "version": "1.0.0", "title": "Patterned", "description": "d",
        "allowedHosts": [f"127.0.0.1:{provider.port}"],
        "actions": [{"name": "go", "title": "Go", "parameters": {
            "type": "object", "properties": {"word": {"type": "string",
                                                       "pattern": "^(a|a)+$"}}},
            "requests": [{"url": provider.base + "/ping", "method": "GET"}]}]}
    hosted = build_hosted(tmp_path, provider, manifests={"patterned": manifest})
    installation = hosted.api("POST", "/api/v1/installations", hosted.alice_token,
                              json={"miniapp": "patterned"}).get_json()["id"]
    started = time.monotonic()
    response = run(hosted, installation, {"word": "a" * 40 + "!"}, action="go")
    elapsed = time.monotonic() - started
    assert response.status_code == 422
    assert response.get_json()["errors"] == [{
        "field": "word",
        "message": "took too long to check against the pattern of this field; enter a "
                   "shorter value, or ask the mini-app's author to simplify the pattern"}]
    assert elapsed < 10.0  # cut at 0.25 s; unbounded, days
    assert [r.path for r in provider.received] == []
    assert run(hosted, installation, {"word": "aaaa"}, action="go").status_code == 201
    assert [r.path for r in provider.received] == ["/ping"]


def test_a_credential_the_provider_echoes_is_redacted_in_the_output(tmp_path, provider):
    """The provider answers with the API key it was sent: the output in the API, on the
    run page and in the database shows ``[redacted]``, as the trace does."""
    import json

    from werkzeug.wrappers import Response

    from host.db import Run, get_database
    from tests.conftest import build_hosted

    manifest = {
        "name": "echoer", "version": "1.0.0", "title": "Echoer", "description": "d",
        "allowedHosts": [f"127.0.0.1:{provider.port}"],
        "auth": {"type": "apiKey", "fields": {"type": "object", "required": ["apiKey"],
                                              "properties": {"apiKey": {"type": "string"}}}},
        "actions": [{"name": "whoami", "title": "Who am I",
                     "requests": [{"url": provider.base + "/whoami", "method": "GET",
                                   "headers": {"X-Api-Key": "[[apiKey]]"},
                                   "mapping": {"key": "$.key", "note": "$.note",
                                               "account": "$.account"}}]}]}
    hosted = build_hosted(tmp_path, provider, manifests={"echoer": manifest})
    provider.route("/whoami", lambda request: Response(json.dumps({
        "key": request.headers["X-Api-Key"], "account": "acme",
        "note": f"key {request.headers['X-Api-Key']} is valid"}), mimetype="application/json"))
    installation = hosted.api("POST", "/api/v1/installations", hosted.alice_token, json={
        "miniapp": "echoer", "credentials": {"apiKey": "sk-live-abcdef123456"}}).get_json()["id"]
    answer = run(hosted, installation, {}, action="whoami").get_json()
    assert answer["output"] == {"key": "[redacted]", "note": "key [redacted] is valid",
                                "account": "acme"}
    with get_database(hosted.app).sessions() as db:
        stored = db.get(Run, answer["id"])
        assert stored.output == answer["output"]
        assert "sk-live-abcdef123456" not in json.dumps([stored.output, stored.trace])
    client = hosted.app.test_client()
    hosted.login(client, "alice@example.com")
    page = client.get(f"/runs/{answer['id']}").get_data(as_text=True)
    assert 'id="run-status">succeeded<' in page
    assert "sk-live-abcdef123456" not in page and "[redacted]" in page


def test_echoed_credentials_are_redacted_in_metadata_too(tmp_path, provider):
    """The key test's answer (stored as the installation's metadata) echoes the key: it
    is redacted there as in the output. A value shorter than eight characters is left
    as it is: a short credential value is a user name an output may rightly show."""
    import json

    from werkzeug.wrappers import Response

    from host.db import Installation, get_database
    from tests.conftest import build_hosted

    key_header = {"X-Api-Key": "[[apiKey]]"}
    manifest = {
        "name": "echoer", "version": "1.0.0", "title": "Echoer", "description": "d",
        "allowedHosts": [f"127.0.0.1:{provider.port}"],
        "auth": {"type": "apiKey", "fields": {"type": "object", "required": ["apiKey"],
                                              "properties": {"apiKey": {"type": "string"}}},
                 "test": {"url": provider.base + "/whoami", "method": "GET",
                          "headers": key_header,
                          "mapping": {"account": "$.key", "plan": "$.plan"}}},
        "actions": [{"name": "whoami", "title": "Who am I",
                     "requests": [{"url": provider.base + "/whoami", "method": "GET",
                                   "headers": key_header,
                                   "mapping": {"key": "$.key", "plan": "$.plan",
                                               "note": "$.note"}}]}]}
    hosted = build_hosted(tmp_path, provider, manifests={"echoer": manifest})
    provider.route("/whoami", lambda request: Response(json.dumps({
        "key": request.headers["X-Api-Key"], "plan": "pro",
        "note": f"key {request.headers['X-Api-Key']} ok"}), mimetype="application/json"))
    for key, shown in [("sk-live-abcdef123456", "[redacted]"), ("ada-123", "ada-123")]:
        answer = hosted.api("POST", "/api/v1/installations", hosted.alice_token, json={
            "miniapp": "echoer", "credentials": {"apiKey": key}}).get_json()
        assert answer["metadata"] == {"account": shown, "plan": "pro"}
        if shown != key:
            with get_database(hosted.app).sessions() as db:
                assert key not in json.dumps(db.get(Installation, answer["id"]).meta)
        output = run(hosted, answer["id"], {}, action="whoami").get_json()["output"]
        assert output == {"key": shown, "plan": "pro", "note": f"key {shown} ok"}


DEEP = "[" * 1000 + "]" * 1000


@pytest.mark.parametrize("token", ["alice", None])
def test_deeply_nested_bodies_are_a_400_problem(hosted, board, token):
    """Nesting past 64 levels is refused before anything recurses on it, with or
    without a token."""
    for path in ("/api/v1/installations",
                 f"/api/v1/installations/{board}/actions/addCard/runs"):
        response = hosted.api("POST", path, hosted.alice_token if token else None,
                              data=DEEP, content_type="application/json")
        assert response.status_code in (400, 401), response.get_data(as_text=True)
        assert response.content_type == PROBLEM
        if response.status_code == 400:
            assert response.get_json()["detail"] == (
                "the body nests deeper than 64 levels; send a flatter document")
    nested = {"parameters": {"title": "x", "details": {"notes": "[" * 100}}}
    assert run(hosted, board, nested["parameters"]).status_code == 422  # a string is fine


def test_deeply_nested_form_and_query_values_are_field_errors(hosted, board):
    response = hosted.api("GET", f"/api/v1/installations/{board}/sources/rpc_lists?board="
                          + "[" * 100 + "]" * 100, hosted.alice_token)
    assert response.status_code == 422
    assert response.get_json()["errors"] == [
        {"field": "", "message": "a value nests deeper than 64 levels"}]
    client = hosted.app.test_client()
    hosted.login(client, "alice@example.com")
    from tests.conftest import csrf_from

    path = f"/installations/{board}/actions/addCard"
    page = client.get(path).get_data(as_text=True)
    answer = client.post(path, data={"csrf_token": csrf_from(page), "board": DEEP,
                                     "list": '"l1"', "title": "t"})
    assert answer.status_code == 422
    assert "nests deeper than 64 levels" in answer.get_data(as_text=True)


def test_usage_counts_every_run_of_each_action_and_the_last(hosted, board):
    hosted.api("GET", f"/api/v1/installations/{board}/sources/rpc_boards", hosted.alice_token)
    run(hosted, board, GOOD)
    run(hosted, board, {**GOOD, "list": "l9"})  # failed: it ran all the same
    last = run(hosted, board, GOOD, sandbox=True).get_json()
    run(hosted, board, {})  # invalid: nothing ran
    usage = hosted.api("GET", f"/api/v1/installations/{board}/usage", hosted.alice_token)
    assert usage.get_json() == {
        "actions": [{"action": "addCard", "count": 3, "lastRunAt": last["startedAt"]}],
        "flows": []}
