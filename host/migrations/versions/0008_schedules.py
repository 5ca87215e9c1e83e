"""Schedule triggers: each schedule's next tick, and the ticks handled (FLOWS.md §4).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 21:40:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
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
        "flow_schedule",
        sa.Column("id", ID, nullable=False),
        sa.Column("flow_id", ID, nullable=False),
        sa.Column("trigger", sa.Integer(), nullable=False),
        sa.Column("cron", sa.String(length=200), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("next_fire_at", TIME, nullable=False),
        sa.Column("last_run_id", ID, nullable=True),
        _fk("flow_schedule", "flow_id", "flow", "CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_flow_schedule")),
        sa.UniqueConstraint("flow_id", "trigger", name=op.f("uq_flow_schedule_flow_id")),
    )
    op.create_index("ix_flow_schedule_next_fire_at", "flow_schedule", ["next_fire_at"])
    op.create_table(
        "schedule_tick",
        sa.Column("id", ID, nullable=False),
        sa.Column("flow_id", ID, nullable=False),
        sa.Column("trigger", sa.Integer(), nullable=False),
        sa.Column("fire_at", TIME, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("flow_run_id", ID, nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        _fk("schedule_tick", "flow_id", "flow", "CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_schedule_tick")),
        sa.UniqueConstraint("flow_id", "trigger", "fire_at",
                            name=op.f("uq_schedule_tick_flow_id")),
    )


def downgrade() -> None:
    op.drop_table("schedule_tick")
    op.drop_index("ix_flow_schedule_next_fire_at", table_name="flow_schedule")
    op.drop_table("flow_schedule")
