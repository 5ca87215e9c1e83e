"""The OAuth 2.0 authorization-code connect (MANIFEST §3, RFC 6749, RFC 7636, RFC 9700).

Starting a connect stores a one-time ``state`` (hashed) bound to the
installation, the user, and — when started from a browser — that login
session; with ``pkce`` a fresh S256 verifier, encrypted. The redirect URI is
``PUBLIC_URL/connect/<miniapp>/callback``, one per mini-app, byte-identical in
the authorize and token requests. The callback is checked in order (state
known, same mini-app, not expired, same browser session, ``iss``) before the
state is consumed atomically; only then are ``error=`` and the code looked at.
A callback whose state matches nothing changes nothing, so a forged callback
cannot spoil a genuine pending connect.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import quote, urlencode

from flask import Flask
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from .. import audit, vault
from ..db import AppClient, Installation, OAuthState, changed, utcnow
from ..engine import Context, render_request
from ..errors import BadInput, CallbackRejected, MinihostError
from ..execution import Step, run_step, system_values
from ..manifest import Manifest
from ..plugins import notify
from ..principal import Principal, hash_secret
from .registration import register

__all__ = ["finish_connect", "redirect_uri", "start_connect"]

STATE_LIFETIME = timedelta(minutes=10)
MAX_CODE_LENGTH = 4096


def redirect_uri(app: Flask, miniapp: str) -> str:
    return f"{app.config['PUBLIC_URL']}/connect/{miniapp}/callback"


def _pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)  # 64 unreserved characters (RFC 7636 §4.1)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _client(db: Session, manifest: Manifest) -> AppClient:
    client = db.scalar(select(AppClient).where(AppClient.miniapp == manifest.name))
    if client is None:
        raise BadInput(
            f"{manifest.title} needs the operator's OAuth client first: register an app with "
            f"the provider and run `minihost clients set {manifest.name} --client-id …` "
            "(or use Admin → OAuth clients)")
    return client


def _authorize_base(app: Flask, manifest: Manifest, installation: Installation,
                    client_id: str, uri: str, state: str) -> str:
    authorize = manifest.auth.authorize
    assert authorize is not None
    ctx = Context(config={**dict(manifest.auth.config), **(installation.config or {})},
                  client={"clientId": client_id},
                  system={**system_values(app, installation), "redirectUri": uri,
                          "state": state})
    return render_request(authorize.request, ctx).url


def check_can_connect(app: Flask, db: Session, manifest: Manifest,
                      installation: Installation) -> None:
    """Refuse an OAuth install before anything is stored when its connect could not
    start: no client set up, or an authorize URL its settings cannot fill (a
    subdomain left out, say)."""
    client = _client(db, manifest)
    _authorize_base(app, manifest, installation, client.client_id,
                    redirect_uri(app, manifest.name), "state-check")


def start_connect(app: Flask, db: Session, principal: Principal, installation: Installation,
                  manifest: Manifest) -> str:
    """Record a pending connect and return the URL to send the user's browser to."""
    authorize = manifest.auth.authorize
    assert authorize is not None
    client = _client(db, manifest)
    state = secrets.token_urlsafe(32)
    verifier, challenge = _pkce_pair() if authorize.pkce else (None, None)
    now = utcnow()
    binding = None
    if principal.via.startswith("session:"):
        binding = hash_secret(principal.via)
    row = OAuthState(state_hash=hash_secret(state), installation_id=installation.id,
                     user_id=principal.user.id, session_binding=binding, created_at=now,
                     expires_at=now + STATE_LIFETIME)
    db.add(row)
    db.flush()
    if verifier is not None:
        row.code_verifier = vault.encrypt(app, verifier, {"state": row.id})
    uri = redirect_uri(app, manifest.name)
    url = _authorize_base(app, manifest, installation, client.client_id, uri, state)
    manifest_sets = {name for name, _ in authorize.request.query}
    params = []
    if "response_type" not in manifest_sets:
        params.append(("response_type", "code"))
    if "client_id" not in manifest_sets:
        params.append(("client_id", client.client_id))
    params += [("redirect_uri", uri), ("state", state)]
    if challenge is not None:
        params += [("code_challenge", challenge), ("code_challenge_method", "S256")]
    url += ("&" if "?" in url else "?") + urlencode(params, quote_via=quote)
    audit.record(db, "connect_started", actor=principal.actor,
                 workspace_id=installation.workspace_id, installation_id=installation.id,
                 detail={"pkce": authorize.pkce, "from": "browser" if binding else "api"})
    db.commit()
    return url


@dataclass(frozen=True, slots=True)
class Finished:
    installation_id: str
    status: str
    error: str | None


def _reject(message: str) -> CallbackRejected:
    return CallbackRejected(message)


