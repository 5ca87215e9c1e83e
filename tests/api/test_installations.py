"""``/api/v1/installations`` and ``/api/v1/audit`` with tokens, as a program uses them."""

import pytest

from ..conftest import csrf_from

PROBLEM = "application/problem+json"


def create(hosted, token, **body):
    return hosted.api("POST", "/api/v1/installations", token, json=body)


def test_unauthenticated_calls_get_401_problems(hosted):
    response = hosted.api("GET", "/api/v1/installations")
    assert response.status_code == 401 and response.mimetype == PROBLEM
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="minihost"'
    assert response.get_json()["detail"] == (
        "sign in, or send an API token as Authorization: Bearer <token>")
    bad = hosted.api("GET", "/api/v1/installations", "mh_not-a-token")
    assert bad.status_code == 401
    assert bad.get_json()["detail"] == (
        "the API token is unknown, revoked or belongs to a disabled user")


def test_install_an_api_key_miniapp(hosted):
    response = create(hosted, hosted.alice_token, miniapp="keyed",
                      credentials={"apiKey": "key-good-123"}, config={"region": "eu"})
    assert response.status_code == 201
    body = response.get_json()
    assert set(body) == {"id", "name", "miniapp", "version", "status", "error", "metadata",
                         "config", "sandbox", "credentialKeys", "webhookUrl", "createdAt",
                         "updatedAt"}
    assert (body["name"], body["miniapp"], body["version"]) == ("keyed", "keyed", "1.0.0")
    assert body["webhookUrl"].startswith(f"http://127.0.0.1:5000/hooks/{body['id']}/")
    assert (body["status"], body["error"]) == ("active", None)
    assert body["credentialKeys"] == ["apiKey", "hookId"]
    assert body["metadata"] == {"account": "Alice Corp"} and body["config"] == {"region": "eu"}
    assert "key-good-123" not in response.get_data(as_text=True)
    fetched = hosted.api("GET", f"/api/v1/installations/{body['id']}", hosted.alice_token)
    assert fetched.get_json() == body


def test_refused_credentials_answer_422_with_the_provider_message(hosted):
    response = create(hosted, hosted.alice_token, miniapp="keyed",
                      credentials={"apiKey": "key-wrong-1"})
    assert response.status_code == 422 and response.mimetype == PROBLEM
    assert response.get_json()["providerMessage"] == "Invalid API key"
    assert response.get_json()["detail"] == (
        "Keyed Service did not accept the credentials: Invalid API key")
    listing = hosted.api("GET", "/api/v1/installations", hosted.alice_token).get_json()
    assert listing == {"items": [], "next": None}


@pytest.mark.parametrize(
    ("body", "errors"),
    [({}, [{"field": "miniapp", "message": "is required"}]),
     ({"miniapp": "open", "sandbox": "yes"}, [{"field": "sandbox",
                                               "message": "must be true or false"}]),
     ({"miniapp": "open", "colour": "red"}, [{"field": "colour",
                                              "message": "is not a member of this body"}]),
     ({"miniapp": "keyed", "credentials": {}}, [{"field": "apiKey", "message": "is required"}]),
     ({"miniapp": "open", "config": {"subdomain": "Not A Label"}},
      [{"field": "config.subdomain",
        "message": "must be one DNS label: lower-case letters, digits and '-'"}]),
     ({"miniapp": "keyed", "credentials": {"apiKey": "key-good-123"},
       "config": {"webhookUrl": "https://attacker.example/", "hostUrl": "x"}},
      [{"field": "config.hostUrl", "message": "is a value the host sets itself; leave it "
                                              "out of config"},
       {"field": "config.webhookUrl", "message": "is a value the host sets itself; leave it "
                                                 "out of config"}])],
)
def test_invalid_bodies_answer_422_per_field(hosted, body, errors):
    response = create(hosted, hosted.alice_token, **body)
    assert response.status_code == 422, response.get_json()
    assert response.get_json()["errors"] == errors
    assert hosted.provider.received == []


def test_malformed_json_and_wrong_content_type_answer_400(hosted):
    broken = hosted.api("POST", "/api/v1/installations", hosted.alice_token, data="{nope",
                        content_type="application/json")
    assert (broken.status_code, broken.mimetype) == (400, PROBLEM)
    assert broken.get_json()["detail"] == "the body is not valid JSON"
    form = hosted.api("POST", "/api/v1/installations", hosted.alice_token, data="miniapp=open")
    assert form.status_code == 400
    assert form.get_json()["detail"] == (
        "send the body as JSON with Content-Type: application/json")


def test_unknown_miniapp_is_404(hosted):
    response = create(hosted, hosted.alice_token, miniapp="nope")
    assert response.status_code == 404
    assert response.get_json()["detail"] == "no mini-app named 'nope' in the catalog"


