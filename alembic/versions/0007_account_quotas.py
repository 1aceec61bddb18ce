"""Per-account quota overrides; a null limit (or no row) means the VDC_QUOTA_* default.

Self-contained: it only adds a table next to `accounts`, so it can be renumbered after
another revision without change.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LIMITS = (
    "instances",
    "cores",
    "memory_mib",
    "volume_gib",
    "images",
    "image_gib",
    "security_groups",
    "key_pairs",
)


def upgrade() -> None:
    op.create_table(
        "account_quotas",
        sa.Column(
            "account_id",
            sa.String(32),
            sa.ForeignKey("accounts.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        *(sa.Column(name, sa.Integer, nullable=True) for name in LIMITS),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("account_quotas")
