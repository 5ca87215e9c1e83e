"""The migrations produce exactly the models' schema, on SQLite and PostgreSQL."""

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from host import migrations
from host.db import Base, make_engine, new_id


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
