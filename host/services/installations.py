"""Installations: installing, connecting (none, apiKey, basic), uninstalling.

An apiKey or basic installation becomes active only after its ``auth.test``
request passed through the engine; when it fails, nothing is stored and the
caller gets the provider's message. Every installation records the mini-app
version it was installed with. Another workspace's installations do not
exist as far as a caller can tell (404).
"""

from __future__ import annotations

import base64
import re
import secrets
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .. import audit, vault
from ..db import AppClient, Installation, Run, new_id, utcnow
from ..engine import Context
from ..engine.render import operator_client
from ..errors import (
    BadInput,
    ConnectRefused,
    CredentialsUnreadable,
    FieldError,
    NotFound,
    PluginFailed,
    ValidationError,
    VaultKeyMissing,
)
from ..forms import coerce, validate
from ..manifest import CONFIG_RESERVED, Manifest
from ..plugins import get_plugins, notify
from . import catalog
from .accounts import Principal
from .runs import execute

__all__ = [
    "context_for",
    "get_installation",
    "install",
    "list_installations",
    "reconnect",
    "uninstall",
    "usage",
]

_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
STATUSES = ("pending", "active", "error", "reconnect_required")


# -- lookups -----------------------------------------------------------------------------


def get_installation(db: Session, principal: Principal, installation_id: str) -> Installation:
    installation = db.get(Installation, installation_id)
    if (installation is None or installation.deleted_at is not None
            or installation.workspace_id != principal.workspace_id):
        raise NotFound(f"no installation {installation_id}")
    return installation


def list_installations(db: Session, principal: Principal, after: str | None = None,
                       limit: int | None = None) -> list[Installation]:
    query = select(Installation).where(Installation.workspace_id == principal.workspace_id,
                                       Installation.deleted_at.is_(None))
    if after:
        query = query.where(Installation.id < after)
    query = query.order_by(Installation.id.desc())
    if limit:
        query = query.limit(limit)
    return list(db.scalars(query))


def manifest_of(app: Flask, db: Session, installation: Installation) -> Manifest:
    return catalog.get_catalog(app).require(db, installation.miniapp,
                                            installation.miniapp_version)


# -- values for the engine ---------------------------------------------------------------


CLIENT_NAMES = frozenset({"clientId", "clientSecret", "clientBasicAuth"})
CLIENT_SECRET_NAMES = frozenset({"clientSecret", "clientBasicAuth"})


def _client(app: Flask, db: Session, manifest: Manifest, installation: Installation | None,
            actor: str, reason: str, requests: Sequence[Any] | None) -> dict[str, str]:
    """The operator's client values, read only when the requests about to run use
    them — and the secret decrypted (and audited) only when they use it."""
    if requests is None:
        uses, uses_secret = manifest.uses_client, manifest.uses_client_secret
    else:
        roots = frozenset().union(*(r.secret_roots for r in requests))
        uses, uses_secret = bool(roots & CLIENT_NAMES), bool(roots & CLIENT_SECRET_NAMES)
    if not uses:
        return {}
    client = db.scalar(select(AppClient).where(AppClient.miniapp == manifest.name))
    if client is None:
        return {}
    secret = None
    if uses_secret:
        secret = vault.read_client_secret(
            app, client, actor=actor, reason=reason,
            workspace_id=installation.workspace_id if installation else None,
            installation_id=installation.id if installation else None)
    return operator_client(client.client_id, secret)


def system_values(app: Flask, installation: Installation) -> dict[str, Any]:
    """The ``{{…}}`` values the host fills in, and those plugins add."""
    base = app.config["PUBLIC_URL"]
    values = {
        "hostUrl": base,
        "installationId": installation.id,
        "webhookUrl": f"{base}/hooks/{installation.id}/{installation.webhook_token}",
    }
    if installation.created_by:
        values["uid"] = installation.created_by
    subdomain = (installation.config or {}).get("subdomain")
    if subdomain:
        values["subdomain"] = subdomain
    contributed = app.extensions.get("minihost.system_values")
    if contributed:
        shape = as_dict(installation)
        for name, (plugin, function) in contributed.items():
            try:
                values[name] = function(shape)
            except Exception as error:  # left out: a request needing it names the gap
                get_plugins(app).report(plugin, "system_values", error)
    return values


