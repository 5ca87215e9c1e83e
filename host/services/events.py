"""Inbound events (FLOWS.md §4, §5): an installation's verified webhooks and the
internal events a workspace's own application sends; each stored, then matched
against the enabled flows' event triggers.

Receiving answers only after the event is committed and before any run starts: a
provider that got a 2xx can rely on the event not being lost, and a slow flow never
makes a provider time out and send again. The runs start right after the answer, on
this process's dispatcher thread; an event left unstarted by a process that died is
picked up by any process's timer. Each (event, trigger) pair is written in the
transaction of the run it starts, under a unique key: dispatching twice starts
nothing twice.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast
from urllib.parse import parse_qsl, urlsplit

from flask import Flask
from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .. import audit, vault
from ..db import (
    EventRun,
    Flow,
    FlowEventTrigger,
    InboundEvent,
    Installation,
    Prepared,
    RawCursor,
    get_database,
    new_id,
    utcnow,
)
from ..engine import jsonlimits
from ..engine.paths import MISSING
from ..engine.render import Context, render_text
from ..engine.signatures import Inbound, Rejected, verify
from ..errors import FieldError, MinihostError, NotFound, RenderFailed, ValidationError
from ..execution import operator_values, system_values
from ..flows import render
from ..flows.graph import condition_holds
from ..manifest import Manifest
from ..principal import Principal
from . import catalog, data_sources, dispatching, flow_runs
from . import flows as flow_service
from .flows import FlowHead
from .paging import Page, page_of

__all__ = ["MAX_BODY", "Answer", "dispatch", "dispatch_pending", "event_object", "get_event",
           "list_events", "receive", "send_internal"]

logger = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024  # larger webhook bodies are refused with 413
MAX_TYPE = 200
STALE_SECONDS = 30.0  # an event not dispatched this long after it came is taken by a timer
_CACHE_SIZE = 1024


@dataclass(frozen=True, slots=True)
class Answer:
    """What ``/hooks`` answers: a status and a small body (never the request's)."""

    status: int
    body: Any = None  # a dict (JSON) or text
    event_id: str | None = None


# -- receiving a webhook -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Hooked:
    """What receiving needs of the installation, read on the driver's cursor (the ORM
    load cost as much as the rest of receiving an event)."""

    id: str
    workspace_id: str
    name: str | None
    miniapp: str
    miniapp_version: str
    webhook_token: str
    deleted_at: Any
    row_version: int
    webhook_secret: bytes | None
    credential_keys: Any


_HOOKED = select(Installation.id, Installation.workspace_id, Installation.name,
                 Installation.miniapp, Installation.miniapp_version, Installation.webhook_token,
                 Installation.deleted_at, Installation.row_version,
                 Installation.webhook_secret, Installation.credential_keys).where(
    Installation.id == bindparam("id"))


def _hooked(app: Flask, installation_id: str) -> _Hooked | None:
    statement: Prepared | None = app.extensions.get("minihost.hooked")
    if statement is None:
        statement = app.extensions.setdefault("minihost.hooked", Prepared(
            _HOOKED, get_database(app).engine.dialect, (), {}, results=True))
    row = get_database(app).read_raw(statement, {"id": installation_id})
    return None if row is None else _Hooked(*row)


def _parse(body: bytes, content_type: str) -> tuple[Any, str | None]:
    """The body as data, or MISSING and why it cannot be read."""
    kind = content_type.split(";")[0].strip().lower()
    if kind in ("", "application/json") or kind.endswith("+json"):
        try:
            return jsonlimits.loads(body), None
        except (ValueError, UnicodeDecodeError):
            return MISSING, "the body is not JSON"
    if kind == "application/x-www-form-urlencoded":
        try:
            return dict(parse_qsl(body.decode(), keep_blank_values=True)), None
        except UnicodeDecodeError:
            return MISSING, "the form body is not UTF-8"
    return MISSING, (f"the body is {kind}; this address takes application/json or "
                     "application/x-www-form-urlencoded")


class _Secrets:
    """Resolved webhook secrets per process, by the installation's write stamp: the
    credentials (or webhook secret) are decrypted — and the read audited — once per
    change, not once per event."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.found: OrderedDict[tuple[str, int, bytes], str] = OrderedDict()

    def get(self, app: Flask, db: Session, hooked: _Hooked, manifest: Manifest) -> str:
        assert manifest.webhooks is not None and manifest.webhooks.verify is not None
        template = manifest.webhooks.verify.secret
        if isinstance(template, str):
            return template
        key = (hooked.id, hooked.row_version,
               hashlib.sha256(hooked.webhook_secret or b"").digest())
        with self.lock:
            cached = self.found.get(key)
        if cached is not None:
            return cached
        installation = db.get(Installation, hooked.id)
        if installation is None:
            raise Rejected("the installation is gone")
        roots = {p.root for p in template.placeholders if p.namespace == "secret"}
        actor, reason = "system", "checking a webhook's signature"
        keys = set(installation.credential_keys or ())
        credentials: dict[str, Any] = {}
        if roots & keys:
            credentials = vault.read_credentials(app, installation, actor=actor, reason=reason)
        if "webhookSecret" in roots and "webhookSecret" not in credentials:
            own = vault.read_webhook_secret(app, installation, actor=actor, reason=reason)
            if own is not None:
                credentials["webhookSecret"] = own[0]
        client: dict[str, str] = {}
        if roots & {"clientId", "clientSecret", "clientBasicAuth"}:
            client = operator_values(app, db, manifest, installation, actor, reason, None)
        config = {**dict(manifest.auth.config), **(installation.config or {})}
        ctx = Context(credentials=credentials, metadata=dict(installation.meta or {}),
                      client=client, config=config, system=system_values(app, installation))
        try:
            value = render_text(template, ctx, "/webhooks/verify/secret")
        except RenderFailed:
            value = MISSING
        if value is MISSING or not str(value):
            raise Rejected("the secret to check signatures with is not set (set the "
                           "installation's webhook secret, or connect it again)")
        with self.lock:
            self.found[key] = str(value)
            while len(self.found) > _CACHE_SIZE:
                self.found.popitem(last=False)
        return str(value)


_SECRETS = _Secrets()


_EXISTS = {"exists": True}


def _matches(challenge_when: Any, data: Any) -> bool:
    return all((path.evaluate(data) not in (MISSING, None)) if value == _EXISTS
               else path.evaluate(data) == value for path, value in challenge_when)


def _event_type(paths: tuple[Any, ...], data: Any, headers: Mapping[str, str]) -> str:
    """The event's type: the values of ``eventType``'s paths joined with "."."""
    parts = [str(found) for found in (path.evaluate(data, headers) for path in paths)
             if found is not MISSING and found is not None and found != ""]
    return ".".join(parts)[:MAX_TYPE] or "event"


def _challenge_answer(manifest: Manifest, data: Any) -> Answer | None:
    challenge = manifest.webhooks.challenge if manifest.webhooks else None
    if challenge is None or data is MISSING or not _matches(challenge.when, data):
        return None
    if challenge.respond is not None:
        value = challenge.respond.evaluate(data)
        if value is MISSING or not isinstance(value, str | int | float):
            return Answer(400, {"title": "The handshake has nothing to answer with"})
        return Answer(200, str(value))
    return Answer(200, challenge.body if challenge.body is not None else {})


def _capture(app: Flask, installation: _Hooked, manifest: Manifest,
             data: Any) -> str | None:
    """Keep the secret a handshake delivers (Notion's verification token) as the
    installation's webhook secret; why not, when it is refused. Only a secret the host
    made is replaced: once a provider's is kept, a new one needs the user to reset it."""
    challenge = manifest.webhooks.challenge if manifest.webhooks else None
    if challenge is None or challenge.capture is None:
        return None
    value = challenge.capture.evaluate(data)
    if not isinstance(value, str) or not 8 <= len(value) <= 512:
        return "the handshake carries no usable secret"
    database = get_database(app)
    with database.transaction() as db:
        row = db.get(Installation, installation.id)
        if row is None:
            return "the installation is gone"
        current = vault.read_webhook_secret(app, row, actor="system",
                                            reason="a provider's handshake")
        if current is not None and current[1] == "provider":
            return ("a secret from the provider was kept before; to take a new one, make a "
                    "new webhook secret first (PUT /api/v1/installations/{id}/webhook-secret)")
        vault.store_webhook_secret(app, row, value, "provider")
        row.updated_at = utcnow()
        audit.record(db, "webhook_secret_set", actor="system", app=app,
                     workspace_id=row.workspace_id, installation_id=row.id,
                     detail={"made": f"delivered by {manifest.title}'s handshake"})
    return None


def receive(app: Flask, installation_id: str, token: str, body: bytes,
            headers: Mapping[str, str], method: str, url: str, content_type: str) -> Answer:
    """Check, store and answer one webhook request (``headers`` by lower-case name)."""
    database = get_database(app)
    installation = _hooked(app, installation_id)
    if installation is None or not hmac.compare_digest(
            installation.webhook_token.encode(), token.encode()):
        raise NotFound("no webhook address like this one; copy the installation's "
                       "webhookUrl again")
    with database.sessions() as db:
        if installation.deleted_at is not None:
            _reject(app, installation, "the installation was uninstalled", len(body))
            return Answer(410, {"title": "Gone", "detail": "this installation was uninstalled; "
                                "remove the webhook at the provider"})
        manifest = catalog.get_catalog(app).require(db, installation.miniapp,
                                                    installation.miniapp_version)
        hooks = manifest.webhooks
        if hooks is None:
            _reject(app, installation, f"{manifest.title} declares no webhooks", len(body))
            return Answer(404, {"title": "Not found",
                                "detail": f"{manifest.title} receives no webhooks"})
        if method == "GET":  # only a handshake comes as a GET (hub.challenge)
            data: Any = dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))
            answer = _challenge_answer(manifest, data)
            if answer is None or (hooks.challenge and hooks.challenge.signed):
                return Answer(405, {"title": "Method not allowed",
                                    "detail": "webhooks are POSTed to this address"})
            _store_challenge(app, installation, hooks, data, 0)
            return answer
        data, unreadable = _parse(body, content_type)
        challenge = hooks.challenge
        if challenge is not None and not challenge.signed:
            answer = _challenge_answer(manifest, data)
            if answer is not None:
                refused = _capture(app, installation, manifest, data)
                if refused is not None:
                    _reject(app, installation, refused, len(body))
                    return Answer(401, {"title": "Unauthorized", "detail": refused})
                _store_challenge(app, installation, hooks, data, len(body))
                return answer
        inbound = Inbound(body=body, headers=headers, method=method, url=url, data=data)
        if hooks.verify is not None:
            try:
                secret = _SECRETS.get(app, db, installation, manifest)
                verify(hooks.verify, secret, inbound, time.time())
            except Rejected as error:
                _reject(app, installation, str(error), len(body))
                return Answer(401, {"title": "Unauthorized", "detail": str(error)})
        if unreadable is not None:
            _reject(app, installation, unreadable, len(body))
            return Answer(415 if "takes" in unreadable else 400,
                          {"title": "Unreadable event", "detail": unreadable})
        if challenge is not None and challenge.signed:
            answer = _challenge_answer(manifest, data)
            if answer is not None:
                _store_challenge(app, installation, hooks, data, len(body))
                return answer
        kind = _event_type(hooks.event_type, data, headers)
        delivery = hooks.delivery_id.evaluate(data, headers) if hooks.delivery_id else MISSING
        if delivery is MISSING or delivery is None or delivery == "":
            # No delivery id: a byte-identical request (same signature) is the replay.
            signature = headers.get(hooks.verify.header, "") if hooks.verify else ""
            delivery = "sha256:" + hashlib.sha256(signature.encode() + b"\0" + body).hexdigest()
        db.close()  # its connection goes back before the write queues for the database
        return _store(app, installation.workspace_id, installation.id, installation.name or "",
                      kind, str(delivery)[:255], data, len(body), verified=True,
                      mapped=kind in hooks.events)


