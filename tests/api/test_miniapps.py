import pytest

from host import create_app

from ..conftest import make_config

PROBLEM = "application/problem+json"


def test_list_is_paginated_and_sorted_by_name(client):
    first = client.get("/api/v1/miniapps?limit=2")
    assert first.status_code == 200
    body = first.get_json()
    assert [item["name"] for item in body["items"]] == ["chat", "notes"]
    assert body["next"]
    second = client.get(f"/api/v1/miniapps?limit=2&cursor={body['next']}").get_json()
    assert [item["name"] for item in second["items"]] == ["weather"]
    assert second["next"] is None


def test_list_item_shape(client):
    items = client.get("/api/v1/miniapps?q=weather").get_json()["items"]
    assert items == [{
        "name": "weather",
        "version": "1.0.0",
        "title": "Weather Now",
        "description": "Current weather for a city.",
        "categories": ["data"],
        "icon": "/miniapps/weather/icon",
        "authType": "none",
        "actions": [{"name": "current", "title": "Current weather",
                     "description": "Temperature and conditions now."}],
    }]


def test_search_and_category(client):
    def names(query):
        return [i["name"] for i in client.get(f"/api/v1/miniapps?{query}").get_json()["items"]]

    assert names("q=notes") == ["notes"]
    assert names("category=communication") == ["chat"]
    assert names("q=weather&category=communication") == []


def test_detail_has_parameters_sources_and_no_secrets(client):
    body = client.get("/api/v1/miniapps/chat").get_json()
    assert body["version"] == "2.3.0"
    assert body["sources"] == ["rpc_channels", "rpc_threads"]
    assert body["allowedHosts"] == ["chat.example", "*.chat.example"]
    assert body["auth"] == {"type": "oauth2", "scope": "channels:read chat:write", "pkce": True,
                            "refreshes": True}
    [action] = body["actions"]
    assert action["parameters"]["required"] == ["channel", "text"]
    assert "clientSecret" not in str(body)


def test_detail_of_an_older_version(client):
    body = client.get("/api/v1/miniapps/notes?version=1.0.0").get_json()
    assert (body["version"], body["versions"]) == ("1.0.0", ["1.1.0", "1.0.0"])


def test_unknown_miniapp_is_a_problem(client):
    response = client.get("/api/v1/miniapps/nope")
    assert response.status_code == 404
    assert response.mimetype == PROBLEM
    assert response.get_json() == {
        "type": "https://minihost.dev/problems/not-found",
        "title": "Not found",
        "status": 404,
        "detail": "no mini-app named 'nope' in the catalog",
    }


@pytest.mark.parametrize(
    ("query", "field", "message"),
    [("limit=0", "limit", "must be a whole number from 1 to 200"),
     ("limit=201", "limit", "must be a whole number from 1 to 200"),
     ("limit=abc", "limit", "must be a whole number from 1 to 200"),
     ("limit=%C2%B2", "limit", "must be a whole number from 1 to 200"),  # "²"
     ("cursor=MQ", "cursor", "not a cursor this API returned; use the `next` value as given"),
     ("cursor=WzFd", "cursor", "not a cursor this API returned; use the `next` value as given"),
     ("cursor=%25%25", "cursor", "not a cursor this API returned; use the `next` value as given")],
)
def test_bad_paging_arguments(client, query, field, message):
    response = client.get(f"/api/v1/miniapps?{query}")
    assert response.status_code == 422
    assert response.mimetype == PROBLEM
    assert response.get_json()["errors"] == [{"field": field, "message": message}]


def test_unknown_routes_and_methods_are_problems(client):
    missing = client.get("/api/v1/nothing")
    assert (missing.status_code, missing.mimetype) == (404, PROBLEM)
    wrong = client.delete("/api/v1/miniapps")
    assert (wrong.status_code, wrong.mimetype) == (405, PROBLEM)
    assert wrong.headers["Allow"] == "GET, HEAD, OPTIONS"


def test_healthz(client):
    response = client.get("/healthz")
    assert (response.status_code, response.get_json()) == (200, {"status": "ok"})


def test_healthz_when_the_database_is_down(tmp_path):
    app = create_app(make_config(
        tmp_path, DATABASE_URL="postgresql+psycopg://nobody@127.0.0.1:9/none"
    ), instance_path=tmp_path)
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.mimetype == PROBLEM
    body = response.get_json()
    assert body["title"] == "Database unavailable"
    assert body["detail"].startswith("the database did not answer: ")


def test_internal_errors_are_problems_without_details(app):
    @app.get("/api/v1/boom")
    def boom():
        raise RuntimeError("secret detail")

    response = app.test_client().get("/api/v1/boom")
    assert response.status_code == 500
    assert response.get_json()["detail"] == "internal error; see the host log"
