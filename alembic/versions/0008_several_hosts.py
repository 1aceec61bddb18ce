"""Several hosts: each host's tunnel address and probed virt type, a VXLAN segment id per
network, and the copies of images on hosts.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FIRST_VNI = 1000


def upgrade() -> None:
    with op.batch_alter_table("host_nodes") as batch:
        batch.add_column(sa.Column("tunnel_ip", sa.String(39), nullable=False, server_default=""))
        batch.add_column(sa.Column("virt_type", sa.String(8), nullable=False, server_default=""))
        batch.add_column(
            sa.Column("virt_type_reason", sa.String(1024), nullable=False, server_default="")
        )
    with op.batch_alter_table("networks") as batch:
        batch.add_column(sa.Column("vni", sa.Integer(), nullable=True))
    networks = sa.table("networks", sa.column("id", sa.String), sa.column("vni", sa.Integer))
    connection = op.get_bind()
    ids = [row[0] for row in connection.execute(sa.select(networks.c.id).order_by("id"))]
    for offset, network_id in enumerate(ids):
        connection.execute(
            networks.update().where(networks.c.id == network_id).values(vni=FIRST_VNI + offset)
        )
    with op.batch_alter_table("networks") as batch:
        batch.alter_column("vni", existing_type=sa.Integer(), nullable=False)
        batch.create_unique_constraint("uq_networks_vni", ["vni"])
    for column in ("tunnel_ip", "virt_type", "virt_type_reason"):
        with op.batch_alter_table("host_nodes") as batch:
            batch.alter_column(column, server_default=None)
    op.create_table(
        "image_copies",
        sa.Column("image_id", sa.String(32), primary_key=True),
        sa.Column("host_node_id", sa.String(32), sa.ForeignKey("host_nodes.id"), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("volume", sa.String(255), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.String(1024), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("image_copies")
    with op.batch_alter_table("networks") as batch:
        batch.drop_constraint("uq_networks_vni", type_="unique")
        batch.drop_column("vni")
    with op.batch_alter_table("host_nodes") as batch:
        for column in ("virt_type_reason", "virt_type", "tunnel_ip"):
            batch.drop_column(column)
