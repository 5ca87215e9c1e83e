"""``POST /api/v1/auth/token``: a program signs in as a person and gets an API token.

The same checks as the sign-in page: one message for every kind of failure, and the
failures counted per email and per address across every process (5 and 20 in 15
minutes), so the endpoint cannot be used to guess passwords faster than the page.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, request
from werkzeug.exceptions import Unauthorized

from ..db import session as db_session
from ..errors import PolicyDenied, TooManyAttempts
from ..services import accounts
from .body import json_object
from .schemas import validate_request


def create_token() -> tuple[dict[str, Any], int]:
    body = validate_request("TokenRequest", json_object())
    db = db_session()
    try:
        user = accounts.authenticate(db, body["email"], body["password"],
                                     request.remote_addr or "")
    except TooManyAttempts:  # a PolicyDenied too, but it answers 429 with Retry-After
        raise
    except PolicyDenied as error:
        raise Unauthorized(error.detail) from None
    token, secret = accounts.create_token(db, user, body.get("name") or "api sign-in",
                                          f"user:{user.id}")
    db.commit()
    return {"token": secret, "id": token.id, "name": token.name}, 201


def register(blueprint: Blueprint) -> None:
    blueprint.add_url_rule("/auth/token", view_func=create_token, methods=["POST"],
                           endpoint="auth_token")
