"""Inbound webhooks: ``POST /hooks/{installation}/{token}`` (FLOWS.md §5).

The raw body is read before anything parses it (signatures are over the bytes the
provider sent) and at most 1 MB of it; the answer never echoes the request back.
"""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wrappers import Response

from ..services import events

blueprint = Blueprint("hooks", __name__, url_prefix="/hooks")


@blueprint.route("/<installation_id>/<token>", methods=["POST", "GET"])
def receive(installation_id: str, token: str) -> Response:
    length = request.content_length
    if length is not None and length > events.MAX_BODY:
        raise RequestEntityTooLarge(f"the body is {length} bytes; a webhook may carry at "
                                    f"most {events.MAX_BODY} (1 MB)")
    body = request.get_data(cache=False)
    if len(body) > events.MAX_BODY:
        raise RequestEntityTooLarge(f"a webhook may carry at most {events.MAX_BODY} bytes")
    query = f"?{request.query_string.decode()}" if request.query_string else ""
    url = f"{current_app.config['PUBLIC_URL']}{request.path}{query}"
    answer = events.receive(
        current_app, installation_id, token, body,
        {name.lower(): value for name, value in request.headers.items()},
        request.method, url, request.headers.get("Content-Type", ""))
    if isinstance(answer.body, str):
        response = Response(answer.body, status=answer.status, mimetype="text/plain")
    elif answer.body is None:
        response = Response(status=204 if answer.status == 200 else answer.status)
    else:
        shown = answer.body
        if answer.status >= 400 and isinstance(shown, dict):
            shown = {"type": "about:blank", "status": answer.status, **shown}
        response = jsonify(shown)
        response.status_code = answer.status
        if answer.status >= 400:
            response.mimetype = "application/problem+json"
    return response
