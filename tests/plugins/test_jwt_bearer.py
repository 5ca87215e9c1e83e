"""The bundled ``jwt_bearer`` auth type against a real RFC 7523 authorization server
(authlib's ``JWTBearerGrant``), through the bundled Google Sheets service-account
mini-app with its Google URLs pointed at that server."""

import base64
import json
import re
import threading
import time

import pytest
from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import ClientMixin
from authlib.oauth2.rfc7523 import JWTBearerGrant
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask, jsonify, request
from joserfc.jwk import RSAKey
from sqlalchemy import select
from werkzeug.serving import make_server

from host.db import Run, get_database
from host.principal import Principal
from host.services.accounts import personal_workspace
from host.services.installations import list_installations
from host.services.runs import run_action

from ..conftest import REPO, build_hosted, csrf_from

EMAIL = "sheets-bot@project.iam.gserviceaccount.com"
SCOPE = ("https://www.googleapis.com/auth/spreadsheets "
         "https://www.googleapis.com/auth/drive.metadata.readonly")


def pem_pair():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, public.decode()


class ServiceAccount(ClientMixin):
    def __init__(self, public_key):
        self.public_key = public_key

    def get_client_id(self):
        return EMAIL

    def get_allowed_scope(self, scope):
        return scope or SCOPE  # as Google: the scope travels in the JWT, not the form

    def check_grant_type(self, grant_type):
        return grant_type == JWTBearerGrant.GRANT_TYPE


class Person:
    def __init__(self, email):
        self.email = email

    def get_user_id(self):
        return self.email


class Google:
    """Token endpoint (RFC 7523 via authlib) and a Sheets values endpoint."""

    def __init__(self, public_key):
        self.account = ServiceAccount(public_key)
        self.tokens = {}
        self.assertions = []
        self.lifetime = 3600
        app = Flask("fake-google")
        server = AuthorizationServer(app, query_client=lambda cid: None,
                                     save_token=self._save)
        outer = self

        class Grant(JWTBearerGrant):
            def resolve_issuer_client(self, issuer):
                return outer.account if issuer == EMAIL else None

            def resolve_client_public_key(self, client):
                return RSAKey.import_key(client.public_key)

            def authenticate_user(self, subject):  # domain-wide delegation to a known user
                return Person(subject) if subject == "ada@example.com" else None

            def has_granted_permission(self, client, user):
                return True

            def get_audiences(self):
                return [outer.base + "/token"]

        server.register_grant(Grant)
        app.config["OAUTH2_TOKEN_EXPIRES_IN"] = {JWTBearerGrant.GRANT_TYPE: 3600}

        @app.post("/token")
        def token():
            self.assertions.append(request.form.get("assertion"))
            return server.create_token_response()

        @app.post("/v4/spreadsheets/<sheet_id>/values/<path:cells>")
        def append(sheet_id, cells):
            bearer = request.headers.get("Authorization", "").removeprefix("Bearer ")
            if bearer not in self.tokens or self.tokens[bearer] < time.time():
                return jsonify(error={"code": 401, "message": "Request had invalid "
                                      "authentication credentials.", "status":
                                      "UNAUTHENTICATED"}), 401
            return jsonify(spreadsheetId=sheet_id, tableRange="Sheet1!A1:B2", updates={
                "spreadsheetId": sheet_id, "updatedRange": "Sheet1!A3:B3", "updatedRows": 1,
                "updatedColumns": 2, "updatedCells": 2})

        self.app = app

    def _save(self, token, req):
        self.tokens[token["access_token"]] = time.time() + self.lifetime


@pytest.fixture
def google(tmp_path, provider):
    private, public = pem_pair()
    fake = Google(public)
    server = make_server("127.0.0.1", 0, fake.app, threaded=True)
    fake.base = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    manifest = json.loads((REPO / "miniapps" / "google-sheets-service-account" /
                           "manifest.json").read_text()
                          .replace("https://oauth2.googleapis.com", fake.base)
                          .replace("https://sheets.googleapis.com", fake.base)
                          .replace("https://www.googleapis.com/drive/", fake.base + "/drive/"))
    manifest["allowedHosts"] = [f"127.0.0.1:{server.server_port}"]
    manifest.pop("icon")
    hosted = build_hosted(tmp_path, provider, manifests={"gsa": manifest},
                          PLUGINS_DIRS=[str(REPO / "plugins")])
    hosted.google, hosted.private_key = fake, private
    yield hosted
    server.shutdown()
    thread.join(timeout=5)
    get_database(hosted.app).engine.dispose()


def connect(hosted, **fields):
    client = hosted.app.test_client()
    hosted.login(client, "alice@example.com")
    page = client.get("/miniapps/google-sheets-service-account/connect").get_data(as_text=True)
    return client, client.post("/miniapps/google-sheets-service-account/connect",
                               data={**fields, "csrf_token": csrf_from(page)})