def finish_connect(app: Flask, db: Session, miniapp: str, args: Any,
                   principal: Principal | None, *,
                   manifest_of: Callable[[Installation], Manifest]) -> Finished:
    """Check a callback and, when it is genuine, exchange the code for tokens.
    ``manifest_of`` gives the manifest an installation was installed with (the
    catalog, a layer above)."""
    state = args.get("state")
    if not state:
        raise _reject("The callback carries no state, so it cannot be matched to a connect. "
                      "Start the connect again from Minihost.")
    row = db.scalar(select(OAuthState).where(OAuthState.state_hash == hash_secret(state)))
    if row is None:
        raise _reject("This callback matches no connect started here (unknown state). "
                      "Start the connect again from Minihost.")
    installation = db.get(Installation, row.installation_id)
    if installation is None or installation.deleted_at is not None:
        raise _reject("The installation this connect was for no longer exists.")
    if installation.miniapp != miniapp:
        raise _reject("This callback arrived for another mini-app than the connect was "
                      "started for; nothing was changed.")
    if row.used_at is not None:
        raise _reject("This connect was already finished (the state was used). Start the "
                      "connect again if you need to.")
    if row.expires_at <= utcnow():
        raise _reject("This connect expired: it must be finished within 10 minutes. Start "
                      "it again.")
    if row.session_binding is not None and (
            principal is None or hash_secret(principal.via) != row.session_binding):
        raise _reject("This connect was started in another browser session. Finish it in the "
                      "browser where you started it, signed in as the same person.")
    manifest = manifest_of(installation)
    issuer = manifest.auth.issuer
    iss = args.get("iss")
    if issuer and iss is not None and iss != issuer:
        raise _reject(f"The callback came from {iss!r}, not from {manifest.title}'s "
                      f"authorization server {issuer!r}; it was refused (mix-up defence).")
    consumed = changed(db.execute(update(OAuthState).where(OAuthState.id == row.id,
                                                   OAuthState.used_at.is_(None))
                          .values(used_at=utcnow())))
    db.commit()
    if consumed != 1:
        raise _reject("This connect was already finished (the state was used).")
    verifier = None
    if row.code_verifier is not None:
        verifier = vault.decrypt(app, row.code_verifier, {"state": row.id},
                                 "the PKCE verifier of a pending connect")
    actor = f"user:{row.user_id}" if row.user_id else "system"
    error = args.get("error")
    if error:
        description = args.get("error_description") or ""
        reason = f"{manifest.title} answered {error}" + (f": {description}" if description
                                                         else "")
        return _fail(app, db, installation, reason[:500], actor)
    codes = args.getlist("code") if hasattr(args, "getlist") else [args.get("code")]
    codes = [c for c in codes if c]
    if len(codes) != 1:
        return _fail(app, db, installation, f"{manifest.title} sent back no authorization code"
                     if not codes else "the callback carries more than one code", actor)
    if len(codes[0]) > MAX_CODE_LENGTH:
        return _fail(app, db, installation, "the authorization code is implausibly long "
                     f"(over {MAX_CODE_LENGTH} characters); it was not used", actor)
    return _exchange(app, db, installation, manifest, codes[0], state, verifier, actor,
                     row.user_id)


def _fail(app: Flask, db: Session, installation: Installation, reason: str,
          actor: str) -> Finished:
    db.refresh(installation)
    message = f"{reason}; connect again to retry"
    if installation.status != "active":  # a failed reconnect keeps working tokens
        installation.status, installation.error = "error", message
    installation.updated_at = utcnow()
    audit.record(db, "connect_failed", actor=actor, workspace_id=installation.workspace_id,
                 installation_id=installation.id, detail={"reason": reason}, app=app)
    db.commit()
    return Finished(installation.id, installation.status, message)


def _exchange(app: Flask, db: Session, installation: Installation, manifest: Manifest,
              code: str, state: str, verifier: str | None, actor: str,
              user_id: str | None) -> Finished:
    auth = manifest.auth
    assert auth.get_token is not None
    connect = {"redirectUri": redirect_uri(app, manifest.name), "code": code, "state": state}
    if verifier is not None:
        connect["codeVerifier"] = verifier
    result, _ = run_step(app, Step(
        installation=installation, manifest=manifest, requests=(auth.get_token,), kind="auth",
        name="get_token", actor=actor, actor_id=user_id, persist="credentials",
        follow_redirects=False, credentials={}, reason="connect", system=connect,
        secrets=[value for value in (code, verifier, state) if value]))
    if not result.ok:
        return _fail(app, db, installation, f"the token exchange failed: "
                     f"{_message(result.error)}", actor)
    credentials = result.values
    if not credentials.get("accessToken"):
        return _fail(app, db, installation, f"{manifest.title}'s token answer held no access "
                     "token", actor)
    metadata: dict[str, Any] = {}
    if auth.user_details is not None:
        details, _ = run_step(app, Step(
            installation=installation, manifest=manifest, requests=(auth.user_details,),
            kind="auth", name="userDetails", actor=actor, actor_id=user_id,
            persist="metadata", credentials=credentials, reason="connect", system=connect,
            secrets=[value for value in (code, verifier, state) if value]))
        if not details.ok:
            return _fail(app, db, installation, "reading the account details failed: "
                         f"{_message(details.error)}", actor)
        metadata = {k: v for k, v in details.values.items() if v is not None}
    db.refresh(installation)
    was = installation.status
    vault.store_credentials(app, installation, credentials)
    installation.meta = metadata
    installation.status, installation.error = "active", None
    installation.row_version += 1
    installation.refresh_started_at = None
    installation.updated_at = utcnow()
    audit.record(db, "connected", actor=actor, workspace_id=installation.workspace_id,
                 installation_id=installation.id,
                 detail={"credentialKeys": sorted(credentials)}, app=app)
    db.commit()
    register(app, db, installation, manifest, credentials, actor, user_id)
    notify(app, "installation_changed", installation=installation.as_dict(),
           change="connected" if was == "pending" else "reconnected")
    return Finished(installation.id, installation.status, installation.error)


def _message(error: MinihostError | None) -> str:
    if error is None:
        return "unknown error"
    return getattr(error, "provider_message", None) or error.detail
