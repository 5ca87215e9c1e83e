"""Error answers: problem JSON under ``/api/`` and ``/healthz``, an HTML page elsewhere.

Every error becomes one of these two; a traceback never reaches a client. The
pages and the API share it, so it sits below both.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

from .errors import Bug, MinihostError, problem, to_problem

log = logging.getLogger(__name__)
PROBLEM_TYPE = "application/problem+json"


def wants_problem() -> bool:
    return request.path.startswith(("/api/", "/healthz", "/hooks/"))


def problem_response(body: dict, headers: dict[str, str] | None = None) -> Response:
    response = jsonify(body)
    response.status_code = body["status"]
    response.mimetype = PROBLEM_TYPE
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _page(status: int, title: str, detail: str) -> tuple[str, int]:
    return render_template("error.html", status=status, title=title, detail=detail), status


def handle_minihost_error(error: MinihostError) -> Response | tuple[str, int]:
    if isinstance(error, Bug):
        log.error("internal error: %s", error.detail, exc_info=error)
    return _respond(error)


def _respond(error: MinihostError) -> Response | tuple[str, int]:
    if wants_problem():
        retry_after = getattr(error, "retry_after", None)
        headers = {"Retry-After": str(retry_after)} if error.status == 429 and retry_after else None
        return problem_response(to_problem(error), headers)
    body = to_problem(error)
    return _page(error.status, body["title"], body["detail"])


def handle_http_error(error: HTTPException) -> Response | tuple[str, int]:
    status = error.code or 500
    title = error.name
    detail = error.description or title
    if wants_problem():
        headers = {}
        if status == 401:
            headers["WWW-Authenticate"] = 'Bearer realm="minihost"'
        if status == 405 and error.valid_methods:  # type: ignore[attr-defined]
            headers["Allow"] = ", ".join(sorted(error.valid_methods))  # type: ignore[attr-defined]
        slug = title.lower().replace(" ", "-").replace("'", "")
        return problem_response(problem(status, title, detail, slug), headers)
    return _page(status, title, detail)


def handle_unexpected(error: Exception) -> Response | tuple[str, int]:
    log.exception("unhandled error on %s %s", request.method, request.path, exc_info=error)
    # The exception's own text may name internals; the log has it, the client not.
    return _respond(Bug("the host hit an internal error, which was logged for the operator; "
                        "try again, and tell the operator if it happens again"))


def init_app(app: Flask) -> None:
    app.register_error_handler(MinihostError, handle_minihost_error)
    app.register_error_handler(HTTPException, handle_http_error)
    app.register_error_handler(Exception, handle_unexpected)
