"""The operator's OAuth clients, one per mini-app; the secret is vault-encrypted."""

from __future__ import annotations

from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import audit, vault
from ..db import AppClient, utcnow
from ..errors import FieldError, ValidationError
from . import catalog

__all__ = ["list_clients", "set_client"]


def set_client(app: Flask, db: Session, miniapp: str, client_id: str, client_secret: str | None,
               actor: str) -> AppClient:
    """Create or replace the client of ``miniapp``. An empty secret keeps the stored one."""
    catalog.get_catalog(app).require(db, miniapp)
    errors = []
    if not client_id or not client_id.strip():
        errors.append(FieldError("clientId", "is required"))
    elif len(client_id) > 512 or any(ord(c) < 32 for c in client_id):
        errors.append(FieldError("clientId", "must be at most 512 printable characters"))
    if client_secret is not None and any(ord(c) < 32 for c in client_secret):
        errors.append(FieldError("clientSecret", "must not contain control characters"))
    if errors:
        raise ValidationError(errors)
    client = db.scalar(select(AppClient).where(AppClient.miniapp == miniapp))
    if client is None:
        client = AppClient(miniapp=miniapp, client_id=client_id.strip())
        db.add(client)
    client.client_id = client_id.strip()
    if client_secret:
        vault.store_client_secret(app, client, client_secret)
    client.updated_at = utcnow()
    audit.record(db, "client_set", actor=actor, detail={"miniapp": miniapp,
                                                        "secretChanged": bool(client_secret)})
    db.commit()
    return client


def list_clients(db: Session) -> dict[str, AppClient]:
    return {client.miniapp: client for client in db.scalars(select(AppClient))}