def test_list_is_paginated_newest_first(hosted):
    ids = [create(hosted, hosted.alice_token, miniapp="open").get_json()["id"]
           for _ in range(3)]
    first = hosted.api("GET", "/api/v1/installations?limit=2", hosted.alice_token).get_json()
    assert [i["id"] for i in first["items"]] == ids[::-1][:2]
    second = hosted.api("GET", f"/api/v1/installations?limit=2&cursor={first['next']}",
                        hosted.alice_token).get_json()
    assert [i["id"] for i in second["items"]] == [ids[0]] and second["next"] is None


def test_delete_then_404_while_runs_and_audit_stay(hosted):
    body = create(hosted, hosted.alice_token, miniapp="keyed",
                  credentials={"apiKey": "key-good-123"}).get_json()
    path = f"/api/v1/installations/{body['id']}"
    deleted = hosted.api("DELETE", path, hosted.alice_token)
    assert (deleted.status_code, deleted.get_data()) == (204, b"")
    assert hosted.api("GET", path, hosted.alice_token).status_code == 404
    audit = hosted.api("GET", "/api/v1/audit", hosted.alice_token).get_json()["items"]
    kinds = [e["kind"] for e in audit]
    assert kinds[0] == "uninstalled" and "installed" in kinds
    assert audit[0]["detail"] == {"unregistration": "succeeded"}
    assert set(audit[0]) == {"id", "at", "actor", "installation", "kind", "detail"}


def test_reconnect_through_the_api(hosted):
    body = create(hosted, hosted.alice_token, miniapp="keyed",
                  credentials={"apiKey": "key-good-123"}).get_json()
    path = f"/api/v1/installations/{body['id']}/connect"
    refused = hosted.api("POST", path, hosted.alice_token,
                         json={"credentials": {"apiKey": "key-wrong-1"}})
    assert refused.status_code == 422
    again = hosted.api("POST", path, hosted.alice_token,
                       json={"credentials": {"apiKey": "key-good-123"}})
    assert again.status_code == 200 and again.get_json()["id"] == body["id"]


def test_usage_and_audit_filter(hosted):
    body = create(hosted, hosted.alice_token, miniapp="open").get_json()
    usage = hosted.api("GET", f"/api/v1/installations/{body['id']}/usage", hosted.alice_token)
    assert usage.get_json() == {"actions": [], "flows": []}
    audit = hosted.api("GET", f"/api/v1/audit?installation={body['id']}",
                       hosted.alice_token).get_json()
    assert {e["installation"] for e in audit["items"]} == {body["id"]}


def test_another_workspace_gets_404_everywhere(hosted):
    body = create(hosted, hosted.alice_token, miniapp="keyed",
                  credentials={"apiKey": "key-good-123"}).get_json()
    installation = body["id"]
    cases = [("GET", f"/api/v1/installations/{installation}", None),
             ("DELETE", f"/api/v1/installations/{installation}", None),
             ("POST", f"/api/v1/installations/{installation}/connect",
              {"credentials": {"apiKey": "key-good-123"}}),
             ("GET", f"/api/v1/installations/{installation}/usage", None),
             ("GET", f"/api/v1/audit?installation={installation}", None)]
    for method, path, json_body in cases:
        theirs = hosted.api(method, path, hosted.bob_token, json=json_body)
        random = hosted.api(method, path.replace(installation, "ins_01AAAAAAAAAAAAAAAAAAAAAAAA"),
                            hosted.bob_token, json=json_body)
        assert theirs.status_code == 404, (method, path)
        assert theirs.get_json()["title"] == random.get_json()["title"] == "Not found"
    listing = hosted.api("GET", "/api/v1/installations", hosted.bob_token).get_json()
    assert listing["items"] == []
    assert hosted.api("GET", f"/api/v1/installations/{installation}",
                      hosted.alice_token).status_code == 200


def test_cookie_sessions_need_csrf_on_the_api(hosted):
    client = hosted.app.test_client()
    hosted.login(client, "alice@example.com")
    refused = client.post("/api/v1/installations", json={"miniapp": "open"})
    assert (refused.status_code, refused.mimetype) == (400, PROBLEM)
    token = csrf_from(client.get("/account").get_data(as_text=True))
    accepted = client.post("/api/v1/installations", json={"miniapp": "open"},
                           headers={"X-CSRFToken": token})
    assert accepted.status_code == 201


def test_the_catalog_answers_the_same_signed_in_or_not(hosted):
    anonymous = hosted.api("GET", "/api/v1/miniapps").get_json()
    signed_in = hosted.api("GET", "/api/v1/miniapps", hosted.alice_token).get_json()
    assert anonymous == signed_in


