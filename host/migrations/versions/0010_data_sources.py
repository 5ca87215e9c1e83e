"""Data sources (FLOWS.md §6): each installation's records as last seen, and each
source's sync state.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 22:10:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

TIME = sa.DateTime(timezone=True)
ID = sa.String(length=32)


def _fk(table: str, column: str, target: str, ondelete: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column], [f"{target}.id"], name=op.f(f"fk_{table}_{column}_{target}"),
        ondelete=ondelete)


def upgrade() -> None:
    op.create_table(
        "data_source_state",
        sa.Column("id", ID, nullable=False),
        sa.Column("installation_id", ID, nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("synced_at", TIME, nullable=True),
        sa.Column("next_sync_at", TIME, nullable=True),
        sa.Column("records", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        _fk("data_source_state", "installation_id", "installation", "CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_data_source_state")),
        sa.UniqueConstraint("installation_id", "source",
                            name=op.f("uq_data_source_state_installation_id")),
    )
    op.create_index("ix_data_source_state_next_sync_at", "data_source_state", ["next_sync_at"])
    op.create_table(
        "data_record",
        sa.Column("id", ID, nullable=False),
        sa.Column("installation_id", ID, nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("record_id", sa.String(length=255), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("updated_at", sa.String(length=64), nullable=True),
        sa.Column("record", sa.JSON(), nullable=False),
        sa.Column("seen_at", TIME, nullable=False),
        _fk("data_record", "installation_id", "installation", "CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_data_record")),
        sa.UniqueConstraint("installation_id", "source", "record_id",
                            name=op.f("uq_data_record_installation_id")),
    )


def downgrade() -> None:
    op.drop_table("data_record")
    op.drop_index("ix_data_source_state_next_sync_at", table_name="data_source_state")
    op.drop_table("data_source_state")
