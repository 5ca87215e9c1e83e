"""The demo's OAuth 2.0 authorization server, built from authlib's server components.

Authorization code with PKCE (S256, required), client authentication by
``client_secret_post`` or ``client_secret_basic``, and refresh tokens that
rotate: every refresh returns a new refresh token and retires the old one; an
old one presented again revokes the whole token family (RFC 9700 §4.14.2).
"""

from __future__ import annotations

import time
from typing import Any

try:
    from authlib.integrations.flask_oauth2 import AuthorizationServer
    from authlib.oauth2.rfc6749 import ClientMixin, TokenMixin, grants
    from authlib.oauth2.rfc7636 import CodeChallenge
except ModuleNotFoundError as missing:  # the extra is optional: say which one to install
    package = (missing.name or "authlib").partition(".")[0]
    raise ModuleNotFoundError(
        f"demo_provider needs the demo extra ({package} is not installed): pip install "
        "'minihost[demo]', or pip install -e '.[demo]' in a checkout", name=package) from None

from .store import Store

SCOPES = ("tasks:read", "tasks:write", "profile")


class Client(ClientMixin):
    def __init__(self, row: Any) -> None:
        self.client_id = row["client_id"]
        self.client_secret = row["client_secret"]
        self.redirect_uris = row["redirect_uri"].split()
        self.scope = row["scope"]

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str:
        return self.redirect_uris[0]

    def get_allowed_scope(self, scope: str) -> str:
        allowed = set(self.scope.split())
        return " ".join(s for s in (scope or "").split() if s in allowed)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris  # exact match (RFC 9700 §2.1)

    def check_client_secret(self, client_secret: str) -> bool:
        import secrets

        return secrets.compare_digest(client_secret or "", self.client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method in ("client_secret_post", "client_secret_basic")

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in ("authorization_code", "refresh_token")


class AuthCode:
    def __init__(self, row: Any) -> None:
        self.code = row["code"]
        self.client_id = row["client_id"]
        self.redirect_uri = row["redirect_uri"]
        self.scope = row["scope"]
        self.user_id = row["user_id"]
        self.code_challenge = row["code_challenge"]
        self.code_challenge_method = row["code_challenge_method"]
        self.created = row["created"]

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def is_expired(self) -> bool:
        return self.created + 120 < time.time()


class Token(TokenMixin):
    def __init__(self, row: Any) -> None:
        self.row = dict(row)
        self.access_token = row["access_token"]
        self.refresh_token = row["refresh_token"]
        self.client_id = row["client_id"]
        self.scope = row["scope"]
        self.user_id = row["user_id"]

    def check_client(self, client: Client) -> bool:
        return client.client_id == self.client_id

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return int(self.row["expires_in"])

    def is_expired(self) -> bool:
        return self.row["issued_at"] + self.row["expires_in"] < time.time()

    def is_revoked(self) -> bool:
        return bool(self.row["revoked"])

    def get_user(self) -> str:
        return self.user_id

    def get_client(self) -> Any:
        return None


class User:
    def __init__(self, user_id: str) -> None:
        self.id = user_id

    def get_user_id(self) -> str:
        return self.id


def build_server(store: Store, lifetime: int) -> AuthorizationServer:
    def query_client(client_id: str) -> Client | None:
        row = store.one("SELECT * FROM clients WHERE client_id = ?", client_id)
        return Client(row) if row is not None else None

    def save_token(token: dict[str, Any], request: Any) -> None:
        previous = getattr(request, "refresh_token", None)
        family = previous.row["family"] if isinstance(previous, Token) else token["access_token"]
        with store.transaction() as db:
            db.execute(
                "INSERT INTO tokens (access_token, refresh_token, client_id, scope, user_id, "
                "issued_at, expires_in, family) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (token["access_token"], token.get("refresh_token"), request.client.client_id,
                 token.get("scope", ""), request.user.get_user_id(), time.time(),
                 token["expires_in"], family))

    class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):
        TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_post", "client_secret_basic"]

        def save_authorization_code(self, code: str, request: Any) -> None:
            with store.transaction() as db:
                db.execute("INSERT INTO codes VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (
                    code, request.client.client_id, request.payload.redirect_uri,
                    request.payload.scope, request.user.get_user_id(),
                    request.payload.data.get("code_challenge"),
                    request.payload.data.get("code_challenge_method"), time.time()))

        def query_authorization_code(self, code: str, client: Client) -> AuthCode | None:
            row = store.one("SELECT * FROM codes WHERE code = ? AND client_id = ?", code,
                            client.client_id)
            if row is None:
                return None
            found = AuthCode(row)
            return None if found.is_expired() else found

        def delete_authorization_code(self, authorization_code: AuthCode) -> None:
            with store.transaction() as db:
                db.execute("DELETE FROM codes WHERE code = ?", (authorization_code.code,))

        def authenticate_user(self, authorization_code: AuthCode) -> User:
            return User(authorization_code.user_id)

    class RefreshTokenGrant(grants.RefreshTokenGrant):
        TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_post", "client_secret_basic"]
        INCLUDE_NEW_REFRESH_TOKEN = True

        def authenticate_refresh_token(self, refresh_token: str) -> Token | None:
            row = store.one("SELECT * FROM tokens WHERE refresh_token = ?", refresh_token)
            if row is None:
                return None
            if row["refresh_used"]:
                # A retired refresh token came back: assume it leaked, end the family.
                with store.transaction() as db:
                    db.execute("UPDATE tokens SET revoked = 1, refresh_used = 1 "
                               "WHERE family = ?", (row["family"],))
                return None
            if row["revoked"]:
                return None
            return Token(row)

        def authenticate_user(self, refresh_token: Token) -> User:
            return User(refresh_token.user_id)

        def revoke_old_credential(self, refresh_token: Token) -> None:
            with store.transaction() as db:
                db.execute("UPDATE tokens SET refresh_used = 1, revoked = 1 "
                           "WHERE access_token = ?", (refresh_token.access_token,))

    server = AuthorizationServer(query_client=query_client, save_token=save_token)
    server.load_config({
        "OAUTH2_REFRESH_TOKEN_GENERATOR": True,
        "OAUTH2_TOKEN_EXPIRES_IN": {"authorization_code": lifetime, "refresh_token": lifetime},
        "OAUTH2_SCOPES_SUPPORTED": list(SCOPES),
    })
    server.register_grant(AuthorizationCodeGrant, [CodeChallenge(required=True)])
    server.register_grant(RefreshTokenGrant)
    return server
