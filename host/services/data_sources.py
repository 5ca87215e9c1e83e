"""Data sources (FLOWS.md §6): an installation's collections listed page by page, kept
as records, and their changes turned into events.

A sync lists every record (the list request's pagination followed), compares each
record's hash with the one kept, and in one transaction writes the changed records
with a ``<source>.created`` / ``.updated`` / ``.deleted`` event for each — which then
start the flows that wait for them, like a webhook's events. The first sync of a
source fills the records and emits nothing (everything would be "created"). A sync
that fails on any page, or that stopped at ``maxPages`` before the list ended,
changes nothing: a record missing from an incomplete list is not a deleted one.
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

from flask import Flask
from sqlalchemy import Table, delete, insert, select, update
from sqlalchemy.orm import Session

from ..auth.refresh import Keeper
from ..db import (
    DataRecord,
    DataSourceState,
    Flow,
    FlowEventTrigger,
    InboundEvent,
    Installation,
    changed,
    get_database,
    insert_ignoring,
    new_id,
    utcnow,
)
from ..engine.chain import items_of
from ..engine.paths import MISSING
from ..engine.render import stringify
from ..errors import NotFound, UpstreamFailed
from ..execution import Step, run_step
from ..manifest import Manifest
from ..manifest.model import DataSource
from . import catalog, dispatching

__all__ = ["SYNC_SECONDS", "Synced", "apply_webhook", "records", "sync", "sync_due"]

logger = logging.getLogger(__name__)

SYNC_SECONDS = 300.0  # the time budget of one sync, every page included


@dataclass(frozen=True, slots=True)
class Synced:
    """What a sync found: counts of records and of changes (none on a first sync)."""

    source: str
    records: int
    created: int
    updated: int
    deleted: int
    first: bool
    events: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "records": self.records, "created": self.created,
                "updated": self.updated, "deleted": self.deleted, "first": self.first,
                "events": self.events}


def data_source(manifest: Manifest, name: str) -> DataSource:
    found = manifest.data_sources.get(name)
    if found is None:
        names = ", ".join(sorted(manifest.data_sources)) or "none"
        raise NotFound(f"{manifest.title} has no data source {name!r} (it has: {names})")
    return found


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str)


def _digest(record: Any) -> str:
    """A record's hash over its canonical JSON (keys sorted): a provider that reorders
    keys changes nothing."""
    return hashlib.sha256(_CANONICAL.encode(record).encode()).hexdigest()


@dataclass(slots=True)
class _Seen:
    """A listed record; its hash is computed only when its ``updatedAt`` cannot tell."""

    record: Any
    updated_at: str | None
    hash: str = ""

    def stamp(self) -> str:
        """What tells a change: the record's ``updatedAt`` when it has one (hashing ten
        thousand records costs more than listing them), else its hash."""
        if self.updated_at is not None:
            return f"u:{self.updated_at}"
        if not self.hash:
            self.hash = _digest(self.record)
        return self.hash


def _stamp_of(updated_at: str | None, digest: str) -> str:
    return f"u:{updated_at}" if updated_at is not None else digest


def _listed(source: DataSource, bodies: list[Any]) -> dict[str, _Seen]:
    """The records of every page by id. Records without an id are skipped; the last of
    two with one id wins."""
    found: dict[str, _Seen] = {}
    id_path, changed_path = source.id, source.updated_at
    for record in items_of(source.items, bodies):
        record_id = id_path.evaluate(record)
        if record_id is MISSING or record_id is None or record_id == "":
            continue
        changed = changed_path.evaluate(record) if changed_path is not None else None
        found[record_id if type(record_id) is str else stringify(record_id)] = _Seen(
            record, None if changed is MISSING or changed is None else stringify(changed)[:64])
    return found


@contextmanager
def _no_gc() -> Iterator[None]:
    """No cyclic garbage collection while ten thousand records are sorted out: they make
    no cycles, and a full collection in the middle (triggered by their allocations) took
    several times as long as the work itself."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class _Kept:
    """Per process, the stamps of the records each data source holds, as of its last
    sync (checked against the state row's ``synced_at``): a sync reads them from the
    database only when another process synced since."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.found: OrderedDict[tuple[str, str], tuple[Any, dict[str, str]]] = OrderedDict()

    def get(self, key: tuple[str, str], synced_at: Any) -> dict[str, str] | None:
        with self.lock:
            entry = self.found.get(key)
        return dict(entry[1]) if entry is not None and entry[0] == synced_at else None

    def put(self, key: tuple[str, str], synced_at: Any, stamps: dict[str, str]) -> None:
        with self.lock:
            self.found[key] = (synced_at, stamps)
            self.found.move_to_end(key)
            while len(self.found) > 32:
                self.found.popitem(last=False)


_KEPT = _Kept()


def sync(app: Flask, installation: Installation, manifest: Manifest, name: str, *,
         actor: str, actor_id: str | None = None) -> Synced:
    """List the data source ``name`` of ``installation`` and record what changed."""
    source = data_source(manifest, name)
    with _no_gc():  # the pages parsed so far stay alive: each collection would walk them
        result, _ = run_step(app, Step(
            installation=installation, manifest=manifest, requests=(source.list,),
            kind="source", name=name, actor=actor, actor_id=actor_id, persist="none",
            pages_items=source.items, deadline=time.monotonic() + SYNC_SECONDS,
            keeper=Keeper(app, installation, manifest, actor=actor,
                          reason="data source sync")))
    now = utcnow()
    if not result.ok or not result.complete:
        why = (result.error.detail if result.error is not None else
               "the list did not end within its maxPages; nothing was changed")
        _note_failure(app, installation.id, name, why, now, source.poll_seconds)
        raise UpstreamFailed(f"syncing {source.title} of {installation.name or installation.id}"
                             f" failed: {why}")
    with _no_gc():
        listed = _listed(source, result.bodies())
    database = get_database(app)
    created: list[str] = []
    emitted: list[str] = []
    key = (installation.id, name)
    with database.transaction() as db:
        state = db.execute(select(DataSourceState).where(
            DataSourceState.installation_id == installation.id,
            DataSourceState.source == name).with_for_update()).scalar_one_or_none()
        if state is None:
            state = DataSourceState(installation_id=installation.id, source=name, records=0)
            db.add(state)
        first = state.synced_at is None
        stamps = _KEPT.get(key, state.synced_at)
        if stamps is None:  # stamps only: the records are read back for deletions alone
            stamps = {record_id: _stamp_of(updated_at, digest)
                      for record_id, updated_at, digest in db.execute(select(
                          DataRecord.record_id, DataRecord.updated_at, DataRecord.hash).where(
                          DataRecord.installation_id == installation.id,
                          DataRecord.source == name)).all()}
        new = [k for k in listed if k not in stamps]
        changed = [k for k, seen in listed.items() if k in stamps and stamps[k] != seen.stamp()]
        gone = [k for k in stamps if k not in listed]
        kept = {} if first or not gone else _kept(db, installation.id, name, gone, stamps)
        _write(db, installation.id, name, listed, new, changed, gone, now)
        if not first:
            emitted, created = _emit(db, installation, name, listed, kept, new, changed, gone,
                                     now)
        state.synced_at, state.records, state.error = now, len(listed), None
        state.next_sync_at = now + timedelta(seconds=source.poll_seconds)
        for k in gone:
            del stamps[k]
        for k in (*new, *changed):
            stamps[k] = listed[k].stamp()
    _KEPT.put(key, now, stamps)
    for event_id in created:
        dispatching.hand_off(app, event_id)
    return Synced(name, len(listed), 0 if first else len(new), 0 if first else len(changed),
                  0 if first else len(gone), first, emitted)


def _kept(db: Session, installation_id: str, name: str, keys: list[str],
          stamps: dict[str, str]) -> dict[str, tuple[str, Any]]:
    """The last seen records of ``keys`` (the deleted ones), with their stamps."""
    found: dict[str, tuple[str, Any]] = {}
    for start in range(0, len(keys), 500):
        for key, record in db.execute(select(DataRecord.record_id, DataRecord.record).where(
                DataRecord.installation_id == installation_id, DataRecord.source == name,
                DataRecord.record_id.in_(keys[start:start + 500]))).all():
            found[key] = (stamps[key], record)
    return found


def _write(db: Session, installation_id: str, name: str, listed: dict[str, _Seen],
           new: list[str], changed: list[str], gone: list[str], now: Any) -> None:
    table = cast(Table, DataRecord.__table__)
    if new:
        db.execute(insert(table), [
            {"id": new_id("rec"), "installation_id": installation_id, "source": name,
             "record_id": key, "hash": listed[key].hash, "updated_at": listed[key].updated_at,
             "record": listed[key].record, "seen_at": now} for key in new])
    for key in changed:
        seen = listed[key]
        db.execute(update(DataRecord).where(
            DataRecord.installation_id == installation_id, DataRecord.source == name,
            DataRecord.record_id == key).values(hash=seen.hash, updated_at=seen.updated_at,
                                                record=seen.record, seen_at=now))
    for start in range(0, len(gone), 500):
        db.execute(delete(DataRecord).where(
            DataRecord.installation_id == installation_id, DataRecord.source == name,
            DataRecord.record_id.in_(gone[start:start + 500])))


def _emit(db: Session, installation: Installation, name: str,
          listed: dict[str, _Seen], kept: dict[str, tuple[str, Any]],
          new: list[str], changed: list[str], gone: list[str],
          now: Any) -> tuple[list[str], list[str]]:
    """One event per change, in the sync's transaction: all their ids, and those a flow
    waits for (to dispatch)."""
    waiting = set(db.execute(select(FlowEventTrigger.event).join(
        Flow, Flow.id == FlowEventTrigger.flow_id).where(
        FlowEventTrigger.workspace_id == installation.workspace_id,
        FlowEventTrigger.connection == installation.name, Flow.enabled.is_(True))).scalars())
    rows = []
    for kind, keys in (("created", new), ("updated", changed), ("deleted", gone)):
        for key in keys:
            digest, record = (kept[key] if kind == "deleted"
                              else (listed[key].stamp(), listed[key].record))
            rows.append({
                "id": new_id("evt"), "workspace_id": installation.workspace_id,
                "installation_id": installation.id, "source": installation.id,
                "type": f"{name}.{kind}",
                # A change is one event however many syncs see it (a crash between the
                # commit and the dispatch does not make it twice).
                "delivery_id": f"sync:{name}:{key}:{kind}:{digest[-40:]}"[:255],
                "received_at": now, "verified": True, "reason": None,
                # No flow waits for it: nothing to start, nothing for a dispatcher to do.
                "status": "received" if {f"{name}.{kind}", "*"} & waiting else "dispatched",
                "data": record, "size": 0})
    if rows:
        # A change already emitted (by a webhook that updated the record, say) is kept once.
        db.execute(insert_ignoring(cast(Table, InboundEvent.__table__),
                                   db.get_bind().dialect), rows)
    return ([row["id"] for row in rows],
            [row["id"] for row in rows if row["status"] == "received"])


def apply_webhook(app: Flask, installation_id: str, manifest: Manifest, kind: str,
                  body: Any) -> list[str]:
    """A webhook event a mini-app maps onto a data source (``webhooks.events``): keep
    its record and emit the change as a sync would — once a first sync has filled the
    source (before that there is nothing to compare with). Returns the change events
    to dispatch."""
    mapping = manifest.webhooks.events.get(kind) if manifest.webhooks else None
    if mapping is None or mapping.data_source not in manifest.data_sources:
        return []
    source = manifest.data_sources[mapping.data_source]
    name = source.name
    record = mapping.record.evaluate(body) if mapping.record is not None else body
    if record is MISSING or record is None:
        return []
    record_id = source.id.evaluate(record)
    if record_id is MISSING or record_id is None or record_id == "":
        return []
    key = stringify(record_id)[:255]
    changed_at = source.updated_at.evaluate(record) if source.updated_at else None
    listed = {} if mapping.delete else {key: _Seen(record, None if changed_at in (MISSING, None)
                                                   else stringify(changed_at)[:64])}
    now = utcnow()
    with get_database(app).transaction() as db:
        state = db.execute(select(DataSourceState).where(
            DataSourceState.installation_id == installation_id,
            DataSourceState.source == name).with_for_update()).scalar_one_or_none()
        installation = db.get(Installation, installation_id)
        if state is None or state.synced_at is None or installation is None:
            return []
        row = db.execute(select(DataRecord.updated_at, DataRecord.hash, DataRecord.record)
                         .where(DataRecord.installation_id == installation_id,
                                DataRecord.source == name, DataRecord.record_id == key)
                         ).one_or_none()
        stamp = None if row is None else _stamp_of(row.updated_at, row.hash)
        new = [key] if not mapping.delete and row is None else []
        changed = ([key] if not mapping.delete and row is not None
                   and listed[key].stamp() != stamp else [])
        gone = [key] if mapping.delete and row is not None else []
        if not (new or changed or gone):
            return []
        kept = {key: (stamp or "", row.record)} if gone and row is not None else {}
        _write(db, installation_id, name, listed, new, changed, gone, now)
        _, created = _emit(db, installation, name, listed, kept, new, changed, gone, now)
        state.records += len(new) - len(gone)
        state.synced_at = now  # the stamps kept by each process are out of date
    return created


def _note_failure(app: Flask, installation_id: str, name: str, why: str, now: Any,
                  poll_seconds: int) -> None:
    with get_database(app).transaction() as db:
        state = db.execute(select(DataSourceState).where(
            DataSourceState.installation_id == installation_id,
            DataSourceState.source == name)).scalar_one_or_none()
        if state is None:
            state = DataSourceState(installation_id=installation_id, source=name, records=0)
            db.add(state)
        state.error = why[:2000]
        state.next_sync_at = now + timedelta(seconds=poll_seconds)


def records(db: Session, installation: Installation, name: str, limit: int = 1000,
            after: str | None = None) -> tuple[list[Any], str | None]:
    """The records kept for a data source, by id, ``limit`` at a time after the id
    ``after``; and the id to continue after (None on the last page)."""
    query = select(DataRecord.record_id, DataRecord.record).where(
        DataRecord.installation_id == installation.id, DataRecord.source == name)
    if after is not None:
        query = query.where(DataRecord.record_id > after)
    rows = db.execute(query.order_by(DataRecord.record_id).limit(limit + 1)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    return [record for _, record in rows], (rows[-1][0] if more and rows else None)


def sync_due(app: Flask) -> int:
    """Timer: sync every data source whose next sync has come, each claimed by moving
    its next sync on (compare-and-set), so one process syncs it."""
    now = utcnow()
    database = get_database(app)
    with database.sessions() as db:
        due = db.execute(select(DataSourceState.id, DataSourceState.installation_id,
                                DataSourceState.source, DataSourceState.next_sync_at)
                         .where(DataSourceState.next_sync_at <= now)
                         .order_by(DataSourceState.next_sync_at).limit(20)).all()
    done = 0
    for state_id, installation_id, name, at in due:
        with database.transaction() as db:
            claimed = changed(db.execute(update(DataSourceState).where(
                DataSourceState.id == state_id, DataSourceState.next_sync_at == at).values(
                next_sync_at=now + timedelta(seconds=SYNC_SECONDS))))
        if not claimed:
            continue
        with database.sessions() as db:
            installation = db.get(Installation, installation_id)
            if installation is None or installation.deleted_at is not None \
                    or installation.status != "active":
                continue
            manifest = catalog.get_catalog(app).require(db, installation.miniapp,
                                                        installation.miniapp_version)
            db.expunge(installation)
        try:
            sync(app, installation, manifest, name, actor="system")
            done += 1
        except Exception as error:  # recorded on the state; tried again at the next poll
            logger.warning("data source %s of %s: %s", name, installation_id, error)
    return done
