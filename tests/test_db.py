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
