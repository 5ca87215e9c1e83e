"""Run histories stay fast with millions of runs: an index per filter a history offers
(its columns, then ``id``, so a page is read in order and the read stops after it),
and the usage counts kept in ``action_usage``, filled here from the runs so far.

Building the indexes reads the whole ``run`` table once each; on PostgreSQL writers
wait while they are built (measured in bench/README.md: about two minutes per ten
million runs on a 2-core machine).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 14:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

INDEXES = {
    "ix_run_workspace_id_status_id": ["workspace_id", "status", "id"],
    "ix_run_workspace_id_kind_id": ["workspace_id", "kind", "id"],
    "ix_run_installation_id_id": ["installation_id", "id"],
    "ix_run_installation_id_status_id": ["installation_id", "status", "id"],
    "ix_run_installation_id_kind_id": ["installation_id", "kind", "id"],
    "ix_run_installation_id_name_id": ["installation_id", "name", "id"],
    "ix_run_installation_id_name_status_id": ["installation_id", "name", "status", "id"],
}


def upgrade() -> None:
    # (installation_id, id) serves everything the single-column index did.
    op.drop_index("ix_run_installation_id", table_name="run")
    for name, columns in INDEXES.items():
        op.create_index(name, "run", columns, unique=False)
    op.create_table(
        "action_usage",
        sa.Column("installation_id", sa.String(length=32), nullable=False),
        sa.Column("action", sa.String(length=128), nullable=False),
        sa.Column("runs", sa.BigInteger(), nullable=False),
        sa.Column("last_run_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["installation_id"], ["installation.id"],
                                name=op.f("fk_action_usage_installation_id_installation"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("installation_id", "action", name=op.f("pk_action_usage")),
    )
    op.execute(
        "INSERT INTO action_usage (installation_id, action, runs, last_run_at) "
        "SELECT installation_id, name, count(*), max(started_at) FROM run "
        "WHERE kind = 'action' AND installation_id IS NOT NULL "
        "GROUP BY installation_id, name"
    )


def downgrade() -> None:
    op.drop_table("action_usage")
    for name in INDEXES:
        op.drop_index(name, table_name="run")
    op.create_index("ix_run_installation_id", "run", ["installation_id"], unique=False)
