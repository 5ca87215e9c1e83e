"""Installations: installing, connecting, listing, uninstalling.

A mini-app whose auth type takes credentials (an API key, a password, a
plugin's form) becomes active only after the auth type's ``connect`` passed —
for the built-in types, after ``auth.test`` passed through the engine; when it
fails, nothing is stored and the caller gets the provider's message. An OAuth
mini-app is installed ``pending`` and connects through the provider's sign-in
page. Every installation records the mini-app version it was installed with.
Another workspace's installations do not exist as far as a caller can tell (404).
"""

from __future__ import annotations

import re
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from flask import Flask
from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .. import audit, vault
from ..auth import oauth2
from ..auth.flow import auth_type_of
from ..auth.flow import connect as connect_with
from ..auth.registration import register, unregister
from ..db import (
    ActionUsage,
    Database,
    Flow,
    FlowVersion,
    Installation,
    Prepared,
    User,
    get_database,
    new_id,
    utcnow,
)
from ..errors import (
    BadInput,
    ConnectRefused,
    FieldError,
    NotFound,
    ValidationError,
)
from ..forms import coerce, validate
from ..manifest import CONFIG_RESERVED, Manifest
from ..plugins import notify
from ..principal import Principal
from . import catalog
from .paging import Page, page_of

__all__ = [
    "Connecting",
    "set_webhook_secret",
    "webhook_secret",
    "webhook_url",
    "connect",
    "finish_connect",
    "get_installation",
    "install",
    "list_installations",
    "by_name",
    "for_task",
    "check_name",
    "manifest_of",
    "rename",
    "uninstall",
    "usage",
]

_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
NAME_RULE = ("must be 1 to 64 lower-case letters, digits, '-' or '_', starting with a "
             "letter or digit")
STATUSES = ("pending", "active", "error", "reconnect_required")


# -- lookups -----------------------------------------------------------------------------


# Built once: every run looks its installation up, and Session.get builds and keys a
# new statement each time (a quarter of the lookup's cost).
_BY_ID = select(Installation).where(Installation.id == bindparam("id"))


def get_installation(db: Session, principal: Principal, installation_id: str) -> Installation:
    installation = db.execute(_BY_ID, {"id": installation_id}).scalar_one_or_none()
    if (installation is None or installation.deleted_at is not None
            or installation.workspace_id != principal.workspace_id):
        raise NotFound(f"no installation {installation_id}")
    return installation


# What tells a run's cached installation is stale: every write that matters to a run
# bumps row_version (credentials, metadata, uninstall) or updated_at (status, error).
_STAMP = (select(Installation.workspace_id, Installation.deleted_at, Installation.row_version,
                 Installation.updated_at, Installation.status, Installation.paused_until)
          .where(Installation.id == bindparam("id")))
MAX_CACHED_INSTALLATIONS = 1024


