"""A run is always finished: whatever stops the chain, the row never stays "running"."""

from types import SimpleNamespace

from sqlalchemy import select

from host.db import Run, get_database
from host.errors import NotReady
from host.execution import Step, run_step
from host.principal import Principal
from host.services import installations
from host.services.accounts import personal_workspace


def test_an_unexpected_error_fails_the_run_instead_of_leaving_it_running(hosted, caplog):
    # Nothing to render from: the engine fails on it in a way no error class covers.
    broken = SimpleNamespace(pointer="/actions/0/requests/0", secret_roots=frozenset())
    with get_database(hosted.app).sessions() as db:
        who = Principal(hosted.alice, personal_workspace(db, hosted.alice), "session:x")
        installation = installations.install(hosted.app, db, who, "open").installation
        manifest = installations.manifest_of(hosted.app, db, installation)
        result, run = run_step(hosted.app, Step(
            installation=installation, manifest=manifest, requests=[broken], kind="action",
            name="broken", actor=who.actor))
    assert not result.ok and result.error.status == 500
    assert result.error.detail == (
        "the run stopped on an internal error, which was logged for the operator; "
        "try again, and tell the operator if it happens again")
    with get_database(hosted.app).sessions() as db:
        stored = db.scalars(select(Run).where(Run.id == run.id)).one()
        assert stored.status == "failed" and stored.finished_at is not None
        assert stored.error == {"type": "internal", "message": result.error.detail}
    assert f"run {run.id} (action broken) stopped on an unexpected error" in caplog.text


def test_a_run_that_fails_before_sending_counts_in_usage(hosted):
    """Credentials that cannot be had fail the run before anything is sent; the run is
    recorded, and counted, all the same."""
    class Refusing:
        can_renew = False

        def current(self, deadline, renew):
            raise NotReady.of("reconnect_required", "the provider revoked the grant")

        def renew(self, deadline):
            raise AssertionError("not reached")

    with get_database(hosted.app).sessions() as db:
        who = Principal(hosted.alice, personal_workspace(db, hosted.alice), "session:x")
        installation = installations.install(hosted.app, db, who, "open").installation
        manifest = installations.manifest_of(hosted.app, db, installation)
        result, run = run_step(hosted.app, Step(
            installation=installation, manifest=manifest, requests=manifest.actions[0].requests,
            kind="action", name="ping", actor=who.actor, keeper=Refusing()))
        assert not result.ok and run.status == "failed" and run.trace == {"requests": []}
        assert installations.usage(db, installation) == {
            "actions": [{"action": "ping", "count": 1, "lastRunAt": run.started_at.isoformat()}],
            "flows": []}
