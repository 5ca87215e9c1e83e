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
    assert event.detail == {"rewritten": 8, "alreadyCurrent": 0, "addedKey": True,
                            "undecryptable": 0}


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
    # The newer value won (the first pass skipped it) and a later pass re-encrypted it.
    newest = Vault(app.config["VAULT_KEYS"][:1])
    assert newest.decrypt(installations[0][2], {"installation": installation_id,
                                                "workspace": workspace_id}) == {
        "apiKey": "refreshed"}


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


def test_a_rotation_interrupted_before_the_key_file_adds_the_key_on_rerun(instance):
    """The marker is written, the process dies before the key file changes: the rerun
    must not "resume" a rotation that never added its key."""
    seed(instance, count=3)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINIHOST_")}
    env["MINIHOST_MINIAPPS_DIRS"] = str(FIXTURES / "miniapps")
    old_keys = (instance / "vault_keys").read_text().split()
    command = [str(MINIHOST), "--instance", str(instance), "rotate-keys"]
    for point in ("rotate.after_marker", "rotate.before_key_file"):
        killed = subprocess.run(command, env={**env, "MINIHOST_FAULT": f"{point}:exit"},
                                capture_output=True, text=True)
        assert killed.returncode == 137
        assert (instance / "vault_rotation").exists()
        assert (instance / "vault_keys").read_text().split() == old_keys
    rerun = subprocess.run(command, env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert rerun.stdout.startswith("Vault: added a new key; re-encrypted 4 secret(s), 0 already")
    keys = (instance / "vault_keys").read_text().split()
    assert keys[1:] == old_keys and len(keys) == 2
    assert not (instance / "vault_rotation").exists()
    newest_only = MultiFernet([Fernet(keys[0].encode())])
    installations, secrets = all_ciphertexts(create_app(instance_path=instance))
    for _, _, token in installations:
        newest_only.decrypt(token)
    newest_only.decrypt(secrets[0])


def test_a_key_file_that_cannot_be_written_is_one_clear_line(instance):
    seed(instance, count=2)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINIHOST_")}
    env["MINIHOST_MINIAPPS_DIRS"] = str(FIXTURES / "miniapps")
    old_keys = (instance / "vault_keys").read_text().split()
    (instance / "vault_keys.tmp").mkdir()  # the temporary file cannot be created
    command = [str(MINIHOST), "--instance", str(instance), "rotate-keys"]
    failed = subprocess.run(command, env=env, capture_output=True, text=True)
    assert failed.returncode == 1
    assert failed.stderr == (
        f"Error: cannot write {instance}/vault_keys: Is a directory; fix the disk or the "
        "permissions, then run `minihost rotate-keys` again (it finishes what was started)\n")
    assert (instance / "vault_keys").read_text().split() == old_keys
    (instance / "vault_keys.tmp").rmdir()
    rerun = subprocess.run(command, env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert rerun.stdout.startswith("Vault: added a new key; re-encrypted 3 secret(s)")
    assert len((instance / "vault_keys").read_text().split()) == 2


# -- rotation while a server runs -------------------------------------------------------


def test_a_running_server_follows_a_rotation(tmp_path, provider, database_url):
    """Serve, rotate from another process, then run an action on every installation
    through the running server: all succeed and none is marked for a reconnect. A
    credential written afterwards is encrypted under the new key."""
    import json

    import requests

    from .conftest import good_provider, local_manifests
    from .test_serve import free_port

    good_provider(provider)
    apps = tmp_path / "apps"
    (apps / "keyed").mkdir(parents=True)
    (apps / "keyed" / "manifest.json").write_text(json.dumps(
        local_manifests(provider.base, provider.port)["keyed"]))
    folder = tmp_path / "inst"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINIHOST_")}
    env.update({"MINIHOST_MINIAPPS_DIRS": str(apps), "MINIHOST_EGRESS_ALLOW_PRIVATE": "true",
                "MINIHOST_DATABASE_URL": database_url})

    def cli(*args):
        done = subprocess.run([str(MINIHOST), "--instance", str(folder), *args], env=env,
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done.stdout

    cli("init")
    cli("users", "create", "ada@example.com", "--password", "correct horse")
    token = cli("tokens", "create", "ada@example.com").strip()
    port = free_port()
    server = subprocess.Popen([str(MINIHOST), "--instance", str(folder), "serve", "--port",
                               str(port)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}/api/v1"
    headers = {"Authorization": f"Bearer {token}"}
    try:
        import time

        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except requests.ConnectionError:
                assert server.poll() is None and time.monotonic() < deadline
                time.sleep(0.1)
        ids = []
        for _ in range(4):
            created = requests.post(f"{base}/installations", headers=headers, timeout=10,
                                    json={"miniapp": "keyed",
                                          "credentials": {"apiKey": "key-good-123"}})
            assert created.status_code == 201, created.text
            ids.append(created.json()["id"])
        old_keys = (folder / "vault_keys").read_text().split()
        assert cli("rotate-keys").startswith("Vault: added a new key; re-encrypted 4 secret(s)")
        for installation in ids:
            ran = requests.post(f"{base}/installations/{installation}/actions/echo/runs",
                                headers=headers, json={"parameters": {"text": "hi"}}, timeout=10)
            assert ran.status_code == 201, ran.text
            assert (ran.json()["status"], ran.json()["output"]) == ("succeeded", {"echo": "hi"})
        for installation in ids:
            shown = requests.get(f"{base}/installations/{installation}", headers=headers,
                                 timeout=10).json()
            assert (shown["status"], shown["error"]) == ("active", None)
        # New credentials stored by the running server use the newest key.
        replaced = requests.post(f"{base}/installations", headers=headers, timeout=10,
                                 json={"miniapp": "keyed",
                                       "credentials": {"apiKey": "key-good-123"}})
        assert replaced.status_code == 201
    finally:
        server.terminate()
        server.wait(timeout=10)
        server.stdout.close()
    keys = (folder / "vault_keys").read_text().split()
    assert keys[1:] == old_keys
    app = create_app({"DATABASE_URL": database_url}, instance_path=folder)
    newest_only = MultiFernet([Fernet(keys[0].encode())])
    installations, _ = all_ciphertexts(app)
    assert len(installations) == 5
    for _, _, token_bytes in installations:
        newest_only.decrypt(token_bytes)
    get_database(app).engine.dispose()