def _reject(app: Flask, installation: _Hooked, reason: str, size: int) -> None:
    """Keep a refused request (its reason, never its body) for the installation's
    history."""
    with get_database(app).raw() as cursor:
        cursor.execute(_statements(app).insert_event, _event_values(
            installation.workspace_id, installation.id, "rejected", None, None, False,
            "rejected", reason, None, size))


def _store_challenge(app: Flask, installation: _Hooked, hooks: Any, data: Any,
                     size: int) -> None:
    with get_database(app).raw() as cursor:
        cursor.execute(_statements(app).insert_event, _event_values(
            installation.workspace_id, installation.id, "challenge", None, None,
            bool(hooks.challenge and hooks.challenge.signed), "challenge",
            "a URL-verification handshake, answered", None, size))


def _event_values(workspace_id: str, installation_id: str | None, kind: str,
                  delivery: str | None, event_id: str | None, verified: bool, status: str,
                  reason: str | None, data: Any, size: int) -> dict[str, Any]:
    return {"id": event_id or new_id("evt"), "workspace_id": workspace_id,
            "installation_id": installation_id, "source": installation_id or "internal",
            "type": kind, "delivery_id": delivery, "received_at": utcnow(),
            "verified": verified, "status": status, "reason": reason, "data": data,
            "size": size}


