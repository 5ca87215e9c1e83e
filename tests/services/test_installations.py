"""Installing and connecting none/apiKey/basic mini-apps against a real provider."""

import base64
import time

import pytest
from sqlalchemy import func, select
from werkzeug.wrappers import Response

from host.db import AuditEvent, Installation, Run, get_database
from host.errors import (
    ConnectRefused,
    CredentialsUnreadable,
    NotFound,
    ValidationError,
    VaultKeyMissing,
)
from host.principal import Principal
from host.services import installations


def principal(hosted, user):
    from host.services.accounts import personal_workspace

    with get_database(hosted.app).sessions() as db:
        return Principal(user, personal_workspace(db, user), "session:test")


def install(hosted, user, name, **kwargs):
    with get_database(hosted.app).sessions() as db:
        return installations.install(hosted.app, db, principal(hosted, user), name,
                                     **kwargs).installation


def rows(hosted, model):
    with get_database(hosted.app).sessions() as db:
        return list(db.scalars(select(model)))


def audit_kinds(hosted):
    return [e.kind for e in rows(hosted, AuditEvent)]


def test_none_is_active_at_once(hosted):
    installation = install(hosted, hosted.alice, "open")
    assert (installation.status, installation.miniapp_version) == ("active", "1.0.0")
    assert installation.credentials is None
    assert "installed" in audit_kinds(hosted)


def test_api_key_is_tested_then_stored_encrypted(hosted):
    installation = install(hosted, hosted.alice, "keyed",
                           credentials={"apiKey": "key-good-123"})
    assert installation.status == "active"
    assert installation.meta == {"account": "Alice Corp"}
    assert installation.credential_keys == ["apiKey", "hookId"]
    assert b"key-good-123" not in installation.credentials
    me, hooks = hosted.provider.received
    assert (me.path, me.headers["X-Api-Key"]) == ("/me", "key-good-123")
    assert hooks.path == "/hooks"
    assert hooks.body == (b'{"url":"http://127.0.0.1:5000/hooks/' + installation.id.encode()
                          + b"/" + installation.webhook_token.encode() + b'"}')


def test_refused_credentials_store_nothing(hosted):
    with pytest.raises(ConnectRefused) as info:
        install(hosted, hosted.alice, "keyed", credentials={"apiKey": "key-wrong-1"})
    assert str(info.value) == "Keyed Service did not accept the credentials: Invalid API key"
    assert info.value.provider_message == "Invalid API key"
    assert rows(hosted, Installation) == [] and rows(hosted, Run) == []
    assert [r.path for r in hosted.provider.received] == ["/me"]


def test_invalid_form_values_send_nothing(hosted):
    with pytest.raises(ValidationError) as info:
        install(hosted, hosted.alice, "keyed", credentials={"apiKey": "short"})
    assert [(e.field, e.message) for e in info.value.errors] == [
        ("apiKey", "must be at least 8 characters")]
    with pytest.raises(ValidationError) as info:
        install(hosted, hosted.alice, "keyed", credentials={"apiKey": "key-good-123",
                                                            "extra": "x"})
    assert [(e.field, e.message) for e in info.value.errors] == [
        ("extra", "is not a field of this form")]
    assert hosted.provider.received == []


def test_a_test_that_times_out_stores_nothing(hosted):
    hosted.provider.route("/me", lambda r: time.sleep(3) or Response("{}"))
    started = time.monotonic()
    with pytest.raises(ConnectRefused) as info:
        install(hosted, hosted.alice, "keyed", credentials={"apiKey": "key-good-123"})
    assert time.monotonic() - started < 3
    assert "timed out" in str(info.value) or "deadline" in str(info.value)
    assert rows(hosted, Installation) == []


def test_basic_auth_sends_the_header(hosted):
    installation = install(hosted, hosted.alice, "basicapp",
                           credentials={"username": "ada", "password": "s3cret-pw"})
    assert installation.status == "active"
    [received] = hosted.provider.received
    assert received.headers["Authorization"] == "Basic " + base64.b64encode(
        b"ada:s3cret-pw").decode()
    assert installation.credential_keys == ["basicAuth", "password", "username"]


def test_sandbox_installations_make_no_calls(hosted):
    installation = install(hosted, hosted.alice, "keyed", credentials={"apiKey": "any-key-99"},
                           sandbox=True)
    assert (installation.status, installation.sandbox) == ("active", True)
    assert hosted.provider.received == []


def test_failed_registration_keeps_an_error_to_retry(hosted):
    hosted.provider.json("/hooks", '{"message": "quota reached"}', status=429)
    installation = install(hosted, hosted.alice, "keyed", credentials={"apiKey": "key-good-123"})
    assert installation.status == "error"
    assert installation.error.startswith("registering with Keyed Service failed: request "
                                         "/auth/registrationRequests/0 (POST) failed with HTTP "
                                         "429")
    assert installation.error.endswith("; connect again to retry")
    hosted.provider.json("/hooks", '{"id": "hook-42"}', status=201)
    with get_database(hosted.app).sessions() as db:
        again = installations.connect(hosted.app, db, principal(hosted, hosted.alice),
                                      db.get(Installation, installation.id),
                                      lambda: {"apiKey": "key-good-123"}).installation
        assert (again.status, again.error, again.id) == ("active", None, installation.id)
        assert again.credential_keys == ["apiKey", "hookId"]


