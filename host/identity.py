"""Who is calling: login sessions for people, Bearer tokens for programs.

People sign in through Flask-Login; the cookie carries a login-session secret
whose row can be revoked (so a copied cookie dies with its session). Programs
send ``Authorization: Bearer <token>`` to ``/api/``. CSRF (Flask-WTF) guards
every state-changing request that relies on the cookie; Bearer calls carry no
ambient authority and are exempt. Security headers go on every answer.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar
from urllib.parse import urlsplit

from flask import Flask, current_app, g, redirect, request, url_for
from flask_login import LoginManager, UserMixin, current_user
from flask_wtf.csrf import CSRFProtect
from werkzeug.exceptions import Forbidden, Unauthorized
from werkzeug.wrappers import Response

from .db import session as db_session
from .principal import Principal
from .services.accounts import (
    SESSION_LIFETIME,
    PrincipalCache,
    principal_for_session,
    principal_for_token,
)

__all__ = [
    "SignedIn",
    "admin_required",
    "allow_form_action",
    "current_principal",
    "init_app",
    "login_required",
    "require_principal",
]

F = TypeVar("F", bound=Callable[..., Any])
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CSP = ("default-src 'self'; img-src 'self' data:; object-src 'none'; frame-ancestors 'none'; "
       "base-uri 'self'; form-action 'self'")

class SignedIn(UserMixin):
    """Flask-Login's user object: one login session of one person."""

    def __init__(self, principal: Principal, cookie_value: str) -> None:
        self.principal = principal
        self._cookie_value = cookie_value

    def get_id(self) -> str:
        return self._cookie_value

    @property
    def is_active(self) -> bool:
        return self.principal.user.is_active


def bearer_token() -> str | None:
    """The token of an ``Authorization: Bearer`` header, if one was sent."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def current_principal() -> Principal | None:
    """The caller, from a Bearer token (API only) or the login session."""
    if "principal" in g:
        return g.principal
    principal = None
    token = bearer_token() if request.path.startswith("/api/") else None
    if token is not None:
        principal = principal_for_token(db_session(), token,
                                        current_app.extensions["minihost.principals"])
        if principal is None:
            g.principal = None
            raise Unauthorized("the API token is unknown, revoked or belongs to a disabled user")
    elif current_user.is_authenticated:
        principal = current_user.principal
    g.principal = principal
    return principal


def require_principal(flow_token: bool = False) -> Principal:
    """The caller; a flow token is refused except where ``flow_token`` says the
    endpoint starts a flow (which then checks it is the token's flow)."""
    principal = current_principal()
    if principal is None:
        raise Unauthorized("sign in, or send an API token as Authorization: Bearer <token>")
    if principal.flow_id is not None and not flow_token:
        raise Forbidden("this token may only start its flow "
                        "(POST /api/v1/flows/{key}/runs); use a personal API token")
    return principal


def login_required(view: F) -> F:
    """Pages: send anonymous visitors to the sign-in page, then back."""

    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if current_principal() is None:
            return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
        return view(*args, **kwargs)

    return wrapped  # type: ignore[return-value]


def admin_required(view: F) -> F:
    """Operator pages answer only operators (``minihost users create --admin``)."""

    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        principal = current_principal()
        if principal is None:
            return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
        if not principal.is_admin:
            raise Forbidden("this page is for operators")
        return view(*args, **kwargs)

    return wrapped  # type: ignore[return-value]


def _load_user(cookie_value: str) -> SignedIn | None:
    principal = principal_for_session(db_session(), cookie_value)
    return SignedIn(principal, cookie_value) if principal is not None else None


def _csrf_guard() -> None:
    """Changes made with the browser's session cookie need the CSRF token, and so
    does the sign-in form (login CSRF). A request without the cookie carries no
    ambient authority — a program's Bearer call, a provider calling back
    server-to-server — and unrouted requests fall through to their 404/405."""
    if request.method not in UNSAFE or request.url_rule is None:
        return
    if request.path.startswith("/hooks/"):
        return  # a provider's webhook: checked by its signature, never by a session
    if request.path.startswith("/api/") and (bearer_token() or not current_user.is_authenticated):
        return
    has_cookie = current_app.config["SESSION_COOKIE_NAME"] in request.cookies
    if not has_cookie and request.endpoint != "auth.login":
        return
    current_app.extensions["csrf"].protect()


def allow_form_action(url: str) -> None:
    """Let this page's forms lead to ``url``'s origin (an OAuth authorize page):
    CSP ``form-action`` also governs the redirect that follows a form post."""
    parts = urlsplit(url)
    if parts.scheme in ("http", "https") and parts.netloc:
        g.setdefault("form_origins", set()).add(f"{parts.scheme}://{parts.netloc}")


def _security_headers(response: Response) -> Response:
    headers = response.headers
    origins = " ".join(sorted(g.get("form_origins", ())))
    headers.setdefault("Content-Security-Policy", CSP + (f" {origins}" if origins else ""))
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Referrer-Policy", "same-origin")
    if g.get("principal") is not None:
        headers.setdefault("Cache-Control", "no-store")  # personal pages and answers
    if request.scheme == "https" or request.headers.get("X-Forwarded-Proto") == "https":
        headers.setdefault("Strict-Transport-Security", "max-age=31536000")
    return response


def init_app(app: Flask) -> None:
    https = urlsplit(app.config["PUBLIC_URL"]).scheme == "https"
    if app.config.get("SESSION_COOKIE_SAMESITE") is None:
        app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    app.config["SESSION_COOKIE_HTTPONLY"] = True
    if https:
        app.config["SESSION_COOKIE_SECURE"] = True
    app.config["PERMANENT_SESSION_LIFETIME"] = SESSION_LIFETIME
    app.config["WTF_CSRF_CHECK_DEFAULT"] = False
    app.config.setdefault("WTF_CSRF_TIME_LIMIT", None)  # bound to the session instead
    app.extensions["minihost.principals"] = PrincipalCache()
    manager = LoginManager()
    manager.session_protection = None  # sessions are server-side and revocable
    manager.login_view = "auth.login"
    manager.user_loader(_load_user)
    manager.init_app(app)
    CSRFProtect(app)
    app.before_request(_csrf_guard)
    app.after_request(_security_headers)