_EVENT_COLUMNS = ("id", "workspace_id", "installation_id", "source", "type", "delivery_id",
                  "received_at", "verified", "status", "reason", "data", "size")


@dataclass(frozen=True, slots=True)
class _Statements:
    insert_event: Prepared
    any_trigger: Prepared  # does an enabled flow wait for this installation's event?
    any_internal: Prepared  # ...for this internal event?
    by_delivery: Prepared


def _any_trigger(dialect: Any, which: Any) -> Prepared:
    triggers = cast(Table, FlowEventTrigger.__table__)
    flows = cast(Table, Flow.__table__)
    return Prepared(
        select(triggers.c.id).join(flows, flows.c.id == triggers.c.flow_id).where(
            triggers.c.workspace_id == bindparam("workspace"), flows.c.enabled.is_(True),
            which, triggers.c.event.in_([bindparam("event"), bindparam("any")]))
        .limit(bindparam("limit")).offset(bindparam("offset")),
        dialect, (), {})


def _statements(app: Flask) -> _Statements:
    found: _Statements | None = app.extensions.get("minihost.event_statements")
    if found is None:
        dialect = get_database(app).engine.dialect
        table = cast(Table, InboundEvent.__table__)
        triggers = cast(Table, FlowEventTrigger.__table__)
        found = app.extensions.setdefault("minihost.event_statements", _Statements(
            insert_event=Prepared(insert(table), dialect, _EVENT_COLUMNS,
                                  {c.key: c.type for c in table.columns}),
            any_trigger=_any_trigger(dialect,
                                     triggers.c.connection == bindparam("connection")),
            any_internal=_any_trigger(dialect, triggers.c.connection.is_(None)),
            by_delivery=Prepared(
                select(table.c.id).where(table.c.workspace_id == bindparam("workspace"),
                                         table.c.source == bindparam("source"),
                                         table.c.delivery_id == bindparam("delivery")),
                dialect, (), {})))
    return found


