"""People, workspaces, login sessions and API tokens.

Passwords are hashed with werkzeug's scrypt; API tokens and session secrets
are random 256-bit values of which only a SHA-256 hash is stored (they are
not guessable, so a slow hash adds nothing). A token or session secret is shown
once, when it is created.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from .. import audit
from ..db import ApiToken, AuditEvent, LoginSession, Membership, User, Workspace, utcnow
from ..errors import (
    BadInput,
    FieldError,
    NotFound,
    PolicyDenied,
    TooManyAttempts,
    ValidationError,
)
from ..principal import Principal, hash_secret

__all__ = [
    "LOGIN_FAILURE_LIMIT",
    "authenticate",
    "create_token",
    "create_user",
    "disable_user",
    "end_session",
    "list_tokens",
    "principal_for_session",
    "principal_for_token",
    "revoke_token",
    "start_session",
]

TOKEN_PREFIX = "mh_"
SESSION_LIFETIME = timedelta(days=14)
LOGIN_FAILURE_LIMIT = 5
LOGIN_WINDOW = timedelta(minutes=15)
DUMMY_HASH = generate_password_hash("not a real password")


def _normalise_email(email: str) -> str:
    email = email.strip().lower()
    if "@" not in email or len(email) > 320 or email.startswith("@") or email.endswith("@"):
        raise ValidationError([FieldError("email", "is not an email address")])
    return email


def create_user(db: Session, email: str, password: str | None, admin: bool = False,
                actor: str = "cli") -> User:
    """A user with a personal workspace they own."""
    email = _normalise_email(email)
    if password is not None and len(password) < 8:
        raise ValidationError([FieldError("password", "must be at least 8 characters")])
    if db.scalar(select(User).where(User.email == email)) is not None:
        raise BadInput(f"a user with email {email} already exists")
    user = User(email=email, is_admin=admin, is_active=True,
                password_hash=generate_password_hash(password) if password else None)
    workspace = Workspace(name=f"{email}'s workspace", personal=True)
    db.add_all([user, workspace])
    db.flush()
    db.add(Membership(user_id=user.id, workspace_id=workspace.id, role="owner"))
    audit.record(db, "user_created", actor=actor, workspace_id=workspace.id,
                 detail={"email": email, "admin": admin})
    return user


def has_users(db: Session) -> bool:
    return db.scalar(select(User.id).limit(1)) is not None


def ensure_user(db: Session, email: str, password: str, admin: bool = False,
                actor: str = "cli") -> User:
    """The user with ``email``, created with ``password`` when there is none (the demo's
    sign-in, which every start of the demo offers)."""
    found = db.scalar(select(User).where(User.email == _normalise_email(email)))
    return found or create_user(db, email, password, admin=admin, actor=actor)


def get_user(db: Session, email: str) -> User:
    user = db.scalar(select(User).where(User.email == _normalise_email(email)))
    if user is None:
        raise NotFound(f"no user with email {email.strip().lower()}")
    return user


def list_emails(db: Session, limit: int = 50) -> list[str]:
    """The active people's emails, oldest account first."""
    return list(db.scalars(select(User.email).where(User.is_active)
                           .order_by(User.created_at).limit(limit)))


def personal_workspace(db: Session, user: User) -> str:
    workspace_id = db.scalar(
        select(Membership.workspace_id).join(Workspace, Workspace.id == Membership.workspace_id)
        .where(Membership.user_id == user.id).order_by(Workspace.personal.desc(),
                                                        Workspace.created_at))
    if workspace_id is None:
        raise NotFound(f"{user.email} belongs to no workspace")
    return workspace_id


def disable_user(db: Session, email: str, actor: str = "cli") -> User:
    """The user can no longer sign in; their sessions and tokens stop at once."""
    user = get_user(db, email)
    user.is_active = False
    forget_principals()
    now = utcnow()
    for row in db.scalars(select(LoginSession).where(LoginSession.user_id == user.id,
                                                     LoginSession.revoked_at.is_(None))):
        row.revoked_at = now
    for token in db.scalars(select(ApiToken).where(ApiToken.user_id == user.id,
                                                   ApiToken.revoked_at.is_(None))):
        token.revoked_at = now
    audit.record(db, "user_disabled", actor=actor, detail={"email": user.email})
    return user


# -- signing in --------------------------------------------------------------------------


