"""The catalog: which mini-apps this host offers, and the search over them.

``sync`` reads every manifest from ``MINIAPPS_DIRS`` and the
``miniapp_manifests`` plugin hook, validates each, and records valid ones as
:class:`~host.db.MiniApp` rows (name + version + origin); invalid ones never
enter the catalog and are kept as :class:`~host.db.CatalogError` rows with
their problems. A sync that finds nothing new writes nothing.

Each stored entry keeps a digest of its document and of the rules it passed
(:func:`~host.manifest.validated_digest`), so a sync validates only what changed
and an unchanged catalog costs a read and a hash per manifest.

Pages and the API read a :class:`Snapshot` — compiled manifests held in
memory and rebuilt only when the ``miniapp`` table changed (checked with one
cheap aggregate query), so a page never parses a manifest.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import delete, func, select
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
    "Catalog",
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


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Every enabled mini-app, compiled; ``latest`` holds the newest version of each."""

    by_key: Mapping[tuple[str, str], Manifest]
    latest: tuple[Manifest, ...]
    categories: tuple[str, ...]
    search_text: Mapping[str, str]

    def get(self, name: str, version: str | None = None) -> Manifest | None:
        if version is not None:
            return self.by_key.get((name, version))
        for manifest in self.latest:
            if manifest.name == name:
                return manifest
        return None

    def versions(self, name: str) -> list[str]:
        found = [v for (n, v) in self.by_key if n == name]
        return sorted(found, key=version_key, reverse=True)

    def search(self, query: str = "", category: str = "") -> list[Manifest]:
        """Every term of ``query`` must appear in the mini-app's name, title,
        description, categories or action titles (case-insensitive)."""
        terms = query.lower().split()
        return [
            manifest
            for manifest in self.latest
            if (not category or category in manifest.categories)
            and all(term in self.search_text[manifest.name] for term in terms)
        ]


def _search_text(manifest: Manifest) -> str:
    parts = [manifest.name, manifest.title, manifest.description, *manifest.categories]
    for action in manifest.actions:
        parts += [action.name, action.title, action.description]
    return " ".join(parts).lower()


class Catalog:
    """Per-app holder of the current :class:`Snapshot`."""

    def __init__(self, app: Flask) -> None:
        self._app = app
        self._lock = threading.Lock()
        self._fingerprint: tuple[Any, ...] | None = None
        self._checked_until = 0.0
        self._snapshot = Snapshot({}, (), (), {})
        self._compiled: dict[str, Manifest] = {}

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
        compiled: dict[str, Manifest] = {}
        by_key: dict[tuple[str, str], Manifest] = {}
        for row in db.scalars(select(MiniApp).where(MiniApp.enabled)):
            manifest = self._compiled.get(row.digest)
            if manifest is None or manifest.location != row.location:
                try:
                    manifest = _compile_stored(self._app, row)
                except ManifestError as error:
                    # A plugin it needs (an auth type, a system value) is gone, say: the
                    # rest of the catalog still serves; the next sync lists the problem.
                    log.error("mini-app %s %s is unusable: %s", row.name, row.version, error)
                    continue
            compiled[row.digest] = manifest
            by_key[(row.name, row.version)] = manifest
        self._compiled = compiled
        newest: dict[str, Manifest] = {}
        for manifest in by_key.values():
            best = newest.get(manifest.name)
            if best is None or version_key(manifest.version) > version_key(best.version):
                newest[manifest.name] = manifest
        latest = tuple(sorted(newest.values(), key=lambda m: (m.title.lower(), m.name)))
        categories = tuple(sorted({c for m in latest for c in m.categories}))
        return Snapshot(by_key, latest, categories, {m.name: _search_text(m) for m in latest})

    def require(self, db: Session, name: str, version: str | None = None) -> Manifest:
        manifest = self.snapshot(db).get(name, version)
        if manifest is None:
            raise NotFound(f"no mini-app named {name!r} in the catalog")
        return manifest


def _compile_stored(app: Flask, row: MiniApp) -> Manifest:
    """Compile a stored manifest; it was valid when synced, so a failure here is a
    host upgrade that tightened the rules — report it with the row's location."""
    return compile_manifest(row.manifest, row.location, row.location, known_auth_types(app),
                            known_system_values(app),
                            allow_private=bool(app.config["EGRESS_ALLOW_PRIVATE"]))


def get_catalog(app: Flask) -> Catalog:
    return app.extensions["minihost.catalog"]


def entries(db: Session) -> tuple[list[MiniApp], list[CatalogError]]:
    """Every catalog entry (offered or not any more), by name and version, and the
    manifests the last sync refused, by location."""
    rows = list(db.scalars(select(MiniApp).options(defer(MiniApp.manifest))
                           .order_by(MiniApp.name, MiniApp.version)))
    errors = list(db.scalars(select(CatalogError).order_by(CatalogError.location)))
    return rows, errors


def icon_path(manifest: Manifest) -> Path | None:
    """The icon file of a folder mini-app, or ``None`` (no icon, or an https one)."""
    if not manifest.icon or manifest.icon.startswith("https://"):
        return None
    path = Path(manifest.location) / manifest.icon
    return path if path.is_file() else None


def init_app(app: Flask) -> None:
    app.extensions["minihost.catalog"] = Catalog(app)