def context_for(app: Flask, db: Session, installation: Installation, manifest: Manifest, *,
                actor: str, reason: str, parameters: dict[str, Any] | None = None,
                credentials: dict[str, Any] | None = None,
                requests: Sequence[Any] | None = None) -> Context:
    """Everything placeholders may name for this installation.

    Reading the stored credentials is audited (``reason`` says why); passing
    ``credentials`` uses those instead (a connect being tested).
    """
    if credentials is None:
        credentials = vault.read_credentials(app, installation, actor=actor, reason=reason)
    config = {**dict(manifest.auth.config), **(installation.config or {})}
    system = system_values(app, installation)
    for name in app.extensions.get("minihost.system_values", ()):
        config.pop(name, None)  # settings made before a plugin added the name: it wins
    return Context(
        parameters=parameters or {},
        credentials=credentials,
        metadata=dict(installation.meta or {}),
        client=_client(app, db, manifest, installation, actor, reason, requests),
        config=config,
        system=system,
    )


# -- installing --------------------------------------------------------------------------


def validate_config(config: Any, reserved: Collection[str] = ()) -> dict[str, Any]:
    """An installation's settings; ``reserved`` adds the ``{{…}}`` names plugins
    fill in, which a setting may no more replace than the host's own."""
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise ValidationError([FieldError("config", "must be an object of settings")])
    errors = []
    for key, value in config.items():
        if key in CONFIG_RESERVED or key in reserved:
            errors.append(FieldError(f"config.{key}", "is a value the host sets itself; leave "
                                                      "it out of config"))
        elif not isinstance(value, (str, int, float, bool)):
            errors.append(FieldError(f"config.{key}", "must be text, a number or true/false"))
    subdomain = config.get("subdomain")
    if subdomain is not None and (not isinstance(subdomain, str) or not _LABEL.match(subdomain)):
        errors.append(FieldError("config.subdomain",
                                 "must be one DNS label: lower-case letters, digits and '-'"))
    if errors:
        raise ValidationError(errors)
    return dict(config)


def connect_values(manifest: Manifest, submitted: Any, from_form: bool) -> dict[str, Any]:
    """Validated credentials from a connect form or API body (plus ``basicAuth``)."""
    form = manifest.auth.form
    if form is None:
        return {}
    if submitted is None:
        submitted = {}
    if not isinstance(submitted, dict) and not hasattr(submitted, "getlist"):
        raise ValidationError([FieldError("credentials", "must be an object")])
    errors: list[FieldError] = []
    if from_form:
        values, errors = coerce(form, submitted)
    else:
        values = dict(submitted)
    errors += validate(form, values)
    if errors:
        raise ValidationError(errors)
    if manifest.auth.type == "basic":
        pair = f"{values['username']}:{values['password']}".encode()
        values["basicAuth"] = "Basic " + base64.b64encode(pair).decode()
    return values


@dataclass(frozen=True, slots=True)
class Connected:
    metadata: dict[str, Any]
    run_id: str | None


def _test(app: Flask, db: Session, installation: Installation, manifest: Manifest,
          credentials: dict[str, Any], principal: Principal, record: bool) -> Connected:
    test = manifest.auth.test
    if test is None:
        return Connected({}, None)
    ctx = context_for(app, db, installation, manifest, actor=principal.actor, reason="connect",
                      credentials=credentials, requests=[test])
    result, run = execute(
        app, workspace_id=installation.workspace_id,
        installation_id=installation.id if record else None, kind="auth", name="test",
        requests=[test], ctx=ctx, allowed_hosts=manifest.allowed_hosts, miniapp=manifest.name,
        persist="metadata",
        sandbox=installation.sandbox, actor_id=principal.user.id, record=record)
    if not result.ok:
        error = result.error
        if isinstance(error, PluginFailed):  # the host's own setup, not the credentials
            raise error
        message = getattr(error, "provider_message", None)
        raise ConnectRefused(
            f"{manifest.title} did not accept the credentials: "
            f"{message or (error.detail if error else 'the test request failed')}", message)
    return Connected({k: v for k, v in result.values.items() if v is not None},
                     run.id if run is not None else None)


