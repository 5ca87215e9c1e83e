"""Runs: every action, source load and auth step, recorded with its redacted trace.

The Run row is committed *before* the first request leaves, so a crash mid-run
still leaves a record; the outcome is written when the chain ends.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from flask import Flask

from ..db import Run, get_database, new_id, utcnow
from ..engine import ChainResult, Context, run_chain
from ..engine.chain import Persist
from ..errors import MinihostError
from .outbound import client_for

__all__ = ["error_document", "execute"]


def error_document(error: MinihostError) -> dict[str, Any]:
    """A run's ``error``: what failed, where, and the provider's own words."""
    document: dict[str, Any] = {"type": error.slug, "message": error.detail}
    pointer = getattr(error, "pointer", None)
    if pointer:
        document["request"] = pointer
    status = getattr(error, "http_status", None)
    if status is not None:
        document["providerStatus"] = status
    message = getattr(error, "provider_message", None)
    if message:
        document["providerMessage"] = message
    return document


def execute(
    app: Flask,
    *,
    workspace_id: str,
    installation_id: str | None,
    kind: str,
    name: str,
    requests: Sequence[Any],
    ctx: Context,
    allowed_hosts: Sequence[str],
    persist: Persist = "output",
    follow_redirects: bool = True,
    sandbox: bool = False,
    actor_id: str | None = None,
    parameters: dict[str, Any] | None = None,
    record: bool = True,
) -> tuple[ChainResult, str | None]:
    """Run a chain for an installation and record it; returns (result, run id)."""
    database = get_database(app)
    run_id = None
    sandboxed = sandbox or bool(app.config["SANDBOX"])
    if record:
        run_id = new_id("run")
        with database.transaction() as db:
            db.add(Run(id=run_id, workspace_id=workspace_id, installation_id=installation_id,
                       kind=kind, name=name, status="running", parameters=parameters or {},
                       sandbox=sandboxed, actor_id=actor_id, started_at=utcnow()))
    result = run_chain(
        requests, ctx, client_for(app, sandboxed), allowed_hosts=allowed_hosts,
        deadline=time.monotonic() + float(app.config["ACTION_TIMEOUT"]), persist=persist,
        follow_redirects=follow_redirects)
    if record:
        with database.transaction() as db:
            run = db.get(Run, run_id)
            assert run is not None
            run.status = "succeeded" if result.ok else "failed"
            run.output = _output(result, persist)
            run.error = error_document(result.error) if result.error is not None else None
            run.trace = {"requests": result.trace}
            run.finished_at = utcnow()
            run.duration_ms = result.duration_ms
    return result, run_id


def _output(result: ChainResult, persist: Persist) -> Any:
    if not result.ok:
        return None
    if persist == "credentials":
        return {"credentialKeys": sorted(result.values)}
    return result.values