def _recent_failures(db: Session, email: str, address: str) -> tuple[int, int]:
    since = utcnow() - LOGIN_WINDOW
    failures = select(func.count(AuditEvent.id)).where(
        AuditEvent.kind == "login_failed", AuditEvent.at >= since)
    by_email = db.scalar(failures.where(AuditEvent.actor == f"email:{email}")) or 0
    by_address = db.scalar(failures.where(AuditEvent.detail["address"].as_string() == address)) or 0
    return by_email, by_address


def authenticate(db: Session, email: str, password: str, address: str) -> User:
    """The user for these credentials, or one message for every kind of failure.

    Failures are counted per email and per address in the audit log, which every
    worker shares, so the limit holds however many processes serve logins.
    """
    try:
        email = _normalise_email(email)
    except ValidationError:
        email = email.strip().lower()[:320]
    by_email, by_address = _recent_failures(db, email, address)
    if by_email >= LOGIN_FAILURE_LIMIT or by_address >= LOGIN_FAILURE_LIMIT * 4:
        raise TooManyAttempts(
            "too many failed sign-ins; wait 15 minutes and try again",
            int(LOGIN_WINDOW.total_seconds()))
    user = db.scalar(select(User).where(User.email == email))
    valid = check_password_hash(
        user.password_hash if user is not None and user.password_hash else DUMMY_HASH, password)
    if user is None or not valid or not user.is_active or not user.password_hash:
        # The account's owner sees who tried to sign in as them, from where, and when
        # that locked the account (an unknown email belongs to no workspace).
        workspace = _workspace_of(db, user)
        audit.record(db, "login_failed", actor=f"email:{email}", workspace_id=workspace,
                     detail={"address": address})
        if by_email + 1 == LOGIN_FAILURE_LIMIT:
            until = utcnow() + LOGIN_WINDOW
            audit.record(db, "login_locked", actor=f"email:{email}", workspace_id=workspace,
                         detail={"address": address,
                                 "until": until.isoformat(timespec="seconds")})
        db.commit()
        raise PolicyDenied("the email or password is wrong, or the account is disabled")
    return user


def _workspace_of(db: Session, user: User | None) -> str | None:
    try:
        return personal_workspace(db, user) if user is not None else None
    except NotFound:
        return None


def start_session(db: Session, user: User, user_agent: str, address: str) -> str:
    """A new login session; returns the secret for the cookie (shown once)."""
    secret = secrets.token_urlsafe(32)
    now = utcnow()
    row = LoginSession(user_id=user.id, workspace_id=personal_workspace(db, user),
                       secret_hash=hash_secret(secret), user_agent=user_agent[:256],
                       address=address[:64], created_at=now, last_seen_at=now,
                       expires_at=now + SESSION_LIFETIME)
    db.add(row)
    db.flush()
    audit.record(db, "login", actor=f"user:{user.id}", workspace_id=row.workspace_id,
                 detail={"session": row.id, "address": address})
    return f"{row.id}.{secret}"


def principal_for_session(db: Session, cookie_value: str) -> Principal | None:
    session_id, _, secret = cookie_value.partition(".")
    if not secret:
        return None
    row = db.get(LoginSession, session_id)
    now = utcnow()
    if (row is None or row.revoked_at is not None or row.expires_at <= now
            or not secrets.compare_digest(row.secret_hash, hash_secret(secret))):
        return None
    user = db.get(User, row.user_id)
    if user is None or not user.is_active:
        return None
    if (now - row.last_seen_at).total_seconds() > 60:
        row.last_seen_at = now
        db.commit()
    return Principal(user, row.workspace_id, f"session:{row.id}")


def end_session(db: Session, user: User, session_id: str, actor: str) -> None:
    row = db.get(LoginSession, session_id)
    if row is None or row.user_id != user.id:
        raise NotFound(f"no session {session_id}")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        audit.record(db, "session_revoked", actor=actor, workspace_id=row.workspace_id,
                     detail={"session": row.id})


def list_sessions(db: Session, user: User) -> list[LoginSession]:
    return list(db.scalars(select(LoginSession).where(
        LoginSession.user_id == user.id, LoginSession.revoked_at.is_(None),
        LoginSession.expires_at > utcnow()).order_by(LoginSession.last_seen_at.desc())))


# -- API tokens --------------------------------------------------------------------------


def create_token(db: Session, user: User, name: str, actor: str) -> tuple[ApiToken, str]:
    """A new token for ``user``'s workspace; the secret is returned once, never stored."""
    name = (name or "").strip() or "token"
    if len(name) > 100:
        raise ValidationError([FieldError("name", "must be at most 100 characters")])
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(user_id=user.id, workspace_id=personal_workspace(db, user), name=name,
                     token_hash=hash_secret(secret))
    db.add(token)
    db.flush()
    audit.record(db, "token_created", actor=actor, workspace_id=token.workspace_id,
                 detail={"token": token.id, "name": name})
    return token, secret


