"""Service-account connect: a signed JWT exchanged for an access token (RFC 7523).

Many APIs let a program act as a *service account* instead of a person:
Google Cloud and Workspace, Salesforce, Box, DocuSign, Zoom and others. The
program holds a private key; for a token it signs a short-lived JWT naming
itself (``iss``), the token endpoint (``aud``) and what it wants, and sends it
as ``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer``. There is no
browser redirect and no refresh token: a new JWT buys a new token.

A manifest uses it as ``"auth": {"type": "jwt_bearer", "token": {…}, "jwt": {…}}``:

* ``token`` — the token request, in the manifest's request format, sending
  ``{{assertion}}`` (the signed JWT) and mapping ``accessToken`` and
  ``expiresIn`` from the answer;
* ``jwt`` — ``audience`` (default: the token request's URL), ``scope`` (sent
  as a ``scope`` claim, as Google expects), ``lifetime`` in seconds (60–3600,
  default 3600), ``algorithm`` (``RS256`` default, or ``ES256``) and extra
  static ``claims``.

The connect form asks for the service account's email (the issuer), its
private key (PEM — or the whole JSON key file, whose ``client_email``,
``private_key`` and ``private_key_id`` are then used), and optionally a user to
act as (``sub``, for domain-wide delegation). The key is stored encrypted like
any credential and never shown again.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

try:
    from authlib.oauth2.rfc7523 import JWTBearerGrant
    from joserfc import jwk
except ModuleNotFoundError as missing:  # the extra is optional: say which one to install
    package = (missing.name or "authlib").partition(".")[0]
    raise ModuleNotFoundError(
        f"jwt_bearer needs the jwt extra ({package} is not installed): pip install "
        "'minihost[jwt]', or pip install -e '.[jwt]' in a checkout", name=package) from None

from host.errors import FieldError, ValidationError
from host.plugins import AuthFlow, AuthType, hookimpl

__version__ = "1.0.0"
MINIHOST_REQUIRES = ">=0.1"

MAX_LIFETIME = 3600
ALGORITHMS = ("RS256", "ES256")

SCHEMA: dict[str, Any] = {
    "required": ["token"],
    "additionalProperties": False,
    "properties": {
        "token": {"type": "object", "required": ["url", "mapping"]},
        "jwt": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "audience": {"type": "string", "minLength": 1},
                "scope": {"type": "string"},
                "lifetime": {"type": "integer", "minimum": 60, "maximum": MAX_LIFETIME},
                "algorithm": {"enum": list(ALGORITHMS)},
                "claims": {"type": "object"},
            },
        },
        "config": {"type": "object"},
    },
}

FORM: dict[str, Any] = {
    "type": "object",
    "required": ["privateKey"],
    "properties": {
        "clientEmail": {
            "type": "string", "title": "Service account email",
            "description": "The account's identity, sent as the JWT issuer. Leave it empty "
                           "when you paste the whole JSON key file below.",
        },
        "privateKey": {
            "type": "string", "title": "Private key", "minLength": 1, "writeOnly": True,
            "x-widget": "textarea",
            "description": "The PEM private key (-----BEGIN PRIVATE KEY----- …), or the "
                           "whole JSON key file the provider gave you.",
        },
        "privateKeyId": {
            "type": "string", "title": "Key id",
            "description": "Optional: sent as the JWT's kid header.",
        },
        "subject": {
            "type": "string", "title": "Act as user",
            "description": "Optional: a user's email for domain-wide delegation (sub).",
        },
    },
}


def _refused(field: str, message: str) -> ValidationError:
    """Shown at the connect form's field; nothing is stored."""
    return ValidationError([FieldError(field, message)])


def _identity(values: Mapping[str, Any]) -> dict[str, str]:
    """Email, PEM key and key id, from the form's fields or a pasted JSON key file."""
    key = str(values.get("privateKey") or "").strip()
    identity = {"clientEmail": str(values.get("clientEmail") or "").strip(),
                "privateKey": key,
                "privateKeyId": str(values.get("privateKeyId") or "").strip()}
    if key.startswith("{"):
        try:
            document = json.loads(key)
        except ValueError:
            raise _refused("privateKey", "looks like a JSON key file but is not valid JSON; "
                           "paste the file exactly as downloaded") from None
        if not isinstance(document, dict) or not isinstance(document.get("private_key"), str):
            raise _refused("privateKey", "is a JSON file without a private_key; paste the "
                           "service account's key file, or only its PEM private key")
        identity["privateKey"] = document["private_key"].strip()
        identity["clientEmail"] = identity["clientEmail"] or str(document.get("client_email", ""))
        identity["privateKeyId"] = (identity["privateKeyId"]
                                    or str(document.get("private_key_id", "")))
    if not identity["clientEmail"]:
        raise _refused("clientEmail", "is required, unless you paste the whole JSON key "
                       "file as the private key")
    return identity


def _assertion(flow: AuthFlow, identity: Mapping[str, str], subject: str) -> str:
    settings = flow.auth.get("jwt") or {}
    algorithm = settings.get("algorithm", "RS256")
    audience = settings.get("audience") or flow.auth["token"]["url"]
    claims = dict(settings.get("claims") or {})
    if settings.get("scope"):
        claims["scope"] = settings["scope"]
    header = {"alg": algorithm, "typ": "JWT"}
    if identity["privateKeyId"]:
        header["kid"] = identity["privateKeyId"]
    issued = int(flow.now)
    try:
        key = jwk.import_key(identity["privateKey"], "RSA" if algorithm == "RS256" else "EC")
        token = JWTBearerGrant.sign(
            key, issuer=identity["clientEmail"], audience=audience,
            subject=subject or None, issued_at=issued,
            expires_at=issued + int(settings.get("lifetime", MAX_LIFETIME)),
            claims=claims, header=header)
    except Exception as error:  # a key that is not PEM, or not for this algorithm
        raise _refused("privateKey", f"cannot sign an {algorithm} JWT ({error}); paste the "
                       "PEM private key of the service account") from None
    return token.decode() if isinstance(token, bytes) else str(token)


def _exchange(flow: AuthFlow) -> dict[str, Any]:
    identity = _identity(flow.values)
    subject = str(flow.values.get("subject") or "").strip()
    token = flow.run("token", {"assertion": _assertion(flow, identity, subject)})
    stored = {key: value for key, value in identity.items() if value}
    if subject:
        stored["subject"] = subject
    return {**stored, **token}


def _credentials(auth: Mapping[str, Any]) -> list[str]:
    mapping = (auth.get("token") or {}).get("mapping") or {}
    names = list(mapping) if isinstance(mapping, dict) else []
    return ["clientEmail", "privateKey", "privateKeyId", "subject", "expiresAt", *names]


JWT_BEARER = AuthType(
    name="jwt_bearer",
    title="Service account (signed JWT)",
    form=lambda auth: FORM,
    connect=_exchange,
    refresh=_exchange,
    credentials=_credentials,
    schema=SCHEMA,
    requests=("token",),
    values=("assertion",),
)


@hookimpl
def auth_types(config: Mapping[str, Any]) -> list[AuthType]:
    return [JWT_BEARER]
