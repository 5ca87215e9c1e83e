"""The API as a contract: the OpenAPI document is valid and complete, every id is
tenant-scoped, and every error is problem JSON."""

import re

import pytest
from openapi_spec_validator import validate

from host.api.spec import OPERATIONS, document

PROBLEM = "application/problem+json"


def test_the_document_is_valid_openapi_3_1(client):
    served = client.get("/api/v1/openapi.json")
    assert served.status_code == 200
    body = served.get_json()
    assert body == document()
    assert body["openapi"] == "3.1.0"
    validate(body)


def flask_routes(app):
    found = set()
    for rule in app.url_map.iter_rules():
        if not (rule.rule.startswith("/api/") or rule.rule == "/healthz"):
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            found.add((method.lower(), path))
    return found


def test_every_api_route_is_documented_and_nothing_else(app):
    documented = {(op.method, op.path) for op in OPERATIONS}
    assert flask_routes(app) == documented


def test_every_operation_answers_problems_and_has_examples_somewhere():
    doc = document()
    for path, methods in doc["paths"].items():
        for method, operation in methods.items():
            assert "default" in operation["responses"], (method, path)
            assert operation["responses"]["default"]["content"] == {
                "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    schemas = doc["components"]["schemas"]
    assert schemas["Problem"]["examples"] and schemas["RunCreate"]["examples"]


ID_OPERATIONS = [op for op in OPERATIONS if "{installation_id}" in op.path
                 or "{run_id}" in op.path]


@pytest.fixture
def objects(hosted):
    created = hosted.api("POST", "/api/v1/installations", hosted.alice_token,
                         json={"miniapp": "board"}).get_json()
    run = hosted.api("POST", f"/api/v1/installations/{created['id']}/actions/addCard/runs",
                     hosted.alice_token, json={"parameters": {
                         "board": {"id": "b1"}, "list": "l1", "title": "t"}}).get_json()
    return {"installation_id": created["id"], "run_id": run["id"], "action": "addCard",
            "source": "rpc_boards", "data_source": "boards"}


def fill(path, values):
    return re.sub(r"{(\w+)}", lambda m: values[m.group(1)], path)


BODIES = {"post": {"parameters": {"board": {"id": "b1"}, "list": "l1", "title": "t"}}}


@pytest.mark.parametrize("operation", ID_OPERATIONS, ids=lambda o: f"{o.method} {o.path}")
def test_another_workspace_gets_404_and_strangers_401(hosted, objects, operation):
    path = fill(operation.path, objects)
    body = {} if operation.path.endswith("/connect") else BODIES.get(operation.method)
    theirs = hosted.api(operation.method.upper(), path, hosted.bob_token, json=body)
    assert theirs.status_code == 404, theirs.get_json()
    assert theirs.mimetype == PROBLEM
    anonymous = hosted.api(operation.method.upper(), path, json=body)
    assert anonymous.status_code == 401 and anonymous.mimetype == PROBLEM
    mine = hosted.api(operation.method.upper(), path, hosted.alice_token, json=body)
    assert mine.status_code not in (401, 404) and mine.status_code < 500, mine.get_json()


def test_list_filters_with_another_workspaces_ids_are_404(hosted, objects):
    for path in (f"/api/v1/runs?installation={objects['installation_id']}",
                 f"/api/v1/audit?installation={objects['installation_id']}"):
        assert hosted.api("GET", path, hosted.bob_token).status_code == 404


@pytest.mark.parametrize(("method", "path", "kwargs", "status"), [
    ("GET", "/api/v1/nowhere", {}, 404),
    ("PATCH", "/api/v1/installations", {}, 405),
    ("POST", "/api/v1/installations", {"data": "{", "content_type": "application/json"}, 400),
    ("POST", "/api/v1/installations", {"data": "miniapp=x",
                                       "content_type": "application/x-www-form-urlencoded"},
     400),
    ("POST", "/api/v1/installations", {"json": ["not", "an", "object"]}, 422),
    ("POST", "/api/v1/installations", {"data": "x" * (1024 * 1024 + 1),
                                       "content_type": "application/json"}, 413),
])
def test_every_error_is_problem_json(hosted, method, path, kwargs, status):
    response = hosted.api(method, path, hosted.alice_token, **kwargs)
    assert response.status_code == status
    assert response.mimetype == PROBLEM
    body = response.get_json()
    assert set(body) >= {"type", "title", "status", "detail"} and body["status"] == status


def test_the_api_page_is_readable_and_local(client):
    page = client.get("/api")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "POST /api/v1/installations/{installation_id}/actions/{action}/runs" in html
    assert 'href="/api/v1/openapi.json"' in html
    assert "https://" not in re.sub(r"https://minihost\.dev/problems/\w+", "", html)
