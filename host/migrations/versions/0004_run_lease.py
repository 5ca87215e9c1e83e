"""Runs name the process that runs them and until when, so a run whose process
died is finished as interrupted instead of staying ``running``.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 23:10:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("run", schema=None) as batch_op:
        batch_op.add_column(sa.Column("holder", sa.String(length=64), nullable=True))
        batch_op.add_column(
            sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.create_index("ix_run_status", ["status"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("run", schema=None) as batch_op:
        batch_op.drop_index("ix_run_status")
        batch_op.drop_column("lease_expires_at")
        batch_op.drop_column("holder")
