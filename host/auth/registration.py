"""Registering an installation with its provider after a connect, and unregistering
it on uninstall (``registrationRequests`` / ``unregistrationRequests``, MANIFEST §3).

A registration's object mappings join the credentials (a webhook's id, say); a
failure leaves the installation in ``error`` with the reason, to retry by
connecting again. Unregistering is best effort: an uninstall never waits on it.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from flask import Flask
from sqlalchemy.orm import Session

from .. import audit, vault
from ..db import Installation, utcnow
from ..errors import CredentialsUnreadable, VaultKeyMissing
from ..execution import Step, run_step
from ..manifest import Manifest

__all__ = ["register", "unregister"]


def register(app: Flask, db: Session, installation: Installation, manifest: Manifest,
             credentials: Mapping[str, Any], actor: str, actor_id: str | None) -> None:
    """Run ``registrationRequests`` (a webhook, say) with the new credentials."""
    requests = manifest.auth.registration
    if not requests:
        return
    unreachable = _unreachable_webhook(app, manifest)
    if unreachable is not None and not installation.sandbox:
        audit.record(db, "registration_skipped", actor=actor,
                     workspace_id=installation.workspace_id, installation_id=installation.id,
                     detail={"reason": unreachable})
        db.commit()
        return
    result, _ = run_step(app, Step(
        installation=installation, manifest=manifest, requests=requests, kind="auth",
        name="registration", actor=actor, actor_id=actor_id, persist="credentials",
        credentials=_with_webhook_secret(app, installation, requests, credentials, actor),
        reason="connect"))
    if result.ok:
        vault.store_credentials(app, installation, {**credentials, **result.values})
    else:
        installation.status = "error"
        installation.error = (f"registering with {manifest.title} failed: "
                              f"{result.error.detail if result.error else 'unknown error'}; "
                              "connect again to retry")
    installation.updated_at = utcnow()
    installation.row_version += 1
    audit.record(db, "registered" if result.ok else "registration_failed",
                 actor=actor, workspace_id=installation.workspace_id,
                 installation_id=installation.id,
                 detail={"credentialKeys": sorted(result.values)} if result.ok else
                 {"reason": installation.error})
    db.commit()


def _local(host: str) -> bool:
    host = host.strip("[]").lower()
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host == "localhost" or host.endswith((".localhost", ".local", ".internal"))
    return address.is_private or address.is_loopback or address.is_link_local


def _unreachable_webhook(app: Flask, manifest: Manifest) -> str | None:
    """Why the provider could not call this host's webhook URL back, when it could not:
    ``PUBLIC_URL`` names this machine or a private network while the registration goes
    to a provider on the internet (which refuses such a URL, or could never deliver to
    it). Registering then is skipped, not failed: the installation works without
    events until the host has a public address."""
    raw = manifest.auth.raw.get("registrationRequests") or []
    if "webhookUrl" not in json.dumps(raw):
        return None
    public = app.config["PUBLIC_URL"]
    if not _local(urlsplit(public).hostname or ""):
        return None
    for request in raw:
        host = urlsplit(str(request.get("url", ""))).hostname or ""
        if "{{" not in host and not _local(host):
            return (f"{manifest.title} cannot reach this host at {public} to deliver "
                    "events; set PUBLIC_URL to the host's public https address and connect "
                    "again to register its webhook")
    return None


def _with_webhook_secret(app: Flask, installation: Installation, requests: Any,
                         credentials: Mapping[str, Any], actor: str) -> Mapping[str, Any]:
    """The credentials, with the installation's own webhook secret as ``webhookSecret``
    when a registration request gives it to the provider (GitHub's ``config.secret``).
    It is not stored with the credentials: the installation keeps it apart."""
    if "webhookSecret" in credentials or not any(
            "webhookSecret" in request.secret_roots for request in requests):
        return credentials
    own = vault.read_webhook_secret(app, installation, actor=actor,
                                    reason="registering the webhook")
    return credentials if own is None else {**credentials, "webhookSecret": own[0]}


def unregister(app: Flask, installation: Installation, manifest: Manifest | None, actor: str,
               actor_id: str | None) -> str:
    """Run ``unregistrationRequests`` with the stored credentials; the outcome in words
    (``none``, ``succeeded``, ``failed: …``, ``skipped: …``)."""
    if manifest is None or not manifest.auth.unregistration:
        return "none"
    try:
        result, _ = run_step(app, Step(
            installation=installation, manifest=manifest,
            requests=manifest.auth.unregistration, kind="auth", name="unregistration",
            actor=actor, actor_id=actor_id, persist="none", reason="uninstall"))
    except (CredentialsUnreadable, VaultKeyMissing):
        return "skipped: the credentials could not be read"
    if result.ok:
        return "succeeded"
    return f"failed: {result.error.detail if result.error else 'unknown error'}"
