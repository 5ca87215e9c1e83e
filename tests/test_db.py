"""The migrations produce exactly the models' schema, on SQLite and PostgreSQL."""

from datetime import UTC, datetime

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import bindparam, inspect, select, text
from sqlalchemy.orm import Session

from host import migrations
from host.db import ActionUsage, Base, UTCDateTime, make_engine, new_id

AT = datetime(2026, 12, 1, tzinfo=UTC)


def typed(sql):
    """``sql`` with its ``:at`` stored as the models store times."""
    return text(sql).bindparams(bindparam("at", type_=UTCDateTime()))


def test_migrations_match_the_models(database_url):
    engine = make_engine(database_url)
    try:
        migrations.upgrade(engine)
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
        tables = set(inspect(engine).get_table_names()) - {"alembic_version"}
        assert tables == set(Base.metadata.tables)
        migrations.upgrade(engine)  # a second run changes nothing
        assert migrations.current(engine) == migrations.head()
    finally:
        engine.dispose()


def test_ids_sort_by_creation_time():
    first = new_id("run")
    later = [new_id("run") for _ in range(50)]
    assert first.startswith("run_") and len(first) == 30
    assert all(item[:14] >= first[:14] for item in later)
    assert len(set(later)) == 50


def test_a_pooled_connection_dropped_while_idle_is_replaced(postgres_url, monkeypatch):
    """The server ends every connection (a restart, a proxy's idle timeout): the next
    checkout of a connection idle past the threshold pings it, finds it gone and
    takes a new one, so the caller never sees the dead connection."""
    from sqlalchemy import create_engine, text

    from host import db as db_module

    engine = make_engine(postgres_url)
    with engine.connect() as connection:
        backend = connection.execute(text("SELECT pg_backend_pid()")).scalar()
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        assert connection.execute(text("SELECT pg_terminate_backend(:pid)"),
                                  {"pid": backend}).scalar()
    admin.dispose()
    monkeypatch.setattr(db_module, "IDLE_BEFORE_PING", 0.0)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT pg_backend_pid()")).scalar() != backend
    engine.dispose()


def test_a_connection_back_within_seconds_is_not_pinged(postgres_url, monkeypatch):
    """The point of pinging only idle connections: a hot one costs no round trip."""
    from sqlalchemy import text

    from host import db as db_module

    engine = make_engine(postgres_url)
    pings = []
    ping = engine.dialect.do_ping
    engine.dialect.do_ping = lambda connection: pings.append(1) or ping(connection)
    for _ in range(3):
        with engine.connect() as connection:
            connection.execute(text("SELECT 42"))
    assert pings == []
    monkeypatch.setattr(db_module, "IDLE_BEFORE_PING", 0.0)
    with engine.connect() as connection:
        connection.execute(text("SELECT 42"))
    assert pings == [1]
    engine.dispose()

def test_0005_counts_the_runs_already_recorded_and_goes_back(database_url):
    """Upgrading a database with runs fills ``action_usage`` from them: actions only,
    per installation and action, the newest start as the last run."""
    engine = make_engine(database_url)
    try:
        migrations.upgrade(engine, "0004")
        with engine.begin() as connection:
            connection.execute(typed(
                "INSERT INTO workspace (id, name, personal, created_at) "
                "VALUES ('wsp_1', 'w', false, :at)"), {"at": AT})
            for installation in ("ins_1", "ins_2"):
                connection.execute(typed(
                    "INSERT INTO installation (id, workspace_id, miniapp, miniapp_version, "
                    "status, credential_keys, metadata, config, sandbox, webhook_token, "
                    "created_at, updated_at, row_version) VALUES (:id, 'wsp_1', 'notes', "
                    "'1.0.0', 'active', '[]', '{}', '{}', false, :id, :at, :at, 0)"),
                    {"id": installation, "at": AT})
            runs = [("ins_1", "action", "send", 1), ("ins_1", "action", "send", 3),
                    ("ins_1", "action", "list", 2), ("ins_1", "source", "send", 9),
                    ("ins_2", "action", "send", 5), (None, "action", "send", 7)]
            for number, (installation, kind, name, hour) in enumerate(runs):
                connection.execute(typed(
                    "INSERT INTO run (id, workspace_id, installation_id, kind, name, status, "
                    "parameters, sandbox, started_at) VALUES (:id, 'wsp_1', :installation, "
                    ":kind, :name, 'succeeded', '{}', false, :at)"),
                    {"id": f"run_{number}", "installation": installation, "kind": kind,
                     "name": name, "at": AT.replace(hour=hour)})
        migrations.upgrade(engine)
        with Session(engine) as db:
            counted = [(u.installation_id, u.action, u.runs, u.last_run_at.hour)
                       for u in db.scalars(select(ActionUsage).order_by(
                           ActionUsage.installation_id, ActionUsage.action))]
        assert counted == [("ins_1", "list", 1, 2), ("ins_1", "send", 2, 3),
                           ("ins_2", "send", 1, 5)]
        command.downgrade(migrations.alembic_config(engine), "0004")
        assert "action_usage" not in inspect(engine).get_table_names()
        assert "ix_run_installation_id" in {i["name"] for i in inspect(engine).get_indexes("run")}
        migrations.upgrade(engine)
        assert migrations.current(engine) == migrations.head()
    finally:
        engine.dispose()