def create_flow_token(db: Session, principal: Principal, flow_id: str, flow_key: str
                      ) -> tuple[ApiToken, str]:
    """A token that may only start one flow (its endpoint's caller: a program, a form
    on a website); the secret is returned once, never stored."""
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(user_id=principal.user.id, workspace_id=principal.workspace_id,
                     name=f"flow {flow_key}", token_hash=hash_secret(secret), flow_id=flow_id)
    db.add(token)
    db.flush()
    audit.record(db, "token_created", actor=principal.actor, workspace_id=token.workspace_id,
                 detail={"token": token.id, "name": token.name, "flow": flow_key})
    return token, secret


def list_tokens(db: Session, user: User) -> list[ApiToken]:
    return list(db.scalars(select(ApiToken).where(
        ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
        .order_by(ApiToken.created_at.desc())))


def revoke_token(db: Session, token_id: str, actor: str, user: User | None = None) -> ApiToken:
    token = db.get(ApiToken, token_id)
    if token is None or (user is not None and token.user_id != user.id):
        raise NotFound(f"no token {token_id}")
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        forget_principals()
        audit.record(db, "token_revoked", actor=actor, workspace_id=token.workspace_id,
                     detail={"token": token.id, "name": token.name})
    return token


_TOKEN_QUERY = (  # built once: it runs on every API call
    select(User, ApiToken.id, ApiToken.workspace_id, ApiToken.last_used_at, ApiToken.flow_id)
    .join(ApiToken, ApiToken.user_id == User.id)
    .where(ApiToken.token_hash == bindparam("token_hash"), ApiToken.revoked_at.is_(None),
           User.is_active)
)


class PrincipalCache:
    """API tokens' callers, kept for ``seconds``: without it every API call pays a join
    and a round trip to the database for an answer that rarely changes.

    A token revoked, or a user disabled, by this process is forgotten at once (a
    process-wide generation counter every cache checks); one revoked by another
    process — the command line, another worker — stops working within ``seconds``.
    Unknown tokens are never cached, so a new token works at once."""

    def __init__(self, seconds: float = 1.0, clock: Callable[[], float] = time.monotonic
                 ) -> None:
        self.seconds, self.clock = seconds, clock
        self._entries: dict[str, tuple[float, int, Principal, datetime | None]] = {}
        self._lock = threading.Lock()

    def get(self, token_hash: str) -> tuple[Principal, datetime | None] | None:
        entry = self._entries.get(token_hash)
        if entry is None:
            return None
        until, generation, principal, last_used = entry
        if generation != _generation[0] or self.clock() >= until:
            self._entries.pop(token_hash, None)
            return None
        return principal, last_used

    def put(self, token_hash: str, principal: Principal, last_used: datetime | None) -> None:
        with self._lock:
            if len(self._entries) >= MAX_CACHED_PRINCIPALS:
                self._entries.clear()  # tokens seen once a second each: start again
            self._entries[token_hash] = (self.clock() + self.seconds, _generation[0],
                                         principal, last_used)


MAX_CACHED_PRINCIPALS = 10_000
_generation = [0]  # bumped when this process revokes a token or disables a user


def forget_principals() -> None:
    """Make this process look every token up again (after revoking some)."""
    _generation[0] += 1


def principal_for_token(db: Session, secret: str,
                        cache: PrincipalCache | None = None) -> Principal | None:
    """The caller of an API token: a join on every API call, unless ``cache`` knows
    it. Its last use is written at most once a minute."""
    if not secret.startswith(TOKEN_PREFIX):
        return None
    token_hash = hash_secret(secret)
    known = cache.get(token_hash) if cache is not None else None
    if known is not None:
        principal, last_used = known
    else:
        found = db.execute(_TOKEN_QUERY, {"token_hash": token_hash}).first()
        if found is None:
            return None
        user, token_id, workspace_id, last_used, flow_id = found
        db.expunge(user)  # shared by the requests the cache serves; never written through
        principal = Principal(user, workspace_id, f"token:{token_id}", flow_id)
    now = utcnow()
    if last_used is None or (now - last_used).total_seconds() > 60:
        token_id = principal.via.removeprefix("token:")
        db.execute(update(ApiToken).where(ApiToken.id == token_id).values(last_used_at=now))
        db.commit()
        last_used = now
        known = None
    if cache is not None and known is None:
        cache.put(token_hash, principal, last_used)
    return principal
