"""Runs read their installation through a per-process cache checked against the row's
version stamp on every use: a change any process writes is seen at once."""

import pytest
from sqlalchemy import event, update

from host.db import Installation, get_database, utcnow
from host.errors import NotFound
from host.principal import Principal
from host.services import installations
from host.services.accounts import personal_workspace


@pytest.fixture()
def opened(hosted):
    with get_database(hosted.app).sessions() as db:
        who = Principal(hosted.alice, personal_workspace(db, hosted.alice), "session:x")
        installation = installations.install(hosted.app, db, who, "open").installation
    loads = []

    def count(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().startswith("SELECT installation.id"):
            loads.append(statement)

    event.listen(get_database(hosted.app).engine, "before_cursor_execute", count)
    return hosted, who, installation.id, loads


def read(hosted, who, installation_id):
    with get_database(hosted.app).sessions() as db:
        return installations.for_run(hosted.app, db, who, installation_id)


def test_an_unchanged_installation_is_loaded_once(opened):
    hosted, who, installation_id, loads = opened
    first = read(hosted, who, installation_id)
    assert all(read(hosted, who, installation_id) is first for _ in range(4))
    assert len(loads) == 1


def test_a_change_written_elsewhere_is_seen_at_once(opened):
    """Another process marks the installation for a reconnect (status and updated_at
    change, row_version does not): the next read loads it again."""
    hosted, who, installation_id, loads = opened
    assert read(hosted, who, installation_id).status == "active"
    with get_database(hosted.app).transaction() as db:
        db.execute(update(Installation).where(Installation.id == installation_id)
                   .values(status="reconnect_required", updated_at=utcnow()))
    assert read(hosted, who, installation_id).status == "reconnect_required"
    assert len(loads) == 2


def test_uninstalled_or_another_workspaces_installation_is_not_found(opened):
    hosted, who, installation_id, _ = opened
    read(hosted, who, installation_id)
    with get_database(hosted.app).sessions() as db:
        bob = Principal(hosted.bob, personal_workspace(db, hosted.bob), "session:y")
    with pytest.raises(NotFound, match=f"^no installation {installation_id}$"):
        read(hosted, bob, installation_id)
    with get_database(hosted.app).transaction() as db:
        db.execute(update(Installation).where(Installation.id == installation_id)
                   .values(deleted_at=utcnow()))
    with pytest.raises(NotFound, match=f"^no installation {installation_id}$"):
        read(hosted, who, installation_id)