class InstallationCache:
    """Installations as runs read them, per process.

    Every action run and dropdown load looks its installation up; through the ORM that
    cost about a sixth of a run's CPU. Here each use reads five columns on the
    driver's cursor (the workspace, whether it is uninstalled, and its version
    stamp) and reuses the installation loaded before when the stamp is the same, so
    a change made by any process is seen at once. The instances are detached and
    shared between requests: runs only read them."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.stamp = Prepared(_STAMP, database.engine.dialect, (), {})
        self._entries: OrderedDict[str, tuple[tuple[Any, ...], Installation]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, db: Session, principal: Principal, installation_id: str) -> Installation:
        return self.get_in(db, principal.workspace_id, installation_id)

    def get_in(self, db: Session, workspace_id: str, installation_id: str) -> Installation:
        row = self.database.read_raw(self.stamp, {"id": installation_id})
        if row is None or row[1] is not None or row[0] != workspace_id:
            raise NotFound(f"no installation {installation_id}")
        stamp = row[2:]
        with self._lock:
            entry = self._entries.get(installation_id)
            if entry is not None and entry[0] == stamp:
                self._entries.move_to_end(installation_id)
                return entry[1]
        installation = db.execute(_BY_ID, {"id": installation_id}).scalar_one_or_none()
        if installation is None or installation.deleted_at is not None \
                or installation.workspace_id != workspace_id:
            raise NotFound(f"no installation {installation_id}")
        db.expunge(installation)
        with self._lock:
            self._entries[installation_id] = (stamp, installation)
            while len(self._entries) > MAX_CACHED_INSTALLATIONS:
                self._entries.popitem(last=False)
        return installation


def _cache(app: Flask) -> InstallationCache:
    cache: InstallationCache | None = app.extensions.get("minihost.installations")
    if cache is None:
        cache = app.extensions.setdefault("minihost.installations",
                                          InstallationCache(get_database(app)))
    return cache


def for_run(app: Flask, db: Session, principal: Principal,
            installation_id: str) -> Installation:
    """The installation an action run or a dropdown load reads (see
    :class:`InstallationCache`); pages and changes use :func:`get_installation`."""
    return _cache(app).get(db, principal, installation_id)


_ID_BY_NAME = (select(Installation.id)
               .where(Installation.workspace_id == bindparam("workspace"),
                      Installation.name == bindparam("name"),
                      Installation.deleted_at.is_(None)))


def for_task(app: Flask, db: Session, workspace_id: str, name: str) -> Installation | None:
    """The installation a flow task names, as runs read it (see
    :class:`InstallationCache`): its id by name, then the cached installation."""
    statement = app.extensions.get("minihost.installation_by_name")
    if statement is None:
        statement = app.extensions.setdefault("minihost.installation_by_name", Prepared(
            _ID_BY_NAME, get_database(app).engine.dialect, (), {}))
    row = get_database(app).read_raw(statement, {"workspace": workspace_id, "name": name})
    if row is None:
        return None
    try:
        return _cache(app).get_in(db, workspace_id, str(row[0]))
    except NotFound:
        return None


def list_installations(db: Session, principal: Principal,
                       page: Page | None = None) -> tuple[list[Installation], str | None]:
    """The workspace's installations, newest first; with ``page``, one page of them and
    the key to continue after (None on the last page)."""
    query = select(Installation).where(Installation.workspace_id == principal.workspace_id,
                                       Installation.deleted_at.is_(None))
    return page_of(db, query, Installation.id, page)


def as_its_installer(db: Session, installation_id: str) -> tuple[Installation, Principal]:
    """An installation and the person who installed it, acting in its workspace: how
    the operator's command line runs an action for them."""
    installation = db.get(Installation, installation_id)
    if installation is None or installation.deleted_at is not None:
        raise NotFound(f"no installation {installation_id}")
    user = db.get(User, installation.created_by) if installation.created_by else None
    if user is None:
        raise NotFound(f"installation {installation_id} has no user to act as")
    return installation, Principal(user, installation.workspace_id, "cli")


def by_name(db: Session, workspace_id: str, name: str) -> Installation | None:
    """The workspace's installation called ``name`` (a flow's connection), if any."""
    return db.execute(select(Installation).where(
        Installation.workspace_id == workspace_id, Installation.name == name,
        Installation.deleted_at.is_(None))).scalar_one_or_none()


def check_name(name: Any) -> str:
    if not isinstance(name, str) or not NAME.match(name):
        raise ValidationError([FieldError("name", NAME_RULE)])
    return name


def free_name(db: Session, workspace_id: str, base: str) -> str:
    """``base`` when no installation of the workspace has it, else ``base-2``, ``-3``…"""
    base = base[:56]
    taken = set(db.execute(select(Installation.name).where(
        Installation.workspace_id == workspace_id, Installation.deleted_at.is_(None),
        Installation.name.startswith(base, autoescape=True))).scalars())
    name, number = base, 1
    while name in taken:
        number += 1
        name = f"{base}-{number}"
    return name


