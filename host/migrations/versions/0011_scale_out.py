"""Scale-out (FLOWS.md §8): a pause on an installation the provider rate-limited,
when its token expires (for the refresh timer), the shared pacing of outbound
requests, and the workers that answered recently.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-08 00:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("installation", schema=None) as batch_op:
        batch_op.add_column(sa.Column("paused_until", TIME, nullable=True))
        batch_op.add_column(sa.Column("token_expires_at", TIME, nullable=True))
        batch_op.create_index("ix_installation_token_expires_at", ["token_expires_at"])
    op.create_table(
        "outbound_pace",
        sa.Column("key", sa.String(length=160), nullable=False),
        sa.Column("tat", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_outbound_pace")),
    )
    op.create_table(
        "worker",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("hostname", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("concurrency", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(length=32), nullable=False),
        sa.Column("started_at", TIME, nullable=False),
        sa.Column("seen_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_worker")),
    )
    op.create_index("ix_worker_seen_at", "worker", ["seen_at"])
    op.create_index("ix_task_run_status_holder_ready_at", "task_run",
                    ["status", "holder", "ready_at"])
    op.create_index("ix_task_run_status_lease_expires_at", "task_run",
                    ["status", "lease_expires_at"])


def downgrade() -> None:
    op.drop_index("ix_task_run_status_lease_expires_at", table_name="task_run")
    op.drop_index("ix_task_run_status_holder_ready_at", table_name="task_run")
    op.drop_index("ix_worker_seen_at", table_name="worker")
    op.drop_table("worker")
    op.drop_table("outbound_pace")
    with op.batch_alter_table("installation", schema=None) as batch_op:
        batch_op.drop_index("ix_installation_token_expires_at")
        batch_op.drop_column("token_expires_at")
        batch_op.drop_column("paused_until")
