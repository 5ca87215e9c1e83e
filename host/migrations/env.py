"""Alembic environment: runs with the engine handed over by host.migrations."""

from alembic import context

from host.db import Base, UTCDateTime


def render_item(kind, obj, autogen_context):  # noqa: ANN001, ANN201 - Alembic's hook
    """Write the host's UTC wrapper as a plain DateTime, so revisions never import
    the models (a later change to them must not rewrite history)."""
    if kind == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


engine = context.config.attributes["engine"]

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        render_item=render_item,
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