def _store(app: Flask, workspace_id: str, installation_id: str | None, connection: str,
           kind: str, delivery: str | None, data: Any, size: int, *,
           verified: bool, hand_off: bool = True, mapped: bool = False) -> Answer:
    """Commit the event (a replay of a stored delivery answers 200 with the first
    one's id and starts nothing); then hand it to the dispatcher."""
    statements = _statements(app)
    database = get_database(app)
    event_id = new_id("evt")
    try:
        with database.raw() as cursor:
            if installation_id is None:
                wanted = cursor.rows(statements.any_internal, {
                    "workspace": workspace_id, "event": kind, "any": "*", "limit": 1, "offset": 0})
            else:
                wanted = cursor.rows(statements.any_trigger, {
                    "workspace": workspace_id, "connection": connection, "event": kind,
                    "any": "*", "limit": 1, "offset": 0})
            cursor.execute(statements.insert_event, _event_values(
                workspace_id, installation_id, kind, delivery, event_id, verified,
                "received" if wanted or mapped else "dispatched", None, data, size))
    except database.engine.dialect.loaded_dbapi.IntegrityError:
        with database.reading() as cursor:
            first = cursor.rows(statements.by_delivery, {
                "workspace": workspace_id, "source": installation_id or "internal",
                "delivery": delivery})
        if not first:
            raise
        return Answer(200, {"id": str(first[0][0]), "replay": True}, str(first[0][0]))
    if (wanted or mapped) and hand_off:
        dispatching.hand_off(app, event_id)
    return Answer(202 if installation_id is None else 200, {"id": event_id}, event_id)


# -- internal events ---------------------------------------------------------------------


