"""A run is always finished: whatever stops the chain, the row never stays "running"."""

from types import SimpleNamespace

from sqlalchemy import select

from host.db import Run, get_database
from host.engine import Context
from host.services.accounts import personal_workspace
from host.services.runs import execute


def test_an_unexpected_error_fails_the_run_instead_of_leaving_it_running(hosted, caplog):
    broken = SimpleNamespace(pointer="/actions/0/requests/0")  # nothing to render from
    with get_database(hosted.app).sessions() as db:
        workspace = personal_workspace(db, hosted.alice)
    result, run = execute(hosted.app, workspace_id=workspace, installation_id=None, kind="action",
                          name="broken", requests=[broken], ctx=Context(),
                          allowed_hosts=["127.0.0.1"])
    assert not result.ok and result.error.status == 500
    assert result.error.detail == (
        "the run stopped on an internal error, which was logged for the operator; "
        "try again, and tell the operator if it happens again")
    with get_database(hosted.app).sessions() as db:
        stored = db.scalars(select(Run).where(Run.id == run.id)).one()
        assert stored.status == "failed" and stored.finished_at is not None
        assert stored.error == {"type": "internal", "message": result.error.detail}
    assert f"run {run.id} (action broken) stopped on an unexpected error" in caplog.text
