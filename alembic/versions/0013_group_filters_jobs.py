"""Jobs that name a security group: a change to a group's members or rules queues one
`group_filters` job for the group instead of a `filters` job for each member (a launch into
the `default` group queued one per instance of the account, every launch).

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("security_group_id", sa.String(32), nullable=True))
        batch.create_index("ix_jobs_security_group_id", ["security_group_id"])


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index("ix_jobs_security_group_id")
        batch.drop_column("security_group_id")