def _claim_name(db: Session, installation: Installation, name: str) -> None:
    other = by_name(db, installation.workspace_id, name)
    if other is not None and other.id != installation.id:
        raise ValidationError([FieldError(
            "name", f"another installation of this workspace is called {name!r}; "
                    "choose another name")])
    installation.name = name


def rename(app: Flask, db: Session, principal: Principal, installation: Installation,
           name: Any) -> Installation:
    """Give an installation another name. Flows name their connections, so a flow that
    used the old name no longer finds it: the flow's lint says so on its next save,
    and a run of it fails its task with the name it looked for."""
    name = check_name(name)
    if name == installation.name:
        return installation
    old = installation.name
    _claim_name(db, installation, name)
    audit.record(db, "renamed", actor=principal.actor, workspace_id=installation.workspace_id,
                 installation_id=installation.id, detail={"from": old, "to": name})
    _commit_named(db, name)
    notify(app, "installation_changed", installation=installation.as_dict(), change="renamed")
    return installation


def _commit_named(db: Session, name: str) -> None:
    """Commit, turning a name another request took meanwhile into the same answer as
    one taken before."""
    try:
        db.commit()
    except IntegrityError:
        db.rollback()
        raise ValidationError([FieldError(
            "name", f"another installation of this workspace is called {name!r}; "
                    "choose another name")]) from None


def manifest_of(app: Flask, db: Session, installation: Installation) -> Manifest:
    return catalog.get_catalog(app).require(db, installation.miniapp,
                                            installation.miniapp_version)


def usage(db: Session, installation: Installation) -> dict[str, Any]:
    """What uses this connection: actions run (count, last), and the flows that name it.

    The counts are kept as runs are recorded (``ActionUsage``), for the installation's
    lifetime: runs purged after ``RUN_RETENTION_DAYS`` still count."""
    rows = db.execute(
        select(ActionUsage.action, ActionUsage.runs, ActionUsage.last_run_at)
        .where(ActionUsage.installation_id == installation.id)
        .order_by(ActionUsage.action)).all()
    return {
        "actions": [{"action": name, "count": count, "lastRunAt": last.isoformat()}
                    for name, count, last in rows],
        "flows": flows_using(db, installation),
    }


def flows_using(db: Session, installation: Installation) -> list[dict[str, Any]]:
    """The workspace's flows whose current version names this installation, with the
    tasks that do (the reverse-dependency view): what a rename or an uninstall
    would break."""
    if not installation.name:
        return []
    rows = db.execute(
        select(Flow.key, Flow.title, Flow.enabled, FlowVersion.document)
        .join(FlowVersion, (FlowVersion.flow_id == Flow.id)
              & (FlowVersion.version == Flow.version))
        .where(Flow.workspace_id == installation.workspace_id).order_by(Flow.key)).all()
    found = []
    for key, title, enabled, document in rows:
        tasks = []
        for task_key, task in (document.get("tasks") or {}).items():
            inner = (task.get("forEach") or {}).get("task") or {}
            if installation.name in (task.get("connection"), inner.get("connection")):
                if "dataSource" in task:
                    tasks.append({"task": task_key, "dataSource": task["dataSource"]})
                else:
                    action = task.get("action") or inner.get("action")
                    tasks.append({"task": task_key, "action": action})
        for index, trigger in enumerate(document.get("triggers") or []):
            if isinstance(trigger, dict) and trigger.get("connection") == installation.name:
                tasks.append({"trigger": index, "event": trigger.get("event")})
        if tasks:
            found.append({"flow": key, "title": title, "enabled": enabled, "tasks": tasks})
    return found


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
    """Validated values of a connect form or API body."""
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
    return values


@dataclass(frozen=True, slots=True)
class Connecting:
    """An installation, and where to send the user's browser when it connects through
    its provider's sign-in page (``None`` when it is already connected)."""

    installation: Installation
    authorize_url: str | None = None


