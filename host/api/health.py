"""``GET /healthz``: 200 when the database answers, else a 503 problem."""

from __future__ import annotations

from flask import Blueprint, current_app
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from ..db import get_database
from ..errors import problem
from ..problems import problem_response

blueprint = Blueprint("health", __name__)


@blueprint.get("/healthz")
def healthz():  # noqa: ANN201 - a Flask view
    try:
        with get_database(current_app).engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError as error:
        reason = str(error.orig) if getattr(error, "orig", None) else type(error).__name__
        return problem_response(problem(
            503, "Database unavailable", f"the database did not answer: {reason}", "database"
        ))
    return {"status": "ok"}