def _verify(app: Flask, db: Session, installation: Installation, manifest: Manifest,
            submitted: Any, from_form: bool, principal: Principal,
            record: bool) -> tuple[dict[str, Any], Connected]:
    """The credentials to store for a submitted connect form, once the provider
    accepted them: ``auth.test`` for API keys and passwords, the auth type's own
    ``connect`` for a plugin's."""
    values = connect_values(manifest, submitted, from_form)
    if manifest.auth.plugin is None:
        return values, _test(app, db, installation, manifest, values, principal, record)
    from . import plugin_auth

    credentials = plugin_auth.connect(app, db, installation, manifest, values,
                                      actor=principal.actor, actor_id=principal.user.id,
                                      record=record)
    return credentials, Connected({}, None)


def install(app: Flask, db: Session, principal: Principal, miniapp: str, *,
            config: Any = None, credentials: Any = None, sandbox: bool = False,
            from_form: bool = False) -> Installation:
    """Install ``miniapp`` (its newest version) in the caller's workspace."""
    manifest = catalog.get_catalog(app).require(db, miniapp)
    kind = manifest.auth.type
    if kind not in ("none", "apiKey", "basic", "oauth2") and manifest.auth.plugin is None:
        raise BadInput(f"{manifest.title} connects with {kind}, which no plugin of this host "
                       "provides any more; ask the operator")
    if not isinstance(sandbox, bool):
        raise ValidationError([FieldError("sandbox", "must be true or false")])
    installation = Installation(
        id=new_id("ins"), workspace_id=principal.workspace_id, miniapp=manifest.name,
        miniapp_version=manifest.version, status="pending",
        config=validate_config(config, app.extensions.get("minihost.system_values", ())),
        sandbox=sandbox, webhook_token=secrets.token_urlsafe(32), created_by=principal.user.id,
        meta={}, created_at=utcnow(), updated_at=utcnow(), row_version=0)
    if kind == "oauth2":
        if credentials:
            raise ValidationError([FieldError(
                "credentials", f"{manifest.title} connects through its sign-in page, not "
                "with credentials")])
        from ..auth.oauth2 import check_can_connect

        check_can_connect(app, db, manifest, installation)
        db.add(installation)
        audit.record(db, "installed", actor=principal.actor,
                     workspace_id=installation.workspace_id, installation_id=installation.id,
                     detail={"miniapp": manifest.name, "version": manifest.version})
        db.commit()
        notify(app, "installation_changed", installation=as_dict(installation),
               change="installed")
        return installation
    if kind == "none":
        if credentials:
            raise ValidationError([FieldError("credentials", f"{manifest.title} needs none")])
        values: dict[str, Any] = {}
        connected = Connected({}, None)
    else:
        values, connected = _verify(app, db, installation, manifest, credentials, from_form,
                                    principal, record=False)
    installation.status = "active"
    installation.meta = connected.metadata
    if values:
        vault.store_credentials(app, installation, values)
    db.add(installation)
    audit.record(db, "installed", actor=principal.actor, workspace_id=installation.workspace_id,
                 installation_id=installation.id,
                 detail={"miniapp": manifest.name, "version": manifest.version,
                         "credentialKeys": sorted(values)})
    db.commit()
    register(app, db, installation, manifest, values, principal.actor, principal.user.id)
    notify(app, "installation_changed", installation=as_dict(installation), change="installed")
    return installation


def register(app: Flask, db: Session, installation: Installation, manifest: Manifest,
             credentials: dict[str, Any], actor: str, actor_id: str | None) -> None:
    """Run ``registrationRequests`` (a webhook, say); their object mappings join the
    credentials. A failure leaves the installation in ``error`` with the reason, to retry."""
    requests = manifest.auth.registration
    if not requests:
        return
    ctx = context_for(app, db, installation, manifest, actor=actor,
                      reason="connect", credentials=credentials, requests=requests)
    result, _ = execute(
        app, workspace_id=installation.workspace_id, installation_id=installation.id,
        kind="auth", name="registration", requests=requests, ctx=ctx,
        allowed_hosts=manifest.allowed_hosts, miniapp=manifest.name, persist="credentials",
        sandbox=installation.sandbox, actor_id=actor_id)
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


