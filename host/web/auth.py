"""Signing in and out, and the account page (API tokens, sessions)."""

from __future__ import annotations

from flask import (
    Blueprint,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import login_user, logout_user
from werkzeug.wrappers import Response

from .. import vault
from ..db import session as db_session
from ..errors import MinihostError, PolicyDenied, TooManyAttempts
from ..identity import SignedIn, login_required, require_principal
from ..services import accounts
from .helpers import safe_next

blueprint = Blueprint("auth", __name__)


def _address() -> str:
    return request.remote_addr or ""


@blueprint.route("/login", methods=["GET", "POST"])
def login() -> str | Response | tuple[str, int, dict[str, str]]:
    target = safe_next(request.values.get("next"))
    if request.method == "GET":
        return render_template("auth/login.html", next=target, email="")
    email = request.form.get("email", "")
    password = request.form.get("password", "")
    db = db_session()
    try:
        user = accounts.authenticate(db, email, password, _address())
    except TooManyAttempts as error:
        return (render_template("auth/login.html", next=target, email=email, error=error.detail),
                429, {"Retry-After": str(error.retry_after)})
    except PolicyDenied as error:
        return render_template("auth/login.html", next=target, email=email,
                               error=error.detail), 401, {}
    cookie = accounts.start_session(db, user, request.user_agent.string or "", _address())
    db.commit()
    session.clear()  # a fresh session: nothing from before signing in carries over
    session.permanent = True
    principal = accounts.principal_for_session(db, cookie)
    assert principal is not None
    login_user(SignedIn(principal, cookie))
    return redirect(target or url_for("installations.index"))


@blueprint.post("/logout")
def logout() -> Response:
    principal = require_principal()
    if principal.via.startswith("session:"):
        db = db_session()
        accounts.end_session(db, principal.user, principal.via.split(":", 1)[1], principal.actor)
        db.commit()
    logout_user()
    session.clear()
    flash("You are signed out.", "info")
    return redirect(url_for("marketplace.index"))


def _account_page(new_token: dict[str, str] | None = None) -> str:
    principal = require_principal()
    db = db_session()
    return render_template(
        "auth/account.html",
        tokens=accounts.list_tokens(db, principal.user),
        sessions=accounts.list_sessions(db, principal.user),
        current_session=principal.via.split(":", 1)[1],
        new_token=new_token,
    )


# The new token's secret, carried from the create to the page after its redirect:
# encrypted with the vault and bound to the person (the session cookie is only
# signed), read once and dropped.
_NEW_TOKEN = "new_token"


@blueprint.get("/account")
@login_required
def account() -> str:
    principal = require_principal()
    sealed = session.pop(_NEW_TOKEN, None)
    new_token = None
    if isinstance(sealed, str):
        try:
            new_token = vault.decrypt(current_app, sealed.encode(), {"user": principal.user.id},
                                      "a new API token on its way to its page")
        except MinihostError:
            new_token = None  # another person's, or a key since rotated away: not shown
    return _account_page(new_token)


@blueprint.post("/account/tokens")
@login_required
def create_token() -> Response:
    """Create a token, then redirect (post/redirect/get: reloading the page shows it
    but makes no second token). It is shown on that page once: stored as a hash, it is
    never readable again."""
    principal = require_principal()
    db = db_session()
    token, secret = accounts.create_token(db, principal.user, request.form.get("name", ""),
                                          principal.actor)
    db.commit()
    session[_NEW_TOKEN] = vault.encrypt(
        current_app, {"id": token.id, "name": token.name, "secret": secret},
        {"user": principal.user.id}).decode()
    return redirect(url_for("auth.account"), 303)


@blueprint.post("/account/tokens/<token_id>/revoke")
@login_required
def revoke_token(token_id: str) -> Response:
    principal = require_principal()
    db = db_session()
    token = accounts.revoke_token(db, token_id, principal.actor, user=principal.user)
    db.commit()
    flash(f"Token {token.name} revoked.", "info")
    return redirect(url_for("auth.account"))


@blueprint.post("/account/sessions/<session_id>/revoke")
@login_required
def revoke_session(session_id: str) -> Response:
    principal = require_principal()
    db = db_session()
    accounts.end_session(db, principal.user, session_id, principal.actor)
    db.commit()
    if principal.via == f"session:{session_id}":
        logout_user()
        session.clear()
        return redirect(url_for("auth.login"))
    flash("Session signed out.", "info")
    return redirect(url_for("auth.account"))
