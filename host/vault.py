"""Credentials at rest: encrypted with MultiFernet, bound to their row, audited on read.

Keys come from ``VAULT_KEYS`` (newest first); ``minihost init`` generates the
first into ``instance/vault_keys``. Each ciphertext's plaintext carries the id
of the row it belongs to, because Fernet has no associated data: a blob copied
into another installation decrypts but is refused. :func:`read_credentials` is
the one way to read an installation's credentials, and it writes an audit event
(who, which installation, why) every time.

:func:`rotate_keys` adds a key and re-encrypts every secret in batches. A marker
file in the instance folder makes an interrupted rotation resume instead of
adding yet another key; each row is replaced by compare-and-set on its old
ciphertext, so a concurrent refresh is never overwritten.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from flask import Flask
from sqlalchemy import select, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from . import audit
from .config import VAULT_KEYS_FILE
from .db import AppClient, Installation, OAuthState, get_database, utcnow
from .errors import ConfigError, ReconnectRequired
from .faults import fault

__all__ = [
    "CredentialsUnreadable",
    "RotationReport",
    "Vault",
    "get_vault",
    "read_client_secret",
    "read_credentials",
    "rotate_keys",
    "store_client_secret",
    "store_credentials",
]

log = logging.getLogger(__name__)
ROTATION_MARKER = "vault_rotation"


class CredentialsUnreadable(ReconnectRequired):
    """The ciphertext does not decrypt with any configured key, or belongs elsewhere."""


class Vault:
    """Encryption with the configured keys; the newest key encrypts."""

    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise ConfigError("VAULT_KEYS is empty; run `minihost init` to generate a key")
        self.keys = list(keys)
        self._fernets = [Fernet(k.encode()) for k in keys]
        self._multi = MultiFernet(self._fernets)

    def encrypt(self, value: Any, binding: dict[str, str]) -> bytes:
        plaintext = json.dumps({"b": binding, "v": value}, separators=(",", ":"))
        return self._multi.encrypt(plaintext.encode())

    def decrypt(self, token: bytes, binding: dict[str, str]) -> Any:
        try:
            data = json.loads(self._multi.decrypt(bytes(token)))
        except (InvalidToken, ValueError, TypeError):
            raise CredentialsUnreadable(
                "the stored secret cannot be decrypted with the configured VAULT_KEYS"
            ) from None
        if not isinstance(data, dict) or data.get("b") != binding:
            raise CredentialsUnreadable("the stored secret belongs to another record")
        return data["v"]

    def is_current(self, token: bytes) -> bool:
        try:
            self._fernets[0].decrypt(bytes(token))
            return True
        except InvalidToken:
            return False

    def rotate(self, token: bytes) -> bytes:
        return self._multi.rotate(bytes(token))


def get_vault(app: Flask) -> Vault:
    vault = app.extensions.get("minihost.vault")
    if vault is None or vault.keys != app.config["VAULT_KEYS"]:
        vault = Vault(app.config["VAULT_KEYS"])
        app.extensions["minihost.vault"] = vault
    return vault


def _installation_binding(installation: Installation) -> dict[str, str]:
    return {"installation": installation.id, "workspace": installation.workspace_id}


def store_credentials(app: Flask, installation: Installation, credentials: dict[str, Any]) -> None:
    """Encrypt ``credentials`` onto the row (the caller commits)."""
    binding = _installation_binding(installation)
    installation.credentials = get_vault(app).encrypt(credentials, binding)
    installation.credential_keys = sorted(credentials)


def read_credentials(
    app: Flask, installation: Installation, *, actor: str, reason: str
) -> dict[str, Any]:
    """Decrypt an installation's credentials, writing the audit event first.

    When they cannot be read the installation becomes ``reconnect_required`` with
    the reason, an audit event says so, and :class:`CredentialsUnreadable` is raised.
    """
    if installation.credentials is None:
        return {}  # nothing stored, nothing decrypted, nothing to audit
    database = get_database(app)
    with database.transaction() as db:
        audit.record(db, "credentials_read", actor=actor, workspace_id=installation.workspace_id,
                     installation_id=installation.id, detail={"reason": reason}, app=app)
    try:
        binding = _installation_binding(installation)
        value = get_vault(app).decrypt(installation.credentials, binding)
    except CredentialsUnreadable as error:
        message = f"{error.detail}; connect this installation again"
        with database.transaction() as db:
            db.execute(update(Installation).where(Installation.id == installation.id).values(
                status="reconnect_required", error=message, updated_at=utcnow()))
            audit.record(db, "credentials_unreadable", actor=actor,
                         workspace_id=installation.workspace_id,
                         installation_id=installation.id, detail={"reason": reason}, app=app)
        installation.status, installation.error = "reconnect_required", message
        log.warning("installation %s: %s", installation.id, error.detail)
        raise CredentialsUnreadable(f"installation {installation.id}: {message}") from None
    return value if isinstance(value, dict) else {}


def store_client_secret(app: Flask, client: AppClient, secret: str) -> None:
    client.client_secret = get_vault(app).encrypt(secret, {"client": client.miniapp})


def read_client_secret(app: Flask, client: AppClient, *, actor: str, reason: str,
                       workspace_id: str | None = None,
                       installation_id: str | None = None) -> str | None:
    if client.client_secret is None:
        return None
    with get_database(app).transaction() as db:
        audit.record(db, "client_secret_read", actor=actor, workspace_id=workspace_id,
                     installation_id=installation_id,
                     detail={"miniapp": client.miniapp, "reason": reason}, app=app)
    try:
        return get_vault(app).decrypt(client.client_secret, {"client": client.miniapp})
    except CredentialsUnreadable:
        raise CredentialsUnreadable(
            f"the operator's client secret for {client.miniapp} cannot be decrypted; set it "
            f"again with `minihost clients set {client.miniapp}`") from None


# -- start-up check ----------------------------------------------------------------------


def _sample_ciphertexts(app: Flask) -> Iterator[tuple[str, bytes, dict[str, str]]]:
    url = make_url(app.config["DATABASE_URL"])
    if url.get_backend_name() == "sqlite" and (
        not url.database or url.database == ":memory:" or not Path(url.database).exists()
    ):
        return
    try:
        with get_database(app).sessions() as db:
            installation = db.scalars(select(Installation).where(
                Installation.credentials.is_not(None)).limit(1)).first()
            client = db.scalars(select(AppClient).where(
                AppClient.client_secret.is_not(None)).limit(1)).first()
    except SQLAlchemyError:
        return  # no schema yet, or no database: `init` reports that
    if installation is not None:
        yield (f"installation {installation.id}", installation.credentials,
               _installation_binding(installation))
    if client is not None:
        yield f"the client of {client.miniapp}", client.client_secret, {"client": client.miniapp}


def check_keys(app: Flask) -> None:
    """Stop start-up when the configured keys cannot read what is stored."""
    keys = app.config["VAULT_KEYS"]
    if not keys:
        return
    vault = Vault(keys)
    for label, token, _binding in _sample_ciphertexts(app):
        try:
            vault._multi.decrypt(bytes(token))
        except InvalidToken:
            raise ConfigError(
                f"VAULT_KEYS cannot decrypt the stored secrets ({label}); restore the key that "
                f"encrypted them (keys are tried newest first, in {app.instance_path}/"
                f"{VAULT_KEYS_FILE} or the VAULT_KEYS setting)") from None


def init_app(app: Flask) -> None:
    check_keys(app)


# -- rotation ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RotationReport:
    added_key: bool
    resumed: bool
    rewritten: int
    already_current: int


def _file_keys(app: Flask) -> list[str] | None:
    path = Path(app.instance_path) / VAULT_KEYS_FILE
    try:
        return path.read_text().split()
    except FileNotFoundError:
        return None


def _write_keys(app: Flask, keys: list[str]) -> None:
    path = Path(app.instance_path) / VAULT_KEYS_FILE
    temporary = path.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write("\n".join(keys) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def rotate_keys(app: Flask, batch_size: int = 100) -> RotationReport:
    """Add a key (when the keys live in the instance folder) and re-encrypt every
    credential, client secret and pending PKCE verifier under it."""
    marker = Path(app.instance_path) / ROTATION_MARKER
    resumed = marker.exists()
    added = False
    if not resumed:
        file_keys = _file_keys(app)
        if file_keys is None or file_keys != app.config["VAULT_KEYS"]:
            raise ConfigError(
                "VAULT_KEYS is set in the configuration, so rotate-keys cannot add a key there: "
                "generate one (python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())'), put it first in VAULT_KEYS, and run "
                "`minihost rotate-keys --no-new-key`")
        keys = [Fernet.generate_key().decode(), *file_keys]
        marker.write_text("rotation in progress; run `minihost rotate-keys` again to finish\n")
        _write_keys(app, keys)
        app.config["VAULT_KEYS"] = keys
        added = True
    return _reencrypt(app, batch_size, added, resumed, marker)


def reencrypt_only(app: Flask, batch_size: int = 100) -> RotationReport:
    """Re-encrypt under the newest configured key without adding one."""
    marker = Path(app.instance_path) / ROTATION_MARKER
    return _reencrypt(app, batch_size, False, marker.exists(), marker)


def _reencrypt(app: Flask, batch_size: int, added: bool, resumed: bool,
               marker: Path) -> RotationReport:
    vault = get_vault(app)
    database = get_database(app)
    rewritten = current = 0
    for model, column in ((Installation, Installation.credentials),
                          (AppClient, AppClient.client_secret),
                          (OAuthState, OAuthState.code_verifier)):
        after = ""
        while True:
            with database.sessions() as db:
                rows = db.execute(
                    select(model.id, column).where(column.is_not(None), model.id > after)
                    .order_by(model.id).limit(batch_size)).all()
            if not rows:
                break
            with database.transaction() as db:
                for row_id, token in rows:
                    if vault.is_current(token):
                        current += 1
                        continue
                    try:
                        fresh = vault.rotate(token)
                    except InvalidToken:
                        log.warning("%s %s cannot be decrypted; left as it is", model.__name__,
                                    row_id)
                        continue
                    # Compare-and-set: a concurrent writer's newer value wins.
                    db.execute(update(model).where(model.id == row_id, column == token)
                               .values({column.key: fresh}))
                    rewritten += 1
                    fault("rotate.after_row", rewritten)
            after = rows[-1][0]
    if marker.exists():
        marker.unlink()
    with database.transaction() as db:
        audit.record(db, "keys_rotated", actor="cli", app=app,
                     detail={"rewritten": rewritten, "alreadyCurrent": current,
                             "addedKey": added})
    return RotationReport(added, resumed, rewritten, current)
