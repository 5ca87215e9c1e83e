"""The catalog: which mini-apps this host offers, and the search over them.

``sync`` reads every manifest from ``MINIAPPS_DIRS`` and the
``miniapp_manifests`` plugin hook, validates each, and records valid ones as
:class:`~host.db.MiniApp` rows (name + version + origin); invalid ones never
enter the catalog and are kept as :class:`~host.db.CatalogError` rows with
their problems. A sync that finds nothing new writes nothing.

Each stored entry keeps a digest of its document and of the rules it passed
(:func:`~host.manifest.validated_digest`), so a sync validates only what changed
and an unchanged catalog costs a read and a hash per manifest.

Pages and the API read a :class:`Snapshot` — a listing :class:`Entry` per
mini-app, held in memory and rebuilt only when the ``miniapp`` table changed
(checked with one cheap aggregate query). Manifests are compiled on first use,
not at start-up, so neither starting a host nor listing the catalog costs time
in proportion to its size.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import JSON, delete, func, literal_column, select
from sqlalchemy.orm import Session, defer

from ..db import CatalogError, Database, MiniApp, exclusive, get_database, utcnow
from ..errors import ManifestError, ManifestProblem, NotFound
from ..manifest import (
    BUILTIN_AUTH_TYPES,
    Manifest,
    compile_manifest,
    read_document,
    validate_document,
    validated_digest,
)
from ..manifest.loader import MANIFEST_NAMES, check_icon
from ..plugins import get_plugins

__all__ = [
    "ActionSummary",
    "Catalog",
    "Entry",
    "Found",
    "Offered",
    "Refused",
    "Rules",
    "Snapshot",
    "SyncReport",
    "collect",
    "get_catalog",
    "known_auth_types",
    "known_system_values",
    "sync",
    "version_key",
]

CHECK_SECONDS = 1.0
# Compiled manifests a process keeps (least recently used go first); compiling one
# again costs a few milliseconds.
COMPILED_KEPT = 256
_SEMVER = re.compile(r"^(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?(?:\+.*)?$")


def version_key(version: str) -> tuple[Any, ...]:
    """Sort key in semantic-version order (SemVer 2.0.0 §11): a pre-release sorts before
    its release; its identifiers compare one by one, numeric ones numerically and
    below alphanumeric ones, and more identifiers sort after fewer."""
    match = _SEMVER.match(version)
    if not match:
        return (-1, -1, -1, (), version)
    major, minor, patch, pre = match.groups()
    if pre is None:
        pre_key: tuple[Any, ...] = ((1,),)
    else:
        pre_key = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split("."))
        pre_key = ((0,), *pre_key)
    return (int(major), int(minor), int(patch), pre_key, "")


log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Refused:
    """A manifest that failed validation, and where it came from."""

    origin: str
    location: str
    problems: tuple[ManifestProblem, ...]


@dataclass(frozen=True, slots=True)
class Offered:
    """A valid manifest :func:`collect` found: what the catalog stores of it."""

    name: str
    version: str
    title: str
    location: str
    digest: str  # validated_digest: the document and the rules it passed
    document: dict[str, Any]


@dataclass
class Found:
    manifests: list[Offered] = field(default_factory=list)
    origins: dict[tuple[str, str], str] = field(default_factory=dict)
    refused: list[Refused] = field(default_factory=list)
    # A plugin's miniapp_manifests failed: what it offered before is kept, not
    # disabled, until a sync where it answers again (an index briefly down, say).
    plugin_failed: bool = False


def known_auth_types(app: Flask) -> dict[str, Any]:
    """The auth types manifests may use on this host: the built-in ones (``None``)
    and those plugins add (their ``AuthType``)."""
    return {**dict.fromkeys(BUILTIN_AUTH_TYPES), **app.extensions.get("minihost.auth_types", {})}


def known_system_values(app: Flask) -> tuple[str, ...]:
    """The ``{{…}}`` names plugins add through ``system_values``."""
    return tuple(app.extensions.get("minihost.system_values", {}))


@dataclass(frozen=True, slots=True)
class Rules:
    """What a manifest is validated against on this host; see :func:`validated_digest`."""

    auth_types: Mapping[str, Any]
    system_values: tuple[str, ...]
    allow_private: bool

    @classmethod
    def of(cls, app: Flask) -> Rules:
        return cls(known_auth_types(app), known_system_values(app),
                   bool(app.config["EGRESS_ALLOW_PRIVATE"]))

    def digest(self, doc: dict[str, Any]) -> str:
        return validated_digest(doc, self.auth_types, self.system_values,
                                allow_private=self.allow_private)

    def check(self, doc: dict[str, Any], file: str, location: str) -> None:
        """Validate ``doc`` and build it once (a plugin's connect form can fail only
        there); raises ManifestError with every problem."""
        problems = validate_document(doc, file, self.auth_types, self.system_values,
                                     allow_private=self.allow_private)
        if problems:
            raise ManifestError(problems)
        self.compile(doc, file, location, validated=True)

    def compile(self, doc: dict[str, Any], file: str, location: str, *,
                validated: bool) -> Manifest:
        return compile_manifest(doc, file, location, self.auth_types, self.system_values,
                                allow_private=self.allow_private, validated=validated)


def _folder_entries(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(
        child
        for child in folder.iterdir()
        if child.is_dir() and any((child / name).is_file() for name in MANIFEST_NAMES)
    )


def _offer(doc: dict[str, Any], location: str, digest: str) -> Offered:
    return Offered(doc["name"], doc["version"], doc["title"], location, digest, doc)


def _from_path(path: Path, rules: Rules, trusted: Collection[tuple[str, str]]) -> Offered:
    """The manifest at ``path``, validated unless this very document passed these very
    rules before (``trusted`` holds the (location, digest) pairs the catalog stores).
    The icon is checked every time: a file can go without the manifest changing."""
    doc, file = read_document(path)
    folder = Path(file).parent
    location, digest = str(folder), rules.digest(doc)
    if (location, digest) not in trusted:
        problems = validate_document(doc, file, rules.auth_types, rules.system_values,
                                     allow_private=rules.allow_private)
        problems.extend(check_icon(doc, folder, file))
        if problems:
            raise ManifestError(problems)
        rules.compile(doc, file, location, validated=True)
    elif problems := check_icon(doc, folder, file):
        raise ManifestError(problems)
    return _offer(doc, location, digest)


def collect(app: Flask, trusted: Collection[tuple[str, str]] = ()) -> Found:
    """Read and validate every manifest the host is configured to offer.

    ``trusted`` are (location, digest) pairs of stored entries: a document whose
    :func:`validated_digest` is among them passed these same rules already and is
    not validated again, so an unchanged catalog costs one read and hash per file.
    """
    found = Found()
    rules = Rules.of(app)

    from_folders: set[str] = set()

    def accept(offered: Offered, origin: str) -> None:
        key = (offered.name, offered.version)
        if origin == "plugin" and offered.name in from_folders:
            # A newer version from a plugin (a remote index, say) would take over the
            # folder's mini-app, and with it the operator's OAuth client for that name.
            found.refused.append(Refused(origin, offered.location, (ManifestProblem(
                offered.location, "/name",
                f"{offered.name} is a mini-app from this host's folders; a plugin cannot "
                "offer versions of it. Give the plugin's mini-app another name"),)))
            return
        if origin == "folder":
            from_folders.add(offered.name)
        if key in found.origins:
            found.refused.append(
                Refused(origin, offered.location, (ManifestProblem(
                    offered.location, "/version",
                    f"{offered.name} {offered.version} is already provided by "
                    f"{found.origins[key]}; raise the version or remove one copy",
                ),)))
            return
        found.origins[key] = f"{origin} {offered.location}"
        found.manifests.append(offered)

    for directory in app.config["MINIAPPS_DIRS"]:
        for folder in _folder_entries(Path(directory)):
            try:
                accept(_from_path(folder, rules, trusted), "folder")
            except ManifestError as error:
                found.refused.append(Refused("folder", str(folder), error.problems))

    plugins = get_plugins(app)
    answers = plugins.call_each("miniapp_manifests", config=app.config)
    found.plugin_failed = len(answers) < len(plugins.hook.miniapp_manifests.get_hookimpls())
    for plugin, contributed in answers:
        try:
            items = list(contributed or ())
        except Exception as error:  # a generator that fails half-way
            plugins.report(plugin, "miniapp_manifests", error)
            found.plugin_failed = True
            continue
        for item in items:
            _collect_contribution(item, accept, found, rules, trusted)
    return found


def _collect_contribution(item: Any, accept: Callable[[Offered, str], None], found: Found,
                          rules: Rules, trusted: Collection[tuple[str, str]]) -> None:
    try:
        if isinstance(item, dict):
            label = f"plugin manifest {item.get('name', '?')}"
            icon = item.get("icon")
            if isinstance(icon, str) and not icon.startswith("https://"):
                raise ManifestError([ManifestProblem(
                    label, "/icon",
                    "a manifest given as a document needs an https:// icon URL; "
                    "contribute a folder path to ship an icon file",
                )])
            digest = rules.digest(item)
            if (label, digest) not in trusted:
                rules.check(item, label, label)
            accept(_offer(item, label, digest), "plugin")
        elif isinstance(item, (str, os.PathLike)):
            accept(_from_path(Path(item), rules, trusted), "plugin")
        else:
            found.refused.append(Refused("plugin", repr(item)[:80], (ManifestProblem(
                "plugin", "", "miniapp_manifests returned something that is neither a "
                "manifest document nor a path"),)))
    except ManifestError as error:
        location = error.problems[0].file if error.problems else "plugin"
        found.refused.append(Refused("plugin", location, error.problems))


@dataclass(frozen=True, slots=True)
class SyncReport:
    added: tuple[str, ...]
    updated: tuple[str, ...]
    removed: tuple[str, ...]
    unchanged: int
    refused: tuple[Refused, ...]

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.removed)


def _problem_rows(refused: Iterable[Refused]) -> list[tuple[str, str, list[dict[str, str]]]]:
    return [
        (r.origin, r.location, [{"pointer": p.pointer, "message": p.message, "file": p.file}
                                for p in r.problems])
        for r in refused
    ]


def sync(app: Flask) -> SyncReport:
    """Bring the catalog tables in line with what :func:`collect` finds.

    Mini-apps no longer offered are disabled, not deleted: installations made
    from them keep their manifest. Stored entries' digests tell which documents
    need no validation (:func:`collect`).
    """
    database = get_database(app)
    with database.sessions() as db:
        trusted = {(location, digest) for location, digest in
                   db.execute(select(MiniApp.location, MiniApp.digest))}
    found = collect(app, trusted)
    with exclusive(app, "catalog"):  # two syncs at once would insert the same rows
        return _store(app, database, found)


def _store(app: Flask, database: Database, found: Found) -> SyncReport:
    added: list[str] = []
    updated: list[str] = []
    removed: list[str] = []
    unchanged = 0
    with database.transaction() as db:
        # The documents themselves are read only where a digest differs.
        rows = {(row.name, row.version): row
                for row in db.scalars(select(MiniApp).options(defer(MiniApp.manifest)))}
        now = utcnow()
        for offered in found.manifests:
            key = (offered.name, offered.version)
            label = f"{offered.name} {offered.version}"
            origin = found.origins[key].split(" ", 1)[0]
            row = rows.pop(key, None)
            if row is None:
                db.add(MiniApp(
                    name=offered.name, version=offered.version, title=offered.title,
                    manifest=offered.document, digest=offered.digest, origin=origin,
                    location=offered.location, enabled=True, synced_at=now,
                ))
                added.append(label)
            elif (row.digest, row.origin, row.location, row.enabled) == (
                offered.digest, origin, offered.location, True
            ):
                unchanged += 1
            elif (row.origin, row.location, row.enabled) == (origin, offered.location, True) \
                    and row.manifest == offered.document:
                # The same document, validated again under other rules (a host upgrade,
                # a plugin change): nothing a user would call an update.
                row.digest, row.synced_at = offered.digest, now
                unchanged += 1
            else:
                row.title, row.manifest = offered.title, offered.document
                row.digest, row.origin, row.location = offered.digest, origin, offered.location
                row.enabled, row.synced_at = True, now
                updated.append(label)
        for row in rows.values():
            if row.enabled and not (row.origin == "plugin" and found.plugin_failed):
                row.enabled, row.synced_at = False, now
                removed.append(f"{row.name} {row.version}")
        wanted = sorted(_problem_rows(found.refused), key=repr)
        existing = sorted(
            ((e.origin, e.location, e.problems) for e in db.scalars(select(CatalogError))),
            key=repr,
        )
        if wanted != existing:
            db.execute(delete(CatalogError))
            for origin, location, problems in wanted:
                db.add(CatalogError(origin=origin, location=location, problems=problems))
    get_catalog(app).invalidate()
    return SyncReport(tuple(added), tuple(updated), tuple(removed), unchanged,
                      tuple(found.refused))


# -- reading the catalog ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ActionSummary:
    name: str
    title: str
    description: str


@dataclass(frozen=True, slots=True)
class Entry:
    """A mini-app as listings show it (the marketplace grid, the API list, search),
    read from the stored document without compiling it; :meth:`Snapshot.get`
    gives the compiled :class:`~host.manifest.Manifest` when one is needed."""

    name: str
    version: str
    title: str
    description: str
    icon: str | None
    categories: tuple[str, ...]
    auth_type: str
    actions: tuple[ActionSummary, ...]
    digest: str
    location: str

    @classmethod
    def of(cls, doc: Mapping[str, Any], digest: str, location: str) -> Entry:
        auth = doc.get("auth")
        return cls(
            name=doc["name"], version=doc["version"], title=doc["title"],
            description=doc["description"], icon=doc.get("icon"),
            categories=tuple(doc.get("categories", ())),
            auth_type=auth.get("type", "none") if isinstance(auth, dict) and auth else "none",
            actions=tuple(ActionSummary(a["name"], a["title"], a.get("description", ""))
                          for a in doc.get("actions", ())),
            digest=digest, location=location,
        )

    def search_text(self) -> str:
        parts = [self.name, self.title, self.description, *self.categories]
        for action in self.actions:
            parts += [action.name, action.title, action.description]
        return " ".join(parts).lower()


# What a listing needs of every stored document, extracted by the database: a
# compact JSON array per row instead of the whole document (1,000 manifests are
# ~8 MB of JSON, their listing ~0.5 MB), so building a snapshot parses no manifest
# in Python and a new process answers its first page in milliseconds. Each yields
# [[description, icon, categories, auth type], [[name, title, description], …]];
# other databases send the documents (_listing). On PostgreSQL, OFFSET 0 keeps the
# planner from inlining the jsonb cast into each reference to ``doc``, which
# parsed every document five times.
_LISTING_SQL = {
    # json_extract with several paths parses the document once for all of them.
    "sqlite": """json_array(
        json(json_extract(miniapp.manifest, '$.description', '$.icon', '$.categories',
                          '$.auth.type')),
        (SELECT json_group_array(json(item)) FROM (
            SELECT json_extract(value, '$.name', '$.title', '$.description') AS item
            FROM json_each(miniapp.manifest, '$.actions') ORDER BY key)))""",
    "postgresql": """(SELECT json_build_array(
        json_build_array(doc->'description', doc->'icon', doc->'categories',
                         doc#>'{auth,type}'),
        (SELECT json_agg(json_build_array(item->'name', item->'title', item->'description')
                         ORDER BY n)
         FROM jsonb_array_elements(doc->'actions') WITH ORDINALITY AS a(item, n)))
        FROM (SELECT miniapp.manifest::jsonb AS doc OFFSET 0) AS stored)""",
}


def _listing(db: Session) -> Iterator[Entry]:
    """An :class:`Entry` per enabled catalog row."""
    columns = (MiniApp.name, MiniApp.version, MiniApp.title, MiniApp.digest, MiniApp.location)
    sql = _LISTING_SQL.get(db.get_bind().dialect.name)
    if sql is None:
        for doc, digest, location in db.execute(select(
                MiniApp.manifest, MiniApp.digest, MiniApp.location).where(MiniApp.enabled)):
            yield Entry.of(doc, digest, location)
        return
    listing = literal_column(sql, type_=JSON)
    for name, version, title, digest, location, (fields, actions) in db.execute(
            select(*columns, listing).where(MiniApp.enabled)):
        description, icon, categories, auth_type = fields
        yield Entry(
            name=name, version=version, title=title, description=description, icon=icon,
            categories=tuple(categories or ()), auth_type=auth_type or "none",
            actions=tuple(ActionSummary(n, t, d or "") for n, t, d in actions or ()),
            digest=digest, location=location,
        )


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Every enabled mini-app as an :class:`Entry`; ``latest`` holds the newest version
    of each, by title. Manifests are compiled only when :meth:`get` asks for one."""

    by_key: Mapping[tuple[str, str], Entry]
    latest: tuple[Entry, ...]
    categories: tuple[str, ...]
    search_text: Mapping[str, str]
    newest: Mapping[str, Entry] = field(default_factory=dict)
    compile: Callable[[Entry], Manifest | None] = field(default=lambda entry: None, repr=False)

    def entry(self, name: str, version: str | None = None) -> Entry | None:
        if version is not None:
            return self.by_key.get((name, version))
        return self.newest.get(name)

    def get(self, name: str, version: str | None = None) -> Manifest | None:
        """The compiled manifest (the newest version unless ``version`` is given)."""
        entry = self.entry(name, version)
        return self.compile(entry) if entry is not None else None

    def versions(self, name: str) -> list[str]:
        found = [v for (n, v) in self.by_key if n == name]
        return sorted(found, key=version_key, reverse=True)

    def search(self, query: str = "", category: str = "") -> list[Entry]:
        """Every term of ``query`` must appear in the mini-app's name, title,
        description, categories or action titles (case-insensitive)."""
        terms = query.lower().split()
        if not terms and not category:
            return list(self.latest)
        return [
            entry
            for entry in self.latest
            if (not category or category in entry.categories)
            and all(term in self.search_text[entry.name] for term in terms)
        ]


class Catalog:
    """Per-app holder of the current :class:`Snapshot` and of the manifests compiled
    from it, the most recently used ``COMPILED_KEPT`` of them.

    Nothing is compiled at start-up or to list the catalog: a manifest is compiled
    the first time a page, an installation or a run needs it, from the stored
    document, without validating it again when its stored digest shows it passed
    this host's current rules (see docs/catalog.md)."""

    def __init__(self, app: Flask) -> None:
        self._app = app
        self._lock = threading.Lock()
        self._fingerprint: tuple[Any, ...] | None = None
        self._checked_until = 0.0
        self._snapshot = Snapshot({}, (), (), {}, {}, self._manifest)
        self._compiled: OrderedDict[tuple[str, str], Manifest | None] = OrderedDict()

    def invalidate(self) -> None:
        self._fingerprint = None
        self._checked_until = 0.0

    def snapshot(self, db: Session) -> Snapshot:
        """The current snapshot. Another process's sync is noticed within
        ``CHECK_SECONDS``; this process's own syncs at once."""
        now = time.monotonic()
        if self._fingerprint is not None and now < self._checked_until:
            return self._snapshot
        fingerprint = tuple(db.execute(
            select(func.count(MiniApp.id), func.max(MiniApp.synced_at)).where(MiniApp.enabled)
        ).one())
        self._checked_until = now + CHECK_SECONDS
        if fingerprint == self._fingerprint:
            return self._snapshot
        with self._lock:
            if fingerprint != self._fingerprint:
                self._snapshot = self._build(db)
                self._fingerprint = fingerprint
        return self._snapshot

    def _build(self, db: Session) -> Snapshot:
        by_key: dict[tuple[str, str], Entry] = {}
        for entry in _listing(db):
            by_key[(entry.name, entry.version)] = entry
        newest: dict[str, Entry] = {}
        for entry in by_key.values():
            best = newest.get(entry.name)
            if best is None or version_key(entry.version) > version_key(best.version):
                newest[entry.name] = entry
        latest = tuple(sorted(newest.values(), key=lambda e: (e.title.lower(), e.name)))
        categories = tuple(sorted({c for e in latest for c in e.categories}))
        return Snapshot(by_key, latest, categories, {e.name: e.search_text() for e in latest},
                        newest, self._manifest)

    def _manifest(self, entry: Entry) -> Manifest | None:
        """``entry`` compiled, from this process's cache or from its stored document;
        None when this host can no longer use it (logged)."""
        key = (entry.digest, entry.location)
        with self._lock:
            if key in self._compiled:
                self._compiled.move_to_end(key)
                return self._compiled[key]
        manifest = self._compile_stored(entry)
        with self._lock:
            self._compiled[key] = manifest
            while len(self._compiled) > COMPILED_KEPT:
                self._compiled.popitem(last=False)
        return manifest

    def _compile_stored(self, entry: Entry) -> Manifest | None:
        """Compile a stored manifest. It passed validation when it was synced; when the
        rules have changed since (its digest differs), it is validated again, and a
        failure is a host upgrade that tightened the rules or a plugin it needs gone:
        the rest of the catalog still serves, and the next sync lists the problem."""
        with get_database(self._app).sessions() as db:
            doc = db.scalar(select(MiniApp.manifest).where(
                MiniApp.name == entry.name, MiniApp.version == entry.version))
        if doc is None:
            return None
        rules = Rules.of(self._app)
        try:
            return rules.compile(doc, entry.location, entry.location,
                                 validated=rules.digest(doc) == entry.digest)
        except ManifestError as error:
            log.error("mini-app %s %s is unusable: %s", entry.name, entry.version, error)
            return None

    def require(self, db: Session, name: str, version: str | None = None) -> Manifest:
        manifest = self.snapshot(db).get(name, version)
        if manifest is None:
            raise NotFound(f"no mini-app named {name!r} in the catalog")
        return manifest

    def require_entry(self, db: Session, name: str, version: str | None = None) -> Entry:
        """Like :meth:`require`, for what a listing needs, without compiling."""
        entry = self.snapshot(db).entry(name, version)
        if entry is None:
            raise NotFound(f"no mini-app named {name!r} in the catalog")
        return entry


def get_catalog(app: Flask) -> Catalog:
    return app.extensions["minihost.catalog"]


def entries(db: Session) -> tuple[list[MiniApp], list[CatalogError]]:
    """Every catalog entry (offered or not any more), by name and version, and the
    manifests the last sync refused, by location."""
    rows = list(db.scalars(select(MiniApp).options(defer(MiniApp.manifest))
                           .order_by(MiniApp.name, MiniApp.version)))
    errors = list(db.scalars(select(CatalogError).order_by(CatalogError.location)))
    return rows, errors


def icon_path(entry: Entry | Manifest) -> Path | None:
    """The icon file of a folder mini-app, or ``None`` (no icon, or an https one)."""
    if not entry.icon or entry.icon.startswith("https://"):
        return None
    path = Path(entry.location) / entry.icon
    return path if path.is_file() else None


def init_app(app: Flask) -> None:
    app.extensions["minihost.catalog"] = Catalog(app)