def test_a_service_account_connects_with_a_signed_jwt_and_runs_actions(google):
    from joserfc import jwt

    client, done = connect(google, clientEmail=EMAIL, privateKey=google.private_key,
                           privateKeyId="key-1")
    assert done.status_code == 302, done.get_data(as_text=True)
    [assertion] = google.google.assertions
    decoded = jwt.decode(assertion, RSAKey.import_key(google.google.account.public_key))
    assert decoded.header == {"alg": "RS256", "typ": "JWT", "kid": "key-1"}
    claims = decoded.claims
    assert (claims["iss"], claims["aud"], claims["scope"]) == (
        EMAIL, google.google.base + "/token", SCOPE)
    assert claims["exp"] - claims["iat"] == 3600 and "sub" not in claims and claims["jti"]
    page = client.get(done.headers["Location"]).get_data(as_text=True)
    assert ("<code>accessToken</code>, <code>clientEmail</code>, <code>expiresAt</code>, "
            "<code>expiresIn</code>, <code>privateKey</code>, <code>privateKeyId</code>") in page

    with get_database(google.app).sessions() as db:
        who = Principal(google.alice, personal_workspace(db, google.alice), "session:x")
        [installation], _ = list_installations(db, who)
        run = run_action(google.app, db, who, installation, "appendRow",
                         {"spreadsheet": "sheet-1", "sheet": "Sheet1", "values": ["a", "b"]})
        assert run.status == "succeeded", run.error
        assert run.output["updatedRows"] == 1
        assert run.trace["requests"][0]["headers"]["Authorization"] == "[redacted]"

        google.google.tokens.clear()  # Google forgets the token: 401, a new JWT, once
        again = run_action(google.app, db, who, installation, "appendRow",
                           {"spreadsheet": "sheet-1", "sheet": "Sheet1", "values": ["c"]})
        assert again.status == "succeeded", again.error
        assert len(google.google.assertions) == 2
        [exchange] = db.scalars(select(Run).where(Run.name == "token")).all()  # the renewal
        assert exchange.trace["requests"][0]["body"]["assertion"] == "[redacted]"
        assert google.google.assertions[1] not in json.dumps(exchange.trace)
        assert again.trace["requests"][0]["refreshed"].startswith("the provider refused")


def test_a_pasted_json_key_file_is_understood(google):
    key_file = json.dumps({"type": "service_account", "client_email": EMAIL,
                           "private_key": google.private_key, "private_key_id": "kf-9"})
    _, done = connect(google, privateKey=key_file, subject="ada@example.com")
    assert done.status_code == 302, re.findall(r'class="(?:field|form)-error"[^>]*>([^<]*)',
                                                done.get_data(as_text=True))
    header, payload = (json.loads(base64.urlsafe_b64decode(part + "=="))
                       for part in google.google.assertions[-1].split(".")[:2])
    assert header["kid"] == "kf-9"
    assert (payload["iss"], payload["sub"]) == (EMAIL, "ada@example.com")


@pytest.mark.parametrize(("fields", "field", "message"), [
    ({"privateKey": "not a key"}, "clientEmail",
     "is required, unless you paste the whole JSON key file as the private key"),
    ({"clientEmail": EMAIL, "privateKey": "{not json"}, "privateKey",
     "looks like a JSON key file but is not valid JSON; paste the file exactly as downloaded"),
])
def test_unusable_keys_are_refused_at_their_field(google, fields, field, message):
    _, refused = connect(google, **fields)
    page = refused.get_data(as_text=True)
    assert refused.status_code == 422
    assert f'<p class="field-error" id="f-{field}-error">{message}</p>' in page
    assert google.google.assertions == []


def test_a_key_the_provider_does_not_know_is_refused_with_its_words(google):
    other, _ = pem_pair()
    _, refused = connect(google, clientEmail=EMAIL, privateKey=other)
    page = refused.get_data(as_text=True)
    assert refused.status_code == 422
    assert "Google Sheets (service account) did not accept the credentials: " in page
    assert other.splitlines()[1] not in page  # the key is never shown back
    with get_database(google.app).sessions() as db:
        who = Principal(google.alice, personal_workspace(db, google.alice), "session:x")
        assert list_installations(db, who)[0] == []


def test_requests_inside_the_auth_block_are_checked_like_any_request():
    from host.manifest import validate_document

    from ..conftest import bundled_auth_types

    doc = json.loads((REPO / "miniapps" / "google-sheets-service-account" /
                      "manifest.json").read_text())
    token = doc["auth"]["token"]
    token["headers"] = {"Host": "evil.example"}
    token["body"]["assertion"] = "{{asertion}}"
    token["mapping"]["accessToken"] = "$..[?bad"
    problems = {(p.pointer, p.message.split(";")[0]) for p in validate_document(
        doc, "m.json", bundled_auth_types())}
    assert ("/auth/token/headers/Host", "the host sets the Host header itself") in problems
    assert any(pointer == "/auth/token/body/assertion" and "{{asertion}}" in message
               for pointer, message in problems)
    assert any(pointer.startswith("/auth/token/mapping") for pointer, _ in problems)
    token_bad_type = json.loads(json.dumps(doc))
    token_bad_type["auth"]["token"] = {"url": 5, "mapping": {}}
    assert any(p.pointer == "/auth/token/url" for p in validate_document(
        token_bad_type, "m.json", bundled_auth_types()))