def test_installations_are_named_after_their_miniapp_then_numbered(hosted):
    first = create(hosted, hosted.alice_token, miniapp="open").get_json()
    second = create(hosted, hosted.alice_token, miniapp="open").get_json()
    chosen = create(hosted, hosted.alice_token, miniapp="open", name="crm_eu").get_json()
    assert (first["name"], second["name"], chosen["name"]) == ("open", "open-2", "crm_eu")
    # Another workspace has its own names.
    assert create(hosted, hosted.bob_token, miniapp="open").get_json()["name"] == "open"
    taken = create(hosted, hosted.alice_token, miniapp="open", name="open-2")
    assert taken.status_code == 422
    assert taken.get_json()["errors"] == [{"field": "name", "message": (
        "another installation of this workspace is called 'open-2'; choose another name")}]
    bad = create(hosted, hosted.alice_token, miniapp="open", name="Open Sales")
    assert bad.status_code == 422 and bad.get_json()["errors"][0]["field"] == "name"
    # An uninstalled installation's name is free again.
    hosted.api("DELETE", f"/api/v1/installations/{first['id']}", hosted.alice_token)
    assert create(hosted, hosted.alice_token, miniapp="open").get_json()["name"] == "open"


def test_rename_checks_the_name_and_is_audited(hosted):
    one = create(hosted, hosted.alice_token, miniapp="open").get_json()
    two = create(hosted, hosted.alice_token, miniapp="open").get_json()
    path = f"/api/v1/installations/{two['id']}"
    renamed = hosted.api("PATCH", path, hosted.alice_token, json={"name": "sales"})
    assert renamed.status_code == 200 and renamed.get_json()["name"] == "sales"
    clash = hosted.api("PATCH", path, hosted.alice_token, json={"name": one["name"]})
    assert clash.status_code == 422
    assert hosted.api("GET", path, hosted.alice_token).get_json()["name"] == "sales"
    invalid = hosted.api("PATCH", path, hosted.alice_token, json={"name": "-x"})
    assert invalid.status_code == 422
    audit = hosted.api("GET", f"/api/v1/audit?installation={two['id']}",
                       hosted.alice_token).get_json()["items"]
    assert audit[0]["kind"] == "renamed"
    assert audit[0]["detail"] == {"from": "open-2", "to": "sales"}
    assert hosted.api("PATCH", path, hosted.bob_token,
                      json={"name": "mine"}).status_code == 404


def test_put_credentials_tests_them_before_storing(hosted):
    body = create(hosted, hosted.alice_token, miniapp="keyed",
                  credentials={"apiKey": "key-good-123"}).get_json()
    path = f"/api/v1/installations/{body['id']}/credentials"
    refused = hosted.api("PUT", path, hosted.alice_token,
                         json={"credentials": {"apiKey": "key-wrong-1"}})
    assert refused.status_code == 422
    missing = hosted.api("PUT", path, hosted.alice_token, json={})
    assert missing.status_code == 422
    assert missing.get_json()["errors"][0]["field"] == "credentials"
    replaced = hosted.api("PUT", path, hosted.alice_token,
                          json={"credentials": {"apiKey": "key-good-123"}})
    assert replaced.status_code == 200 and replaced.get_json()["status"] == "active"
    audit = hosted.api("GET", f"/api/v1/audit?installation={body['id']}",
                       hosted.alice_token).get_json()["items"]
    kinds = [e["kind"] for e in audit]
    assert kinds.index("connected") < kinds.index("connect_failed")
    assert hosted.api("PUT", path, hosted.bob_token,
                      json={"credentials": {"apiKey": "key-good-123"}}).status_code == 404


def test_sign_in_for_a_token(hosted):
    answer = hosted.api("POST", "/api/v1/auth/token",
                        json={"email": "alice@example.com", "password": "correct horse",
                              "name": "backup script"})
    assert answer.status_code == 201
    body = answer.get_json()
    assert set(body) == {"token", "id", "name"} and body["name"] == "backup script"
    assert hosted.api("GET", "/api/v1/installations", body["token"]).status_code == 200
    wrong = hosted.api("POST", "/api/v1/auth/token",
                       json={"email": "alice@example.com", "password": "nope"})
    assert wrong.status_code == 401
    assert wrong.get_json()["detail"] == (
        "the email or password is wrong, or the account is disabled")
    for _ in range(4):
        hosted.api("POST", "/api/v1/auth/token",
                   json={"email": "alice@example.com", "password": "nope"})
    limited = hosted.api("POST", "/api/v1/auth/token",
                         json={"email": "alice@example.com", "password": "correct horse"})
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) > 0
    missing = hosted.api("POST", "/api/v1/auth/token", json={"email": "alice@example.com"})
    assert missing.status_code == 422
