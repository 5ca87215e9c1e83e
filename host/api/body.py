"""Reading JSON request bodies: 400 for malformed JSON or another content type,
422 (per field) for well-formed bodies with invalid members."""

from __future__ import annotations

from typing import Any

from flask import request
from werkzeug.exceptions import BadRequest

from ..engine import jsonlimits
from ..errors import FieldError, ValidationError

__all__ = ["json_object"]


def json_object() -> dict[str, Any]:
    if not request.is_json:
        raise BadRequest("send the body as JSON with Content-Type: application/json")
    try:
        body = jsonlimits.loads(request.get_data(cache=True))
    except jsonlimits.TooDeep:
        raise BadRequest(f"the body nests deeper than {jsonlimits.MAX_DEPTH} levels; send "
                         "a flatter document") from None
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ValidationError([FieldError("", "the body must be a JSON object")])
    return body
