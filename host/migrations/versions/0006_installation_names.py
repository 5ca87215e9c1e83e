"""Installations have a name, unique among the workspace's installations, that flows
use to name a connection (FLOWS.md §1). Existing installations are named after their
mini-app, then ``-2``, ``-3``… in the order they were installed.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 16:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("installation", schema=None) as batch_op:
        batch_op.add_column(sa.Column("name", sa.String(length=64), nullable=True))
    bind = op.get_bind()
    rows = bind.execute(sa.text(
        "SELECT id, workspace_id, miniapp FROM installation WHERE deleted_at IS NULL "
        "ORDER BY created_at, id")).all()
    taken: set[tuple[str, str]] = set()
    for row in rows:
        base = row.miniapp[:56]
        name, number = base, 1
        while (row.workspace_id, name) in taken:
            number += 1
            name = f"{base}-{number}"
        taken.add((row.workspace_id, name))
        bind.execute(sa.text("UPDATE installation SET name = :name WHERE id = :id"),
                     {"name": name, "id": row.id})
    op.create_index("uq_installation_workspace_id_name", "installation",
                    ["workspace_id", "name"], unique=True,
                    sqlite_where=sa.text("deleted_at IS NULL"),
                    postgresql_where=sa.text("deleted_at IS NULL"))


def downgrade() -> None:
    op.drop_index("uq_installation_workspace_id_name", table_name="installation")
    with op.batch_alter_table("installation", schema=None) as batch_op:
        batch_op.drop_column("name")