def send_internal(app: Flask, principal: Principal, body: Any, *,
                  hand_off: bool = True) -> Answer:
    """``POST /api/v1/events`` and ``minihost events send``: an event of the workspace's
    own application; ``id`` (optional) makes a second send of it a replay. Without
    ``hand_off`` the caller dispatches it (a command, before it exits)."""
    if not isinstance(body, dict):
        raise ValidationError([FieldError("body", "must be a JSON object")])
    errors = []
    kind, delivery = body.get("type"), body.get("id")
    if not isinstance(kind, str) or not 1 <= len(kind) <= MAX_TYPE:
        errors.append(FieldError("type", f"is required: the event's type, 1 to {MAX_TYPE} "
                                         "characters (e.g. order.paid)"))
    if delivery is not None and (not isinstance(delivery, str) or not 1 <= len(delivery) <= 255):
        errors.append(FieldError("id", "must be 1 to 255 characters"))
    unknown = sorted(set(body) - {"type", "data", "id"})
    if unknown:
        errors.append(FieldError(unknown[0], "unknown field; an event has type, data and id"))
    if errors:
        raise ValidationError(errors)
    size = len(json.dumps(body.get("data"), separators=(",", ":")).encode())
    if size > MAX_BODY:
        raise ValidationError([FieldError("data", f"is {size // 1024} KB; at most "
                                                  f"{MAX_BODY // 1024} KB")])
    return _store(app, principal.workspace_id, None, "", str(kind), delivery,
                  body.get("data"), size, verified=True, hand_off=hand_off)


# -- starting the runs ---------------------------------------------------------------------


def event_scope(event: InboundEvent, connection: str | None,
                data_path: Any = None) -> dict[str, Any]:
    """What a trigger's filter and input see: ``event.data`` is the part of the body the
    mini-app's ``webhooks.data`` names (the whole body without it), ``event.body``
    the whole body."""
    data = event.data if data_path is None else data_path.evaluate(event.data)
    return {"event": {
        "id": event.id, "type": event.type, "data": None if data is MISSING else data,
        "body": event.data,
        "deliveryId": event.delivery_id, "receivedAt": event.received_at.isoformat(),
        "installation": ({"id": event.installation_id, "name": connection}
                         if event.installation_id else None)}}


def dispatch(app: Flask, event_id: str) -> int:
    """Start every enabled flow whose event trigger matches the event; how many runs
    this call started (a run already started for a trigger is not started again)."""
    database = get_database(app)
    with database.sessions() as db:
        event = db.get(InboundEvent, event_id)
        if event is None or event.status != "received":
            return 0
        connection, data_path, manifest = None, None, None
        if event.installation_id is not None:
            installation = db.get(Installation, event.installation_id)
            connection = installation.name if installation is not None else None
            if installation is not None:
                manifest = catalog.get_catalog(app).require(
                    db, installation.miniapp, installation.miniapp_version)
                hooks = manifest.webhooks
                data_path = hooks.data if hooks is not None else None
        query = (select(FlowEventTrigger, Flow.key, Flow.version, Flow.enabled)
                 .join(Flow, Flow.id == FlowEventTrigger.flow_id)
                 .where(FlowEventTrigger.workspace_id == event.workspace_id,
                        Flow.enabled.is_(True),
                        FlowEventTrigger.event.in_((event.type, "*"))))
        if connection is None:
            query = query.where(FlowEventTrigger.connection.is_(None))
        else:
            query = query.where(FlowEventTrigger.connection == connection)
        matches = db.execute(query).all()
        done = set(db.execute(select(EventRun.flow_id, EventRun.trigger)
                              .where(EventRun.event_id == event.id)).all())
        db.expunge_all()
    if manifest is not None and event.installation_id is not None and event.verified:
        for change in data_sources.apply_webhook(app, event.installation_id, manifest,
                                                 event.type, event.data):
            dispatching.hand_off(app, change)
    scope = event_scope(event, connection, data_path)
    started = 0
    for row, key, version, enabled in matches:
        if (row.flow_id, row.trigger) in done:
            continue
        flow = FlowHead(row.flow_id, key, version, enabled)
        started += _start(app, event, flow, row.trigger, scope)
    with database.transaction() as db:
        db.execute(update(InboundEvent).where(InboundEvent.id == event.id,
                                              InboundEvent.status == "received")
                   .values(status="dispatched"))
    return started


