"""The vault: binding, rotation that survives being killed, and failing closed."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet, MultiFernet
from sqlalchemy import select

from host import create_app
from host.db import AppClient, AuditEvent, Installation, get_database, new_id, utcnow
from host.errors import ConfigError
from host.services import instance as instance_service
from host.vault import Vault, rotate_keys, store_client_secret, store_credentials

from .conftest import FIXTURES

MINIHOST = Path(sys.executable).parent / "minihost"


@pytest.fixture
def instance(tmp_path, monkeypatch):
    for name in list(os.environ):
        if name.startswith("MINIHOST_") and name != "MINIHOST_TEST_POSTGRES_URL":
            monkeypatch.delenv(name)
    monkeypatch.setenv("MINIHOST_MINIAPPS_DIRS", str(FIXTURES / "miniapps"))
    folder = tmp_path / "inst"
    app = create_app(instance_path=folder)
    instance_service.init(app)
    return folder


def seed(folder, count=7):
    """Installations and a client secret encrypted under the current key."""
    app = create_app(instance_path=folder)
    from host.services import accounts

    with get_database(app).transaction() as db:
        user = accounts.create_user(db, f"u{new_id('x')[-6:].lower()}@example.com", "password1")
        workspace = accounts.personal_workspace(db, user)
        for number in range(count):
            installation = Installation(
                id=new_id("ins"), workspace_id=workspace, miniapp="notes", miniapp_version="1.0.0",
                status="active", webhook_token=new_id("wh"), created_at=utcnow(),
                updated_at=utcnow())
            store_credentials(app, installation, {"apiKey": f"secret-{number}"})
            db.add(installation)
        client = AppClient(miniapp="chat", client_id="cid")
        store_client_secret(app, client, "client-secret-value")
        db.add(client)
    get_database(app).engine.dispose()
    return app


def all_ciphertexts(app):
    with get_database(app).sessions() as db:
        return ([(i.id, i.workspace_id, i.credentials) for i in db.scalars(select(Installation))],
                [c.client_secret for c in db.scalars(select(AppClient))])


def test_binding_refuses_a_blob_from_another_row():
    vault = Vault([Fernet.generate_key().decode()])
    token = vault.encrypt({"k": "v"}, {"installation": "a", "workspace": "w"})
    assert vault.decrypt(token, {"installation": "a", "workspace": "w"}) == {"k": "v"}
    with pytest.raises(Exception) as info:
        vault.decrypt(token, {"installation": "b", "workspace": "w"})
    assert str(info.value) == "the stored secret belongs to another record"


def test_rotation_adds_a_key_and_reencrypts_everything(instance):
    app = seed(instance)
    old_keys = (instance / "vault_keys").read_text().split()
    report = rotate_keys(app, batch_size=3)
    keys = (instance / "vault_keys").read_text().split()
    assert (len(keys), keys[1:]) == (2, old_keys)
    assert (report.added_key, report.resumed, report.rewritten, report.already_current) == (
        True, False, 8, 0)
    newest_only = MultiFernet([Fernet(keys[0].encode())])
    installations, secrets = all_ciphertexts(app)
    assert len(installations) == 7
    for _, _, token in installations:
        newest_only.decrypt(token)
    newest_only.decrypt(secrets[0])
    assert oct((instance / "vault_keys").stat().st_mode & 0o777) == "0o600"
    with get_database(app).sessions() as db:
        [event] = db.scalars(select(AuditEvent).where(AuditEvent.kind == "keys_rotated")).all()
    assert event.detail == {"rewritten": 8, "alreadyCurrent": 0, "addedKey": True}


def test_an_interrupted_rotation_resumes_without_another_key(instance):
    seed(instance)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINIHOST_")}
    env["MINIHOST_MINIAPPS_DIRS"] = str(FIXTURES / "miniapps")
    command = [str(MINIHOST), "--instance", str(instance), "rotate-keys", "--batch-size", "2"]
    killed = subprocess.run(command, env={**env, "MINIHOST_FAULT": "rotate.after_row:3:exit"},
                            capture_output=True, text=True)
    assert killed.returncode == 137
    assert (instance / "vault_rotation").exists()
    keys_after_crash = (instance / "vault_keys").read_text().split()
    assert len(keys_after_crash) == 2
    resumed = subprocess.run(command, env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.startswith("Vault: resumed an interrupted rotation; re-encrypted ")
    assert (instance / "vault_keys").read_text().split() == keys_after_crash
    assert not (instance / "vault_rotation").exists()
    app = create_app(instance_path=instance)
    newest_only = MultiFernet([Fernet(keys_after_crash[0].encode())])
    installations, secrets = all_ciphertexts(app)
    for _, _, token in installations:
        newest_only.decrypt(token)
    newest_only.decrypt(secrets[0])


def test_rotation_never_overwrites_a_concurrent_write(instance):
    app = seed(instance, count=1)
    installations, _ = all_ciphertexts(app)
    [(installation_id, workspace_id, original)] = installations
    vault = Vault(app.config["VAULT_KEYS"])
    fresher = vault.encrypt({"apiKey": "refreshed"},
                            {"installation": installation_id, "workspace": workspace_id})
    from host import vault as vault_module

    real_rotate = vault_module.Vault.rotate

    def rotate_while_someone_writes(self, token):
        with get_database(app).transaction() as db:
            db.get(Installation, installation_id).credentials = fresher
        return real_rotate(self, token)

    vault_module.Vault.rotate = rotate_while_someone_writes
    try:
        rotate_keys(app)
    finally:
        vault_module.Vault.rotate = real_rotate
    installations, _ = all_ciphertexts(app)
    assert installations[0][2] == fresher  # the newer value won; rotation skipped it


def test_a_wrong_vault_key_stops_start_up(instance):
    seed(instance, count=1)
    (instance / "vault_keys").write_text(Fernet.generate_key().decode() + "\n")
    with pytest.raises(ConfigError) as info:
        create_app(instance_path=instance)
    assert str(info.value).startswith("VAULT_KEYS cannot decrypt the stored secrets (installation ")
    assert str(info.value).endswith(
        f"restore the key that encrypted them (keys are tried newest first, in {instance}/"
        "vault_keys or the VAULT_KEYS setting)")


def test_the_cli_reports_a_wrong_key_in_one_line(instance):
    seed(instance, count=1)
    (instance / "vault_keys").write_text(Fernet.generate_key().decode() + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINIHOST_")}
    result = subprocess.run([str(MINIHOST), "--instance", str(instance), "catalog", "list"],
                            env=env, capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.startswith("Error: VAULT_KEYS cannot decrypt the stored secrets")
    assert result.stderr.count("\n") == 1


def test_keys_from_the_configuration_are_not_rewritten(instance, monkeypatch):
    key = (instance / "vault_keys").read_text().strip()
    monkeypatch.setenv("MINIHOST_VAULT_KEYS", f'["{Fernet.generate_key().decode()}", "{key}"]')
    app = create_app(instance_path=instance)
    with pytest.raises(ConfigError) as info:
        rotate_keys(app)
    assert "run `minihost rotate-keys --no-new-key`" in str(info.value)
