"""``minihost users``, ``tokens`` and ``clients`` from the shell."""

import os

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from host import create_app
from host.cli import cli
from host.db import AppClient, get_database

from .conftest import FIXTURES


@pytest.fixture
def run(tmp_path, monkeypatch):
    for name in list(os.environ):
        if name.startswith("MINIHOST_") and name != "MINIHOST_TEST_POSTGRES_URL":
            monkeypatch.delenv(name)
    monkeypatch.setenv("MINIHOST_MINIAPPS_DIRS", str(FIXTURES / "miniapps"))
    instance = str(tmp_path / "inst")

    def invoke(*args, input=None):
        return CliRunner().invoke(cli, ["--instance", instance, *args], input=input,
                                  catch_exceptions=False)

    assert invoke("init").exit_code == 0
    invoke.instance = instance
    return invoke


def test_users_and_tokens(run):
    created = run("users", "create", "Ada@Example.com", "--password", "long enough", "--admin")
    assert created.exit_code == 0
    assert created.stdout.startswith("Created operator ada@example.com (usr_")
    duplicate = run("users", "create", "ada@example.com", "--password", "long enough")
    assert (duplicate.exit_code, duplicate.stderr) == (
        1, "Error: a user with email ada@example.com already exists\n")
    token = run("tokens", "create", "ada@example.com", "--name", "ci")
    secret = token.stdout.strip()
    assert secret.startswith("mh_") and "shown only now" in token.stderr
    listing = run("tokens", "list", "ada@example.com")
    token_id = listing.stdout.split()[0]
    assert token_id.startswith("tok_") and " ci " in listing.stdout
    assert secret not in listing.stdout
    app = create_app(instance_path=run.instance)
    client = app.test_client()
    headers = {"Authorization": f"Bearer {secret}"}
    assert client.get("/api/v1/installations", headers=headers).status_code == 200
    assert run("tokens", "revoke", token_id).stdout == f"Revoked {token_id} (ci)\n"
    assert client.get("/api/v1/installations", headers=headers).status_code == 401


def test_password_prompt_and_short_passwords(run):
    prompted = run("users", "create", "bo@example.com", input="long enough\nlong enough\n")
    assert prompted.exit_code == 0
    short = run("users", "create", "cy@example.com", "--password", "short")
    assert (short.exit_code, short.stderr) == (
        1, "Error: password: must be at least 8 characters\n")


def test_disable_stops_tokens_at_once(run):
    run("users", "create", "di@example.com", "--password", "long enough")
    secret = run("tokens", "create", "di@example.com").stdout.strip()
    assert run("users", "disable", "di@example.com").stdout == "Disabled di@example.com\n"
    client = create_app(instance_path=run.instance).test_client()
    response = client.get("/api/v1/installations", headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 401
    missing = run("users", "disable", "nobody@example.com")
    assert (missing.exit_code, missing.stderr) == (1, "Error: no user with email "
                                                      "nobody@example.com\n")


def test_clients_set_stores_the_secret_encrypted(run):
    result = run("clients", "set", "chat", "--client-id", "cid-1", "--client-secret",
                 "very-secret-value")
    assert result.exit_code == 0
    assert result.stdout == ("Saved the OAuth client of chat; redirect URI: "
                             "http://127.0.0.1:5000/connect/chat/callback\n")
    app = create_app(instance_path=run.instance)
    with get_database(app).sessions() as db:
        [client] = db.scalars(select(AppClient)).all()
    assert client.client_id == "cid-1" and b"very-secret-value" not in client.client_secret
    unknown = run("clients", "set", "nope", "--client-id", "x", "--client-secret", "y")
    assert (unknown.exit_code, unknown.stderr) == (
        1, "Error: no mini-app named 'nope' in the catalog\n")
