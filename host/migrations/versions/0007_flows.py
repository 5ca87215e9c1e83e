"""Flows: their versions, runs and task runs, and flow tokens (FLOWS.md §2–§4).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 16:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
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
        "flow",
        sa.Column("id", ID, nullable=False),
        sa.Column("workspace_id", ID, nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_by", ID, nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        _fk("flow", "created_by", "user", "SET NULL"),
        _fk("flow", "workspace_id", "workspace", "CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_flow")),
        sa.UniqueConstraint("workspace_id", "key", name=op.f("uq_flow_workspace_id")),
    )
    op.create_table(
        "flow_version",
        sa.Column("id", ID, nullable=False),
        sa.Column("flow_id", ID, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("created_by", ID, nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        _fk("flow_version", "created_by", "user", "SET NULL"),
        _fk("flow_version", "flow_id", "flow", "CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_flow_version")),
        sa.UniqueConstraint("flow_id", "version", name=op.f("uq_flow_version_flow_id")),
    )
    op.create_table(
        "flow_run",
        sa.Column("id", ID, nullable=False),
        sa.Column("workspace_id", ID, nullable=False),
        sa.Column("flow_id", ID, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("trigger", sa.JSON(), nullable=False),
        sa.Column("input", sa.JSON(), nullable=False),
        sa.Column("output", sa.JSON(), nullable=True),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("sandbox", sa.Boolean(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("actor_id", ID, nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("started_at", TIME, nullable=True),
        sa.Column("finished_at", TIME, nullable=True),
        sa.Column("deadline", TIME, nullable=False),
        sa.Column("scheduled_for", TIME, nullable=True),
        sa.Column("updated_at", TIME, nullable=False),
        _fk("flow_run", "actor_id", "user", "SET NULL"),
        _fk("flow_run", "flow_id", "flow", "CASCADE"),
        _fk("flow_run", "workspace_id", "workspace", "CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_flow_run")),
        sa.UniqueConstraint("flow_id", "idempotency_key", name=op.f("uq_flow_run_flow_id")),
    )
    op.create_index("ix_flow_run_workspace_id_id", "flow_run", ["workspace_id", "id"])
    op.create_index("ix_flow_run_workspace_id_status_id", "flow_run",
                    ["workspace_id", "status", "id"])
    op.create_index("ix_flow_run_flow_id_id", "flow_run", ["flow_id", "id"])
    op.create_index("ix_flow_run_flow_id_status_id", "flow_run", ["flow_id", "status", "id"])
    op.create_index("ix_flow_run_status", "flow_run", ["status"])
    op.create_table(
        "task_run",
        sa.Column("id", ID, nullable=False),
        sa.Column("flow_run_id", ID, nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("item", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("ready_at", TIME, nullable=True),
        sa.Column("started_at", TIME, nullable=True),
        sa.Column("finished_at", TIME, nullable=True),
        sa.Column("input", sa.JSON(), nullable=True),
        sa.Column("output", sa.JSON(), nullable=True),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("runs", sa.JSON(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=64), nullable=True),
        sa.Column("lease_expires_at", TIME, nullable=True),
        sa.Column("current_run", ID, nullable=True),
        _fk("task_run", "flow_run_id", "flow_run", "CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task_run")),
        sa.UniqueConstraint("flow_run_id", "key", "item",
                            name=op.f("uq_task_run_flow_run_id")),
    )
    op.create_index("ix_task_run_status_ready_at", "task_run", ["status", "ready_at"])
    with op.batch_alter_table("api_token", schema=None) as batch_op:
        batch_op.add_column(sa.Column("flow_id", ID, nullable=True))
        batch_op.create_foreign_key(op.f("fk_api_token_flow_id_flow"), "flow", ["flow_id"],
                                    ["id"], ondelete="CASCADE")


def downgrade() -> None:
    with op.batch_alter_table("api_token", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("fk_api_token_flow_id_flow"), type_="foreignkey")
        batch_op.drop_column("flow_id")
    op.drop_table("task_run")
    op.drop_table("flow_run")
    op.drop_table("flow_version")
    op.drop_table("flow")
