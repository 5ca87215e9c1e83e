"""A whole journey, then every page, API answer, log record, trace, audit detail and
database row is searched for the secrets used: none may appear, in any encoding."""

import base64
import json
import logging
from urllib.parse import quote, quote_plus

from sqlalchemy import MetaData, select
from werkzeug.wrappers import Response

from host.db import Installation, Run, get_database

from .conftest import csrf_from

API_KEY = "key-good-123"
LEAKY_KEY = "key-echoed-7777"
PASSWORD = "s3cret-pw"


def forms(secret):
    return {secret, quote(secret, safe=""), quote_plus(secret),
            base64.b64encode(secret.encode()).decode()}


def test_no_secret_appears_anywhere(hosted, caplog):
    caplog.set_level(logging.DEBUG)

    def me(request):
        key = request.headers.get("X-Api-Key")
        if key == API_KEY:
            return Response('{"name": "Alice Corp"}', mimetype="application/json")
        # A careless provider that echoes the key it refused.
        return Response(json.dumps({"message": f"key {key} is invalid"}), status=401,
                        mimetype="application/json")

    hosted.provider.route("/me", me)
    texts = []
    client = hosted.app.test_client()
    hosted.login(client, "alice@example.com")

    def page(path):
        response = client.get(path)
        texts.append(response.get_data(as_text=True))
        return response

    def post(path, from_page, **data):
        token = csrf_from(client.get(from_page).get_data(as_text=True))
        response = client.post(path, data={"csrf_token": token, **data})
        texts.append(response.get_data(as_text=True))
        return response

    refused = post("/miniapps/keyed/connect", "/miniapps/keyed/connect", apiKey=LEAKY_KEY)
    assert "is invalid" in refused.get_data(as_text=True)
    keyed = post("/miniapps/keyed/connect", "/miniapps/keyed/connect", apiKey=API_KEY)
    basic = post("/miniapps/basicapp/connect", "/miniapps/basicapp/connect", username="ada",
                 password=PASSWORD)
    wrong = post(basic.headers["Location"] + "/connect", basic.headers["Location"],
                 username="ada", password=PASSWORD + "-wrong")
    assert wrong.status_code == 422

    api = hosted.api("POST", "/api/v1/installations", hosted.alice_token,
                     json={"miniapp": "keyed", "credentials": {"apiKey": LEAKY_KEY}})
    texts.append(api.get_data(as_text=True))
    for path in ("/installations", keyed.headers["Location"], basic.headers["Location"],
                 keyed.headers["Location"] + "/audit", "/audit", "/account",
                 "/miniapps/keyed"):
        assert page(path).status_code == 200
    for path in ("/api/v1/installations", "/api/v1/audit",
                 "/api/v1/installations/" + keyed.headers["Location"].rsplit("/", 1)[1]):
        texts.append(hosted.api("GET", path, hosted.alice_token).get_data(as_text=True))
    post(keyed.headers["Location"] + "/uninstall", keyed.headers["Location"])

    texts.extend(record.getMessage() for record in caplog.records)
    texts.extend(str(record.exc_info) for record in caplog.records if record.exc_info)
    database = get_database(hosted.app)
    with database.engine.connect() as connection:
        metadata = MetaData()
        metadata.reflect(connection)
        for table in metadata.sorted_tables:
            for row in connection.execute(select(table)):
                texts.append(repr(tuple(row)))
    with database.sessions() as db:
        traces = [json.dumps(run.trace) + json.dumps(run.error) for run in db.scalars(select(Run))]
        assert db.scalars(select(Installation)).first() is not None
    assert traces, "the journey recorded runs"
    texts.extend(traces)

    secrets = set()
    for secret in (API_KEY, LEAKY_KEY, PASSWORD, f"ada:{PASSWORD}",
                   hosted.alice_token, hosted.bob_token):
        secrets |= forms(secret)
    everything = "\n".join(texts)
    found = sorted(s for s in secrets if s in everything)
    assert found == [], found