def reconnect(app: Flask, db: Session, principal: Principal, installation: Installation,
              credentials: Any, from_form: bool = False) -> Installation:
    """New credentials for an apiKey/basic installation, tested before they replace
    the old ones; the installation keeps its id."""
    manifest = manifest_of(app, db, installation)
    if manifest.auth.type not in ("apiKey", "basic") and manifest.auth.plugin is None:
        raise BadInput(f"{manifest.title} has no credentials to enter")
    try:
        values, connected = _verify(app, db, installation, manifest, credentials, from_form,
                                    principal, record=True)
    except ConnectRefused as error:
        audit.record(db, "connect_failed", actor=principal.actor,
                     workspace_id=installation.workspace_id, installation_id=installation.id,
                     detail={"reason": error.detail})
        db.commit()
        raise
    vault.store_credentials(app, installation, values)
    installation.status, installation.error = "active", None
    installation.refresh_started_at = None  # new credentials: no refresh is in doubt
    installation.meta = connected.metadata or installation.meta
    installation.updated_at = utcnow()
    installation.row_version += 1
    audit.record(db, "connected", actor=principal.actor, workspace_id=installation.workspace_id,
                 installation_id=installation.id, detail={"credentialKeys": sorted(values)})
    db.commit()
    register(app, db, installation, manifest, values, principal.actor, principal.user.id)
    notify(app, "installation_changed", installation=as_dict(installation), change="reconnected")
    return installation


def uninstall(app: Flask, db: Session, principal: Principal, installation: Installation) -> str:
    """Run ``unregistrationRequests`` (best effort), erase the credentials, and hide the
    installation; its runs and audit events stay. Returns the unregistration outcome."""
    outcome = "none"
    manifest = catalog.get_catalog(app).snapshot(db).get(installation.miniapp,
                                                         installation.miniapp_version)
    if manifest is not None and manifest.auth.unregistration:
        try:
            ctx = context_for(app, db, installation, manifest, actor=principal.actor,
                              reason="uninstall", requests=manifest.auth.unregistration)
            result, _ = execute(
                app, workspace_id=installation.workspace_id, installation_id=installation.id,
                kind="auth", name="unregistration", requests=manifest.auth.unregistration,
                ctx=ctx, allowed_hosts=manifest.allowed_hosts, miniapp=manifest.name,
                persist="none",
                sandbox=installation.sandbox, actor_id=principal.user.id)
            outcome = "succeeded" if result.ok else f"failed: {result.error.detail}"
        except (CredentialsUnreadable, VaultKeyMissing):
            outcome = "skipped: the credentials could not be read"
    installation.credentials = None
    installation.credential_keys = []
    installation.status = "uninstalled"
    installation.deleted_at = installation.updated_at = utcnow()
    installation.row_version += 1
    audit.record(db, "uninstalled", actor=principal.actor,
                 workspace_id=installation.workspace_id, installation_id=installation.id,
                 detail={"unregistration": outcome})
    db.commit()
    notify(app, "installation_changed", installation=as_dict(installation),
           change="uninstalled")
    return outcome


def usage(db: Session, installation: Installation) -> dict[str, Any]:
    """What uses this connection: actions run (count, last) and flows (none yet)."""
    rows = db.execute(
        select(Run.name, func.count(Run.id), func.max(Run.started_at))
        .where(Run.installation_id == installation.id, Run.kind == "action")
        .group_by(Run.name).order_by(Run.name)).all()
    return {
        "actions": [{"action": name, "count": count, "lastRunAt": last.isoformat()}
                    for name, count, last in rows],
        "flows": [],
    }


def recent_runs(db: Session, installation: Installation, limit: int = 10) -> list[Run]:
    return list(db.scalars(select(Run).where(Run.installation_id == installation.id)
                           .order_by(Run.id.desc()).limit(limit)))


def as_dict(installation: Installation) -> dict[str, Any]:
    """The API's shape: never a credential value, only ``credentialKeys``."""
    return {
        "id": installation.id,
        "miniapp": installation.miniapp,
        "version": installation.miniapp_version,
        "status": installation.status,
        "error": installation.error,
        "metadata": installation.meta or {},
        "config": installation.config or {},
        "sandbox": installation.sandbox,
        "credentialKeys": credential_keys(installation),
        "createdAt": installation.created_at.isoformat(),
        "updatedAt": installation.updated_at.isoformat(),
    }


def credential_keys(installation: Installation) -> list[str]:
    """Names of the stored credentials, kept beside them so showing them needs no
    decryption (and no audit event)."""
    return list(installation.credential_keys or [])
