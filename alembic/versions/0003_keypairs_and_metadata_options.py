"""SSH key pairs; instances get a key pair and IMDS token options.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ssh_key_pairs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column(
            "account_id", sa.String(32), sa.ForeignKey("accounts.id"), nullable=False, index=True
        ),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("key_type", sa.String(32), nullable=False),
        sa.Column("public_key", sa.String(16384), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("account_id", "name", name="uq_keypair_name"),
    )
    with op.batch_alter_table("instances") as batch:
        batch.add_column(sa.Column("ssh_key_id", sa.String(32), nullable=True))
        batch.add_column(
            sa.Column("http_tokens", sa.String(16), nullable=False, server_default="optional")
        )
        batch.create_foreign_key("fk_instances_ssh_key_id", "ssh_key_pairs", ["ssh_key_id"], ["id"])


def downgrade() -> None:
    with op.batch_alter_table("instances") as batch:
        batch.drop_constraint("fk_instances_ssh_key_id", type_="foreignkey")
        batch.drop_column("http_tokens")
        batch.drop_column("ssh_key_id")
    op.drop_table("ssh_key_pairs")