def test_uninstall_unregisters_erases_and_hides(hosted):
    installation = install(hosted, hosted.alice, "keyed", credentials={"apiKey": "key-good-123"})
    who = principal(hosted, hosted.alice)
    with get_database(hosted.app).sessions() as db:
        outcome = installations.uninstall(hosted.app, db, who, db.get(Installation,
                                                                      installation.id))
    assert outcome == "succeeded"
    delete = hosted.provider.received[-1]
    assert (delete.method, delete.path, delete.headers["X-Api-Key"]) == (
        "DELETE", "/hooks/hook-42", "key-good-123")
    [row] = rows(hosted, Installation)
    assert (row.credentials, row.status, row.deleted_at is not None) == (None, "uninstalled",
                                                                        True)
    with get_database(hosted.app).sessions() as db, pytest.raises(NotFound):
        installations.get_installation(db, who, installation.id)
    assert [r.name for r in rows(hosted, Run)] == ["registration", "unregistration"]


def test_uninstall_erases_even_when_unregistration_fails(hosted):
    installation = install(hosted, hosted.alice, "keyed", credentials={"apiKey": "key-good-123"})
    hosted.provider.json("/hooks/hook-42", '{"message": "gone"}', status=500)
    with get_database(hosted.app).sessions() as db:
        outcome = installations.uninstall(hosted.app, db, principal(hosted, hosted.alice),
                                          db.get(Installation, installation.id))
    assert outcome.startswith("failed: request /auth/unregistrationRequests/0 (DELETE) failed "
                              "with HTTP 500")
    assert rows(hosted, Installation)[0].credentials is None


def test_another_workspace_gets_not_found(hosted):
    installation = install(hosted, hosted.alice, "open")
    with get_database(hosted.app).sessions() as db, pytest.raises(NotFound) as info:
        installations.get_installation(db, principal(hosted, hosted.bob), installation.id)
    assert str(info.value) == f"no installation {installation.id}"


def read(hosted, installation_id, reason="run"):
    from host.execution import context_for
    from host.services.installations import manifest_of

    with get_database(hosted.app).sessions() as db:
        installation = db.get(Installation, installation_id)
        manifest = manifest_of(hosted.app, db, installation)
        return context_for(hosted.app, db, installation, manifest, actor="test", reason=reason)


def test_every_credential_read_is_audited(hosted):
    installation = install(hosted, hosted.alice, "keyed", credentials={"apiKey": "key-good-123"})
    before = audit_kinds(hosted).count("credentials_read")
    for _ in range(3):
        assert read(hosted, installation.id).credentials["apiKey"] == "key-good-123"
    events = [e for e in rows(hosted, AuditEvent) if e.kind == "credentials_read"]
    assert len(events) == before + 3
    assert events[-1].detail == {"reason": "run"} and events[-1].installation_id == installation.id


def test_undecryptable_credentials_are_the_operators_problem(hosted, caplog):
    """No key opens the ciphertext (a key went missing, or the bytes were damaged): the
    installation stays as it was, the operator is told loudly, and the audit says so."""
    installation = install(hosted, hosted.alice, "keyed", credentials={"apiKey": "key-good-123"})
    with get_database(hosted.app).transaction() as db:
        row = db.get(Installation, installation.id)
        row.credentials = row.credentials[:-4] + b"AAAA"
    with pytest.raises(VaultKeyMissing) as info:
        read(hosted, installation.id)
    assert str(info.value) == (
        f"the host cannot decrypt the credentials of installation {installation.id} with its "
        "vault keys; this is a problem of the host's setup, not of the connection, and "
        "nothing was changed: the operator must restore the missing vault key")
    [row] = rows(hosted, Installation)
    assert (row.status, row.error) == ("active", None)
    assert "credentials_undecryptable" in audit_kinds(hosted)
    assert "credentials_unreadable" not in audit_kinds(hosted)
    [record] = [r for r in caplog.records if r.levelname == "ERROR"]
    assert record.getMessage().startswith(
        f"VAULT KEY MISSING: the credentials of installation {installation.id} cannot be "
        "decrypted with any of the 1 configured vault key(s)")


def test_a_blob_copied_to_another_installation_is_refused(hosted):
    first = install(hosted, hosted.alice, "keyed", credentials={"apiKey": "key-good-123"})
    second = install(hosted, hosted.bob, "keyed", credentials={"apiKey": "key-good-123"})
    with get_database(hosted.app).transaction() as db:
        db.get(Installation, second.id).credentials = db.get(Installation, first.id).credentials
    with pytest.raises(CredentialsUnreadable) as info:
        read(hosted, second.id)
    assert "belongs to another record" in str(info.value)


def test_usage_counts_action_runs(hosted):
    installation = install(hosted, hosted.alice, "open")
    with get_database(hosted.app).sessions() as db:
        assert installations.usage(db, db.get(Installation, installation.id)) == {
            "actions": [], "flows": []}
        assert db.scalar(select(func.count(Run.id))) == 0
