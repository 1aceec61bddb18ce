"""Indexes for lists at scale: instances by account, by account and state, by state and
all of them, each in created_at order, so a page is read in order instead of sorting the table.

The single-column indexes on instances.account_id and instances.state are replaced: the new
ones start with those columns and serve the same lookups.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = {
    "ix_instances_account_created": ["account_id", "created_at", "id"],
    "ix_instances_account_state_created": ["account_id", "state", "created_at", "id"],
    "ix_instances_state_created": ["state", "created_at", "id"],
    "ix_instances_created": ["created_at", "id"],
}


def upgrade() -> None:
    for name, columns in INDEXES.items():
        op.create_index(name, "instances", columns)
    op.drop_index("ix_instances_account_id", table_name="instances")
    op.drop_index("ix_instances_state", table_name="instances")


def downgrade() -> None:
    op.create_index("ix_instances_state", "instances", ["state"])
    op.create_index("ix_instances_account_id", "instances", ["account_id"])
    for name in reversed(INDEXES):
        op.drop_index(name, table_name="instances")
