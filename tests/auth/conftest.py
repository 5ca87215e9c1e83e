"""OAuth fixtures: a token server that rotates refresh tokens, and installations
whose tokens are about to expire."""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from werkzeug.wrappers import Request, Response

from host import create_app
from host.db import AppClient, Installation, get_database, new_id, utcnow
from host.services import accounts
from host.services import instance as instance_service
from host.vault import store_client_secret, store_credentials

from ..conftest import Provider, make_config


@dataclass
class TokenServer:
    """Issues rotating refresh tokens, detects reuse (revoking the family), and
    serves an API that answers 401 to anything but a live access token."""

    provider: Provider
    rotate: bool = True
    latency: float = 0.0
    refresh_calls: int = 0
    api_calls: int = 0
    live_access: set[str] = field(default_factory=set)
    live_refresh: set[str] = field(default_factory=set)
    used_refresh: set[str] = field(default_factory=set)
    omit_refresh_token: bool = False
    expires_in: Any = 3600
    lock: threading.Lock = field(default_factory=threading.Lock)
    token_requests: list[dict[str, str]] = field(default_factory=list)

    def issue(self, refresh: str | None = None) -> dict[str, Any]:
        access = "at-" + secrets.token_hex(6)
        self.live_access.add(access)
        answer: dict[str, Any] = {"access_token": access, "token_type": "Bearer",
                                  "expires_in": self.expires_in}
        if refresh is None or self.rotate:
            refresh = "rt-" + secrets.token_hex(6)
        self.live_refresh.add(refresh)
        if not self.omit_refresh_token:
            answer["refresh_token"] = refresh
        return answer

    def token(self, request: Request) -> Response:
        form = request.form.to_dict()
        with self.lock:
            self.token_requests.append(form)
        if self.latency:
            time.sleep(self.latency)
        with self.lock:
            if form.get("grant_type") != "refresh_token":
                return _json({"error": "unsupported_grant_type"}, 400)
            self.refresh_calls += 1
            presented = form.get("refresh_token")
            if presented in self.used_refresh or presented not in self.live_refresh:
                if presented in self.used_refresh:  # reuse: end the whole family
                    self.live_refresh.clear()
                    self.live_access.clear()
                return _json({"error": "invalid_grant",
                              "error_description": "refresh token is invalid or was used"}, 400)
            if self.rotate:
                self.live_refresh.discard(presented)
                self.used_refresh.add(presented)
            return _json(self.issue(presented))

    def api(self, request: Request) -> Response:
        with self.lock:
            self.api_calls += 1
            token = request.headers.get("Authorization", "")[7:]
            if token not in self.live_access:
                return _json({"message": "token expired"}, 401)
        # Upper-cased: the token itself would be redacted from the run's output.
        return _json({"value": 42, "token": token.upper()})

    def chat(self, request: Request) -> Response:
        token = request.headers.get("Authorization", "")[7:]
        with self.lock:
            live = token in self.live_access
        return _json({"ok": True} if live else {"ok": False, "error": "token_expired"})


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")


def tokened_manifest(base: str, port: int) -> dict[str, Any]:
    token_request = {
        "url": base + "/token", "method": "POST", "bodyType": "x-www-form-urlencoded",
        "mapping": {"accessToken": "$.access_token", "refreshToken": "$.refresh_token",
                    "expiresIn": "$.expires_in"},
    }
    return {
        "name": "tokened", "version": "1.0.0", "title": "Tokened", "description": "OAuth test.",
        "allowedHosts": [f"127.0.0.1:{port}"],
        "auth": {
            "type": "oauth2",
            "authorize": {"url": base + "/authorize", "pkce": True},
            "get_token": {**token_request, "body": {
                "grant_type": "authorization_code", "code": "{{code}}",
                "redirect_uri": "{{redirectUri}}", "code_verifier": "{{codeVerifier}}",
                "client_id": "[[clientId]]", "client_secret": "[[clientSecret]]"}},
            "refresh_token": {**token_request, "body": {
                "grant_type": "refresh_token", "refresh_token": "[[refreshToken]]",
                "client_id": "[[clientId]]", "client_secret": "[[clientSecret]]"}},
            "refreshOn": {"body": {"$.error": "token_expired"}},
        },
        "actions": [
            {"name": "fetch", "title": "Fetch", "requests": [{
                "url": base + "/api", "method": "GET",
                "headers": {"Authorization": "Bearer [[accessToken]]"},
                "mapping": {"value": "$.value", "token": "$.token"}}]},
            {"name": "chat", "title": "Chat", "requests": [{
                "url": base + "/chat", "method": "POST", "body": {},
                "headers": {"Authorization": "Bearer [[accessToken]]"},
                "expect": {"body": {"$.ok": True}, "error": "$.error"}}]},
        ],
    }


@dataclass
class Tokened:
    app: Any
    server: TokenServer
    principal: Any
    installation_id: str
    database_url: str
    instance: Path

    def seed(self, expires_in: float = -10, refresh: str | None = None) -> dict[str, Any]:
        """Give the installation tokens that expire ``expires_in`` seconds from now."""
        answer = self.server.issue()
        if refresh is not None:
            self.server.live_refresh.add(refresh)
        credentials = {"accessToken": answer["access_token"],
                       "refreshToken": refresh or answer.get("refresh_token"),
                       "expiresIn": 3600, "expiresAt": int(time.time() + expires_in)}
        with get_database(self.app).transaction() as db:
            row = db.get(Installation, self.installation_id)
            store_credentials(self.app, row, credentials)
            row.row_version += 1
            row.status, row.error = "active", None
        return credentials

    def row(self) -> Installation:
        with get_database(self.app).sessions() as db:
            row = db.get(Installation, self.installation_id)
            db.expunge(row)
            return row


@pytest.fixture
def tokened(tmp_path: Path, provider: Provider, database_url: str) -> Iterator[Tokened]:
    server = TokenServer(provider)
    provider.route("/token", server.token)
    provider.route("/api", server.api)
    provider.route("/chat", server.chat)
    apps = tmp_path / "apps"
    (apps / "tokened").mkdir(parents=True)
    (apps / "tokened" / "manifest.json").write_text(
        json.dumps(tokened_manifest(provider.base, provider.port)))
    config = make_config(tmp_path, MINIAPPS_DIRS=[str(apps)], EGRESS_ALLOW_PRIVATE=True,
                         DATABASE_URL=database_url, ACTION_TIMEOUT=10)
    app = create_app(config, instance_path=tmp_path)
    instance_service.init(app)
    (tmp_path / "vault_keys").write_text("\n".join(app.config["VAULT_KEYS"]) + "\n")
    with get_database(app).transaction() as db:
        user = accounts.create_user(db, "owner@example.com", "password1")
        workspace = accounts.personal_workspace(db, user)
        client = AppClient(miniapp="tokened", client_id="client-1")
        store_client_secret(app, client, "client-secret-1")
        db.add(client)
        installation = Installation(
            id=new_id("ins"), workspace_id=workspace, miniapp="tokened",
            miniapp_version="1.0.0", status="active", webhook_token=new_id("wh"),
            created_by=user.id, created_at=utcnow(), updated_at=utcnow(), row_version=0)
        db.add(installation)
        principal = accounts.Principal(user, workspace, "session:test")
    tokened = Tokened(app, server, principal, installation.id, database_url, tmp_path)
    yield tokened
    get_database(app).engine.dispose()