def _start(app: Flask, event: InboundEvent, flow: FlowHead, index: int,
           scope: dict[str, Any]) -> int:
    database = get_database(app)
    statement = _event_run_insert(app)
    try:
        with database.sessions() as db:
            compiled = flow_service.compiled(app, db, event.workspace_id, flow.id,
                                             flow.version)
            trigger = next((t for t in compiled.events if t.index == index), None)
            if trigger is None:
                return 0  # a new version is being saved
            if not all(condition_holds(c, scope) for c in trigger.filter):
                return 0
            body = render(trigger.input, scope)

            def claim(cursor: RawCursor, run_id: str) -> None:
                cursor.execute(statement, _run_values(event.id, flow.id, index, run_id, None))

            flow_runs.start_triggered(
                app, db, event.workspace_id, None, flow, {} if body is MISSING else body,
                trigger={"type": "event", "index": index, "event": event.type,
                         "eventId": event.id}, claim=claim)
    except (IntegrityError, database.engine.dialect.loaded_dbapi.IntegrityError):
        return 0  # started by another dispatch of the same event
    except MinihostError as error:
        _record_failure(app, event.id, flow.id, index, str(error))
        return 0
    except Exception as error:  # a template error in the trigger's input, say
        _record_failure(app, event.id, flow.id, index, f"the trigger's input: {error}")
        return 0
    return 1


def _record_failure(app: Flask, event_id: str, flow_id: str, index: int, message: str) -> None:
    try:
        with get_database(app).raw() as cursor:
            cursor.execute(_event_run_insert(app),
                           _run_values(event_id, flow_id, index, None, message))
    except get_database(app).engine.dialect.loaded_dbapi.IntegrityError:
        pass


_RUN_COLUMNS = ("id", "event_id", "flow_id", "trigger", "flow_run_id", "error", "created_at")


def _run_values(event_id: str, flow_id: str, index: int, run_id: str | None,
                error: str | None) -> dict[str, Any]:
    return {"id": new_id("evr"), "event_id": event_id, "flow_id": flow_id, "trigger": index,
            "flow_run_id": run_id, "error": error, "created_at": utcnow()}


def _event_run_insert(app: Flask) -> Prepared:
    found: Prepared | None = app.extensions.get("minihost.event_run_insert")
    if found is None:
        table = cast(Table, EventRun.__table__)
        found = app.extensions.setdefault("minihost.event_run_insert", Prepared(
            insert(table), get_database(app).engine.dialect, _RUN_COLUMNS,
            {c.key: c.type for c in table.columns}))
    return found


def dispatch_pending(app: Flask) -> int:
    """Timer: events a process stored but did not dispatch (it died, or its thread is
    far behind) — taken after half a minute, by whichever process looks first."""
    cutoff = utcnow() - timedelta(seconds=STALE_SECONDS)
    with get_database(app).sessions() as db:
        ids = list(db.execute(select(InboundEvent.id).where(
            InboundEvent.status == "received", InboundEvent.received_at < cutoff)
            .order_by(InboundEvent.received_at).limit(100)).scalars())
    return sum(dispatch(app, event_id) for event_id in ids)


# -- reading -------------------------------------------------------------------------------


def list_events(db: Session, principal: Principal, installation: str | None = None,
                kind: str | None = None,
                page: Page | None = None) -> tuple[list[InboundEvent], str | None]:
    query = select(InboundEvent).where(InboundEvent.workspace_id == principal.workspace_id)
    if installation is not None:
        query = query.where(InboundEvent.installation_id == installation)
    if kind is not None:
        query = query.where(InboundEvent.type == kind)
    return page_of(db, query, InboundEvent.id, page)


def get_event(db: Session, principal: Principal, event_id: str) -> InboundEvent:
    event = db.get(InboundEvent, event_id)
    if event is None or event.workspace_id != principal.workspace_id:
        raise NotFound(f"no event {event_id}")
    return event


def event_object(db: Session, event: InboundEvent) -> dict[str, Any]:
    """The Event object of FLOWS.md §10, with the runs it started (and why a trigger
    could not start one)."""
    started = db.execute(select(EventRun.flow_run_id, EventRun.error, Flow.key)
                         .join(Flow, Flow.id == EventRun.flow_id)
                         .where(EventRun.event_id == event.id)
                         .order_by(EventRun.id)).all()
    return {
        "id": event.id, "type": event.type, "installation": event.installation_id,
        "receivedAt": event.received_at.isoformat(), "verified": event.verified,
        "status": event.status, "reason": event.reason, "deliveryId": event.delivery_id,
        "data": event.data, "runs": [run for run, _, _ in started if run is not None],
        "failures": [{"flow": key, "error": error} for run, error, key in started
                     if run is None],
    }


dispatching.HANDLER = dispatch

