"""The demo provider's own storage: one SQLite file in the instance folder.

It is deliberately separate from Minihost's database: the demo plays an outside
service, and its data (users, OAuth clients, codes, tokens, projects, tasks)
must look to Minihost exactly like another company's would.
"""

from __future__ import annotations

import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from werkzeug.security import check_password_hash, generate_password_hash

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (id TEXT PRIMARY KEY, username TEXT UNIQUE, password TEXT,
                                  name TEXT, email TEXT);
CREATE TABLE IF NOT EXISTS clients (client_id TEXT PRIMARY KEY, client_secret TEXT,
                                    redirect_uri TEXT, scope TEXT);
CREATE TABLE IF NOT EXISTS codes (code TEXT PRIMARY KEY, client_id TEXT, redirect_uri TEXT,
                                  scope TEXT, user_id TEXT, code_challenge TEXT,
                                  code_challenge_method TEXT, created REAL);
CREATE TABLE IF NOT EXISTS tokens (access_token TEXT PRIMARY KEY, refresh_token TEXT UNIQUE,
                                   client_id TEXT, scope TEXT, user_id TEXT, issued_at REAL,
                                   expires_in INTEGER, revoked INTEGER DEFAULT 0,
                                   refresh_used INTEGER DEFAULT 0, family TEXT);
CREATE TABLE IF NOT EXISTS projects (id TEXT PRIMARY KEY, user_id TEXT, name TEXT, position INT);
CREATE TABLE IF NOT EXISTS tasks (id TEXT PRIMARY KEY, project_id TEXT, title TEXT, notes TEXT,
                                  done INTEGER DEFAULT 0, due TEXT, created REAL);
CREATE TABLE IF NOT EXISTS webhooks (id TEXT PRIMARY KEY, user_id TEXT, url TEXT, secret TEXT,
                                     created REAL);
"""

DEMO_USER = ("demo", "demo", "Demo User", "demo@example.com")
SEED = {
    "Inbox": ["Try Minihost's demo", "Connect the demo provider"],
    "Home": ["Buy milk", "Water the plants"],
    "Work": ["Write the weekly report"],
}


class Store:
    """Thread-safe access to the demo's SQLite file."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._connection = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._connection.row_factory = sqlite3.Row
        self._connection.execute("PRAGMA journal_mode=WAL")
        self._connection.execute("PRAGMA busy_timeout=5000")
        self._lock = threading.RLock()
        with self._lock:
            self._connection.executescript(SCHEMA)
        self.ensure_user(*DEMO_USER)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._connection.execute("BEGIN IMMEDIATE")
            try:
                yield self._connection
            except BaseException:
                self._connection.execute("ROLLBACK")
                raise
            self._connection.execute("COMMIT")

    def one(self, sql: str, *args: Any) -> sqlite3.Row | None:
        with self._lock:
            return self._connection.execute(sql, args).fetchone()

    def all(self, sql: str, *args: Any) -> list[sqlite3.Row]:
        with self._lock:
            return self._connection.execute(sql, args).fetchall()

    # -- people and clients --------------------------------------------------------------

    def ensure_user(self, username: str, password: str, name: str, email: str) -> str:
        row = self.one("SELECT id FROM users WHERE username = ?", username)
        if row is not None:
            return row["id"]
        user_id = f"usr_{secrets.token_hex(4)}"
        with self.transaction() as db:
            db.execute("INSERT INTO users VALUES (?, ?, ?, ?, ?)",
                       (user_id, username, generate_password_hash(password), name, email))
            for position, (project, tasks) in enumerate(SEED.items()):
                project_id = f"prj_{secrets.token_hex(4)}"
                db.execute("INSERT INTO projects VALUES (?, ?, ?, ?)",
                           (project_id, user_id, project, position))
                for title in tasks:
                    db.execute("INSERT INTO tasks VALUES (?, ?, ?, '', 0, NULL, ?)",
                               (f"tsk_{secrets.token_hex(4)}", project_id, title, time.time()))
        return user_id

    def check_login(self, username: str, password: str) -> sqlite3.Row | None:
        row = self.one("SELECT * FROM users WHERE username = ?", username)
        if row is None or not check_password_hash(row["password"], password):
            return None
        return row

    def ensure_client(self, client_id: str, redirect_uri: str, scope: str) -> str:
        """The client's secret (created once, kept across restarts); ``redirect_uri``
        joins the client's registered redirect URIs (space-separated)."""
        row = self.one("SELECT * FROM clients WHERE client_id = ?", client_id)
        if row is not None:
            uris = row["redirect_uri"].split()
            if redirect_uri not in uris:
                with self.transaction() as db:
                    db.execute("UPDATE clients SET redirect_uri = ? WHERE client_id = ?",
                               (" ".join([*uris, redirect_uri]), client_id))
            return row["client_secret"]
        secret = secrets.token_urlsafe(32)
        with self.transaction() as db:
            db.execute("INSERT INTO clients VALUES (?, ?, ?, ?)",
                       (client_id, secret, redirect_uri, scope))
        return secret
