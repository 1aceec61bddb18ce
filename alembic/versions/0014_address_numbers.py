"""Each lease's address also as an integer, indexed with its network: a launch finds its
address from the highest one in use (one index step), where it read every address of the
network (22 ms a launch at 20,000 in use).

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-30
"""

import socket
from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BATCH = 1000


def upgrade() -> None:
    op.add_column("network_interfaces", sa.Column("ip_number", sa.BigInteger(), nullable=True))
    connection = op.get_bind()
    rows = connection.execute(sa.text("SELECT id, ip_address FROM network_interfaces")).all()
    update = sa.text("UPDATE network_interfaces SET ip_number = :number WHERE id = :id")
    for first in range(0, len(rows), _BATCH):
        connection.execute(
            update,
            [
                # The same as app.services.network.addresses.address_number, which a
                # migration must not import (the code moves on, a migration stays).
                {"id": id_, "number": int.from_bytes(socket.inet_aton(address), "big")}
                for id_, address in rows[first : first + _BATCH]
            ],
        )
    with op.batch_alter_table("network_interfaces") as batch:
        batch.alter_column("ip_number", existing_type=sa.BigInteger(), nullable=False)
        batch.create_index("ix_network_interfaces_network_number", ["network_id", "ip_number"])


def downgrade() -> None:
    with op.batch_alter_table("network_interfaces") as batch:
        batch.drop_index("ix_network_interfaces_network_number")
        batch.drop_column("ip_number")