def install(app: Flask, db: Session, principal: Principal, miniapp: str, *,
            config: Any = None, credentials: Any = None, sandbox: bool = False,
            from_form: bool = False, name: Any = None) -> Connecting:
    """Install ``miniapp`` (its newest version) in the caller's workspace: connected at
    once when its credentials are accepted, or pending with the sign-in URL. Without a
    ``name`` it is named after the mini-app (``-2``, ``-3``… when that is taken)."""
    manifest = catalog.get_catalog(app).require(db, miniapp)
    auth_type_of(app, manifest)  # an auth type no plugin provides any more is refused here
    if not isinstance(sandbox, bool):
        raise ValidationError([FieldError("sandbox", "must be true or false")])
    if name is None:
        name = free_name(db, principal.workspace_id, manifest.name)
    else:
        name = check_name(name)
        taken = by_name(db, principal.workspace_id, name)
        if taken is not None:
            raise ValidationError([FieldError(
                "name", f"another installation of this workspace is called {name!r}; "
                        "choose another name")])
    installation = Installation(
        id=new_id("ins"), workspace_id=principal.workspace_id, name=name, miniapp=manifest.name,
        miniapp_version=manifest.version, status="pending",
        config=validate_config(config, app.extensions.get("minihost.system_values", ())),
        sandbox=sandbox, webhook_token=secrets.token_urlsafe(32), created_by=principal.user.id,
        meta={}, created_at=utcnow(), updated_at=utcnow(), row_version=0)
    vault.store_webhook_secret(app, installation, secrets.token_urlsafe(32))
    if manifest.auth.authorize is not None:
        if credentials:
            raise ValidationError([FieldError(
                "credentials", f"{manifest.title} connects through its sign-in page, not "
                "with credentials")])
        oauth2.check_can_connect(app, db, manifest, installation)
        db.add(installation)
        audit.record(db, "installed", actor=principal.actor,
                     workspace_id=installation.workspace_id, installation_id=installation.id,
                     detail={"miniapp": manifest.name, "version": manifest.version})
        _commit_named(db, name)
        notify(app, "installation_changed", installation=installation.as_dict(),
               change="installed")
        return Connecting(installation,
                          oauth2.start_connect(app, db, principal, installation, manifest))
    if manifest.auth.form is None and credentials:
        raise ValidationError([FieldError("credentials", f"{manifest.title} needs none")])
    values = connect_values(manifest, credentials, from_form)
    stored, metadata = connect_with(app, installation, manifest, values, actor=principal.actor,
                                    actor_id=principal.user.id, record=False)
    installation.status = "active"
    installation.meta = metadata
    if stored:
        vault.store_credentials(app, installation, stored)
    db.add(installation)
    audit.record(db, "installed", actor=principal.actor, workspace_id=installation.workspace_id,
                 installation_id=installation.id,
                 detail={"miniapp": manifest.name, "version": manifest.version,
                         "credentialKeys": sorted(stored)})
    _commit_named(db, name)
    register(app, db, installation, manifest, stored, principal.actor, principal.user.id)
    notify(app, "installation_changed", installation=installation.as_dict(),
           change="installed")
    return Connecting(installation)


