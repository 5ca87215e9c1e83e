"""Credentials at rest: encrypted with MultiFernet, bound to their row, audited on read.

Keys come from ``VAULT_KEYS`` (newest first); ``minihost init`` generates the
first into ``instance/vault_keys``. Each ciphertext's plaintext carries the id
of the row it belongs to, because Fernet has no associated data: a blob copied
into another installation decrypts but is refused. :func:`read_credentials` is
the one way to read an installation's credentials, and it writes an audit event
(who, which installation, why) every time.

Keys kept in the instance's key file are followed while the host runs: every
use of the vault checks the file (one ``stat``) and a changed file is read
again, and a ciphertext no key can open makes the file be read once more before
giving up. So ``minihost rotate-keys`` in another process never strands a
running server. A secret that still cannot be decrypted is the operator's
problem (a key went missing), not the user's: :class:`VaultKeyMissing` is
raised, logged loudly and audited, and the installation is left as it was.

:func:`rotate_keys` adds a key and re-encrypts every secret in batches. A marker
file in the instance folder, naming the new key by fingerprint, makes an
interrupted rotation resume instead of adding yet another key; each row is
replaced by compare-and-set on its old ciphertext, so a concurrent refresh is
never overwritten.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from flask import Flask
from sqlalchemy import select, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from . import audit
from .config import VAULT_KEYS_FILE, parse_vault_keys
from .db import AppClient, Installation, OAuthState, get_database, utcnow
from .errors import ConfigError, CredentialsUnreadable, VaultKeyMissing
from .faults import fault

__all__ = [
    "RotationReport",
    "Vault",
    "decrypt",
    "encrypt",
    "get_vault",
    "read_client_secret",
    "read_credentials",
    "rotate_keys",
    "store_client_secret",
    "store_credentials",
]

log = logging.getLogger(__name__)
ROTATION_MARKER = "vault_rotation"
_VAULT = "minihost.vault"
_SOURCE = "minihost.vault_source"


class _Undecryptable(Exception):
    """No key of this vault opens the token."""


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
        """The value; :class:`_Undecryptable` when no key opens the token,
        :class:`CredentialsUnreadable` when it opens but belongs elsewhere."""
        try:
            opened = self._multi.decrypt(bytes(token))
        except (InvalidToken, TypeError):
            raise _Undecryptable() from None
        try:
            data = json.loads(opened)
        except ValueError:
            raise CredentialsUnreadable("the stored secret is not in the vault's format") \
                from None
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


@dataclass(slots=True)
class _Source:
    """The key file the running keys came from, and what it looked like when read."""

    path: Path
    seen: tuple[int, int, int] | None
    lock: threading.Lock


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        status = path.stat()
    except OSError:
        return None
    return (status.st_ino, status.st_mtime_ns, status.st_size)


def _follow(app: Flask, force: bool = False) -> bool:
    """Read the key file again when it changed (or ``force``); True when the keys did."""
    source: _Source | None = app.extensions.get(_SOURCE)
    if source is None:
        return False
    stamp = _stamp(source.path)
    if not force and stamp == source.seen:
        return False
    with source.lock:
        source.seen = stamp
        try:
            keys = parse_vault_keys("VAULT_KEYS", source.path.read_text().split())
        except (OSError, ConfigError) as error:
            log.error("the vault key file %s cannot be used (%s); keeping the %d key(s) in "
                      "use", source.path, getattr(error, "strerror", None) or error,
                      len(app.config["VAULT_KEYS"]))
            return False
        if not keys or keys == app.config["VAULT_KEYS"]:
            return False
        app.config["VAULT_KEYS"] = keys
        log.warning("the vault key file %s changed: now using its %d key(s)", source.path,
                    len(keys))
        return True


def get_vault(app: Flask) -> Vault:
    _follow(app)
    vault = app.extensions.get(_VAULT)
    if vault is None or vault.keys != app.config["VAULT_KEYS"]:
        vault = Vault(app.config["VAULT_KEYS"])
        app.extensions[_VAULT] = vault
    return vault


def encrypt(app: Flask, value: Any, binding: dict[str, str]) -> bytes:
    return get_vault(app).encrypt(value, binding)


def decrypt(app: Flask, token: bytes, binding: dict[str, str], what: str) -> Any:
    """Decrypt, reading the key file again once if no key in use opens the token;
    :class:`VaultKeyMissing` (logged) when none does even then. ``what`` names the
    secret for the operator."""
    try:
        return get_vault(app).decrypt(token, binding)
    except _Undecryptable:
        pass
    if _follow(app, force=True):
        try:
            return get_vault(app).decrypt(token, binding)
        except _Undecryptable:
            pass
    log.error("VAULT KEY MISSING: %s cannot be decrypted with any of the %d configured vault "
              "key(s); restore the key that encrypted it to VAULT_KEYS (or %s)", what,
              len(app.config["VAULT_KEYS"]), Path(app.instance_path) / VAULT_KEYS_FILE)
    raise VaultKeyMissing(
        f"the host cannot decrypt {what} with its vault keys; this is a problem of the "
        "host's setup, not of the connection, and nothing was changed: the operator must "
        "restore the missing vault key")


def _installation_binding(installation: Installation) -> dict[str, str]:
    return {"installation": installation.id, "workspace": installation.workspace_id}


def store_credentials(app: Flask, installation: Installation, credentials: dict[str, Any]) -> None:
    """Encrypt ``credentials`` onto the row (the caller commits), and note in the clear
    when its access token expires."""
    binding = _installation_binding(installation)
    installation.credentials = encrypt(app, credentials, binding)
    installation.credential_keys = sorted(credentials)
    expires = credentials.get("expiresAt")
    installation.token_expires_at = (
        datetime.fromtimestamp(expires, UTC)
        if isinstance(expires, (int, float)) and not isinstance(expires, bool)
        and 0 < expires < 32503680000 else None)


def read_credentials(
    app: Flask, installation: Installation, *, actor: str, reason: str
) -> dict[str, Any]:
    """Decrypt an installation's credentials, writing the audit event first.

    Credentials bound to another record make the installation
    ``reconnect_required`` (:class:`CredentialsUnreadable`); credentials no key
    opens leave it untouched and raise :class:`VaultKeyMissing`. Either way an
    audit event says so.
    """
    if installation.credentials is None:
        return {}  # nothing stored, nothing decrypted, nothing to audit
    database = get_database(app)
    with database.transaction() as db:
        audit.record(db, "credentials_read", actor=actor, workspace_id=installation.workspace_id,
                     installation_id=installation.id, detail={"reason": reason}, app=app)
    try:
        binding = _installation_binding(installation)
        value = decrypt(app, installation.credentials, binding,
                        f"the credentials of installation {installation.id}")
    except VaultKeyMissing:
        with database.transaction() as db:
            audit.record(db, "credentials_undecryptable", actor=actor,
                         workspace_id=installation.workspace_id,
                         installation_id=installation.id,
                         detail={"reason": reason, "cause": "vault key missing"}, app=app)
        raise
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


def _webhook_binding(installation: Installation) -> dict[str, str]:
    return {**_installation_binding(installation), "use": "webhook secret"}


def store_webhook_secret(app: Flask, installation: Installation, secret: str,
                         origin: str = "host") -> None:
    """Encrypt the secret its inbound webhooks are signed with onto the row (the caller
    commits). ``origin`` says who chose it: ``host``, ``user`` or ``provider`` (a
    handshake that delivered it)."""
    installation.webhook_secret = encrypt(app, {"secret": secret, "origin": origin},
                                          _webhook_binding(installation))


def read_webhook_secret(app: Flask, installation: Installation, *, actor: str,
                        reason: str) -> tuple[str, str] | None:
    """Decrypt an installation's webhook secret and who chose it, writing the audit
    event first."""
    if installation.webhook_secret is None:
        return None
    with get_database(app).transaction() as db:
        audit.record(db, "webhook_secret_read", actor=actor,
                     workspace_id=installation.workspace_id, installation_id=installation.id,
                     detail={"reason": reason}, app=app)
    value = decrypt(app, installation.webhook_secret, _webhook_binding(installation),
                    f"the webhook secret of installation {installation.id}")
    if not isinstance(value, dict) or not isinstance(value.get("secret"), str):
        return None
    return value["secret"], str(value.get("origin", "host"))


def store_client_secret(app: Flask, client: AppClient, secret: str) -> None:
    client.client_secret = encrypt(app, secret, {"client": client.miniapp})


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
        return decrypt(app, client.client_secret, {"client": client.miniapp},
                       f"the operator's client secret for {client.miniapp}")
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
    if installation is not None and installation.credentials is not None:
        yield (f"installation {installation.id}", installation.credentials,
               _installation_binding(installation))
    if client is not None and client.client_secret is not None:
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


def watch_key_file(app: Flask) -> None:
    """Follow the instance key file from now on, when the keys in use came from it."""
    path = Path(app.instance_path) / VAULT_KEYS_FILE
    keys = _file_keys(app)
    if keys and keys == app.config["VAULT_KEYS"]:
        app.extensions[_SOURCE] = _Source(path, _stamp(path), threading.Lock())
    else:
        app.extensions.pop(_SOURCE, None)


def init_app(app: Flask) -> None:
    check_keys(app)
    watch_key_file(app)


# -- rotation ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RotationReport:
    added_key: bool
    resumed: bool
    rewritten: int
    already_current: int
    undecryptable: int = 0


def _file_keys(app: Flask) -> list[str] | None:
    path = Path(app.instance_path) / VAULT_KEYS_FILE
    try:
        return path.read_text().split()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise _io_error(path, "read", error) from None


def _io_error(path: Path, verb: str, error: OSError) -> ConfigError:
    return ConfigError(f"cannot {verb} {path}: {error.strerror or error}; fix the disk or "
                       "the permissions, then run `minihost rotate-keys` again (it finishes "
                       "what was started)")


def _write_keys(app: Flask, keys: list[str]) -> None:
    path = Path(app.instance_path) / VAULT_KEYS_FILE
    temporary = path.with_suffix(".tmp")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write("\n".join(keys) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        fault("rotate.before_key_file")
        os.replace(temporary, path)
    except OSError as error:
        raise _io_error(path, "write", error) from None


def fingerprint(key: str) -> str:
    """Names a key in the rotation marker without writing the key itself."""
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _marker_key(marker: Path) -> str | None:
    """The fingerprint of the key an interrupted rotation added, if the marker says."""
    try:
        text = marker.read_text()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise _io_error(marker, "read", error) from None
    try:
        value = json.loads(text).get("newKey")
    except (ValueError, AttributeError):
        return None  # a marker from an older version, or a torn write: start again
    return value if isinstance(value, str) else None


def rotate_keys(app: Flask, batch_size: int = 100) -> RotationReport:
    """Add a key (when the keys live in the instance folder) and re-encrypt every
    credential, client secret and pending PKCE verifier under it.

    The marker is written before the key file and names the new key; a rerun
    resumes only when the key file really starts with that key, and otherwise
    starts the rotation again, so a failure between the two never passes for done.
    """
    marker = Path(app.instance_path) / ROTATION_MARKER
    file_keys = _file_keys(app)
    if file_keys is None or file_keys != app.config["VAULT_KEYS"]:
        raise ConfigError(
            "VAULT_KEYS is set in the configuration, so rotate-keys cannot add a key there: "
            "generate one (python -c 'from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())'), put it first in VAULT_KEYS, restart "
            "every host process, and run `minihost rotate-keys --no-new-key`")
    wanted = _marker_key(marker)
    if wanted is not None and file_keys and fingerprint(file_keys[0]) == wanted:
        return _reencrypt(app, batch_size, False, True, marker)
    key = Fernet.generate_key().decode()
    keys = [key, *file_keys]
    try:
        marker.write_text(json.dumps({
            "newKey": fingerprint(key),
            "note": "rotation in progress; run `minihost rotate-keys` again to finish"}) + "\n")
    except OSError as error:
        raise _io_error(marker, "write", error) from None
    fault("rotate.after_marker")
    _write_keys(app, keys)
    app.config["VAULT_KEYS"] = keys
    watch_key_file(app)
    return _reencrypt(app, batch_size, True, False, marker)


def reencrypt_only(app: Flask, batch_size: int = 100) -> RotationReport:
    """Re-encrypt under the newest configured key without adding one."""
    marker = Path(app.instance_path) / ROTATION_MARKER
    return _reencrypt(app, batch_size, False, marker.exists(), marker)


MAX_PASSES = 3


def _reencrypt(app: Flask, batch_size: int, added: bool, resumed: bool,
               marker: Path) -> RotationReport:
    """Passes over every secret until one finds nothing left under an older key: a
    server that read the key file just before it changed may still write one row
    under the old key meanwhile."""
    rewritten = 0
    current: int | None = None
    for _ in range(MAX_PASSES):
        done, already, unreadable = _pass(app, batch_size, rewritten)
        current = already if current is None else current  # as found before rotating
        rewritten += done
        if done == 0:
            break
    current = current or 0
    try:
        if marker.exists():
            marker.unlink()
    except OSError as error:
        raise _io_error(marker, "remove", error) from None
    with get_database(app).transaction() as db:
        audit.record(db, "keys_rotated", actor="cli", app=app,
                     detail={"rewritten": rewritten, "alreadyCurrent": current,
                             "addedKey": added, "undecryptable": unreadable})
    return RotationReport(added, resumed, rewritten, current, unreadable)


def _pass(app: Flask, batch_size: int, before: int) -> tuple[int, int, int]:
    vault = get_vault(app)
    database = get_database(app)
    rewritten = current = unreadable = 0
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
                    if token is None or vault.is_current(token):
                        current += 1
                        continue
                    try:
                        fresh = vault.rotate(token)
                    except InvalidToken:
                        log.warning("%s %s cannot be decrypted; left as it is", model.__name__,
                                    row_id)
                        unreadable += 1
                        continue
                    # Compare-and-set: a concurrent writer's newer value wins.
                    db.execute(update(model).where(model.id == row_id, column == token)
                               .values({column.key: fresh}))
                    rewritten += 1
                    fault("rotate.after_row", before + rewritten)
            after = rows[-1][0]
    return rewritten, current, unreadable
