"""``GET /healthz``: 200 when the database answers, else a 503 problem.

With a broker (``CELERY_BROKER_URL``) it also says whether the broker answers, how
many workers answered in the last 30 s and how many task messages wait; a broker or
workers that are missing make ``status`` ``degraded`` but keep the 200: the host
still takes runs (their tasks wait for the broker and workers), so a load balancer
must not take every host out at once for it."""

from __future__ import annotations

from flask import Blueprint, current_app
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from ..db import get_database
from ..errors import problem
from ..executor import broker
from ..problems import problem_response
from ..services import workers

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
    if not current_app.config.get("CELERY_BROKER_URL"):
        return {"status": "ok"}
    queued = broker.queue_depth(current_app)
    alive = workers.alive(current_app)
    return {"status": "ok" if queued is not None and alive else "degraded",
            "database": "ok", "broker": "ok" if queued is not None else "unreachable",
            "workers": alive, "queued": queued}