def connect(app: Flask, db: Session, principal: Principal, installation: Installation,
            credentials: Callable[[], Any], from_form: bool = False,
            oauth: bool = True) -> Connecting:
    """Connect an installation again: through the provider's sign-in page, or with new
    credentials, tested before they replace the old ones. It keeps its id.
    ``credentials`` is read only when the mini-app takes credentials, so a caller
    parses a body only when there must be one."""
    manifest = manifest_of(app, db, installation)
    if manifest.auth.authorize is not None:
        if not oauth:
            raise BadInput(f"{manifest.title} connects through its sign-in page: connect it "
                           "again (POST …/connect, or Connect again on its page) instead of "
                           "sending credentials")
        return Connecting(installation,
                          oauth2.start_connect(app, db, principal, installation, manifest))
    if manifest.auth.form is None:
        raise BadInput(f"{manifest.title} has no credentials to enter")
    values = connect_values(manifest, credentials(), from_form)
    try:
        stored, metadata = connect_with(app, installation, manifest, values,
                                        actor=principal.actor, actor_id=principal.user.id,
                                        record=True)
    except ConnectRefused as error:
        audit.record(db, "connect_failed", actor=principal.actor,
                     workspace_id=installation.workspace_id, installation_id=installation.id,
                     detail={"reason": error.detail})
        db.commit()
        raise
    vault.store_credentials(app, installation, stored)
    installation.status, installation.error = "active", None
    installation.refresh_started_at = None  # new credentials: no refresh is in doubt
    installation.meta = metadata or installation.meta
    installation.updated_at = utcnow()
    installation.row_version += 1
    audit.record(db, "connected", actor=principal.actor, workspace_id=installation.workspace_id,
                 installation_id=installation.id, detail={"credentialKeys": sorted(stored)})
    db.commit()
    register(app, db, installation, manifest, stored, principal.actor, principal.user.id)
    notify(app, "installation_changed", installation=installation.as_dict(),
           change="reconnected")
    return Connecting(installation)


def finish_connect(app: Flask, db: Session, miniapp: str, args: Mapping[str, Any],
                   principal: Principal | None) -> oauth2.Finished:
    """Where the provider sends the browser back: check the callback and, when it is
    genuine, exchange the code for tokens."""
    return oauth2.finish_connect(app, db, miniapp, args, principal,
                                 manifest_of=lambda installation: manifest_of(app, db,
                                                                             installation))


def uninstall(app: Flask, db: Session, principal: Principal, installation: Installation) -> str:
    """Run ``unregistrationRequests`` (best effort), erase the credentials, and hide the
    installation; its runs and audit events stay. Returns the unregistration outcome."""
    manifest = catalog.get_catalog(app).snapshot(db).get(installation.miniapp,
                                                         installation.miniapp_version)
    outcome = unregister(app, installation, manifest, principal.actor, principal.user.id)
    installation.credentials = None
    installation.credential_keys = []
    installation.status = "uninstalled"
    installation.deleted_at = installation.updated_at = utcnow()
    installation.row_version += 1
    audit.record(db, "uninstalled", actor=principal.actor,
                 workspace_id=installation.workspace_id, installation_id=installation.id,
                 detail={"unregistration": outcome})
    db.commit()
    notify(app, "installation_changed", installation=installation.as_dict(),
           change="uninstalled")
    return outcome


def webhook_url(app: Flask, installation: Installation) -> str:
    """``{{webhookUrl}}``: where the provider sends the installation's events."""
    return f"{app.config['PUBLIC_URL']}/hooks/{installation.id}/{installation.webhook_token}"


def webhook_secret(app: Flask, db: Session, principal: Principal,
                   installation: Installation) -> str:
    """The secret the installation's webhooks are signed with (to paste into the
    provider's settings); reading it is audited. One is made when there is none."""
    found = vault.read_webhook_secret(app, installation, actor=principal.actor,
                                      reason="shown to its user")
    if found is None:
        return set_webhook_secret(app, db, principal, installation, None)
    return found[0]


def set_webhook_secret(app: Flask, db: Session, principal: Principal,
                       installation: Installation, secret: Any) -> str:
    """Set the webhook secret to the one the provider gave (``secret``), or make a new
    one (None): events signed with the old one are refused from now on."""
    if secret is not None and (not isinstance(secret, str) or not 8 <= len(secret) <= 512
                               or secret != secret.strip()):
        raise ValidationError([FieldError("secret", "must be 8 to 512 characters, without "
                                                    "spaces around it")])
    value = secret if secret is not None else secrets.token_urlsafe(32)
    vault.store_webhook_secret(app, installation, value,
                               "host" if secret is None else "user")
    installation.updated_at = utcnow()
    audit.record(db, "webhook_secret_set", actor=principal.actor,
                 workspace_id=installation.workspace_id, installation_id=installation.id,
                 detail={"made": "by the host" if secret is None else "given by the user"})
    db.commit()
    return value
