"""Inbound events and event triggers (FLOWS.md §4, §5): the events received, the runs
they started, each flow's event triggers, and an installation's webhook secret.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 22:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

TIME = sa.DateTime(timezone=True)
ID = sa.String(length=32)


def _fk(table: str, column: str, target: str, ondelete: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column], [f"{target}.id"], name=op.f(f"fk_{table}_{column}_{target}"),
        ondelete=ondelete)


def upgrade() -> None:
    with op.batch_alter_table("installation", schema=None) as batch_op:
        batch_op.add_column(sa.Column("webhook_secret", sa.LargeBinary(), nullable=True))
    op.create_table(
        "flow_event_trigger",
        sa.Column("id", ID, nullable=False),
        sa.Column("flow_id", ID, nullable=False),
        sa.Column("workspace_id", ID, nullable=False),
        sa.Column("trigger", sa.Integer(), nullable=False),
        sa.Column("connection", sa.String(length=64), nullable=True),
        sa.Column("event", sa.String(length=200), nullable=False),
        _fk("flow_event_trigger", "flow_id", "flow", "CASCADE"),
        _fk("flow_event_trigger", "workspace_id", "workspace", "CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_flow_event_trigger")),
        sa.UniqueConstraint("flow_id", "trigger", name=op.f("uq_flow_event_trigger_flow_id")),
    )
    op.create_index("ix_flow_event_trigger_workspace_id_event", "flow_event_trigger",
                    ["workspace_id", "event"])
    op.create_table(
        "inbound_event",
        sa.Column("id", ID, nullable=False),
        sa.Column("workspace_id", ID, nullable=False),
        sa.Column("installation_id", ID, nullable=True),
        sa.Column("source", sa.String(length=40), nullable=False),
        sa.Column("type", sa.String(length=200), nullable=False),
        sa.Column("delivery_id", sa.String(length=255), nullable=True),
        sa.Column("received_at", TIME, nullable=False),
        sa.Column("verified", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("data", sa.JSON(), nullable=True),
        sa.Column("size", sa.Integer(), nullable=False),
        _fk("inbound_event", "installation_id", "installation", "SET NULL"),
        _fk("inbound_event", "workspace_id", "workspace", "CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbound_event")),
        sa.UniqueConstraint("workspace_id", "source", "delivery_id",
                            name=op.f("uq_inbound_event_workspace_id")),
    )
    op.create_index("ix_inbound_event_workspace_id_id", "inbound_event", ["workspace_id", "id"])
    op.create_index("ix_inbound_event_status_received_at", "inbound_event",
                    ["status", "received_at"])
    op.create_index("ix_inbound_event_installation_id", "inbound_event", ["installation_id"])
    op.create_table(
        "event_run",
        sa.Column("id", ID, nullable=False),
        sa.Column("event_id", ID, nullable=False),
        sa.Column("flow_id", ID, nullable=False),
        sa.Column("trigger", sa.Integer(), nullable=False),
        sa.Column("flow_run_id", ID, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        _fk("event_run", "event_id", "inbound_event", "CASCADE"),
        _fk("event_run", "flow_id", "flow", "CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_run")),
        sa.UniqueConstraint("event_id", "flow_id", "trigger", name=op.f("uq_event_run_event_id")),
    )


def downgrade() -> None:
    op.drop_table("event_run")
    op.drop_index("ix_inbound_event_installation_id", table_name="inbound_event")
    op.drop_index("ix_inbound_event_status_received_at", table_name="inbound_event")
    op.drop_index("ix_inbound_event_workspace_id_id", table_name="inbound_event")
    op.drop_table("inbound_event")
    op.drop_index("ix_flow_event_trigger_workspace_id_event", table_name="flow_event_trigger")
    op.drop_table("flow_event_trigger")
    with op.batch_alter_table("installation", schema=None) as batch_op:
        batch_op.drop_column("webhook_secret")
