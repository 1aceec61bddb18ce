"""The operator's table of instances (`vdc-manage instance list`): a few columns of many
rows, read as plain rows.

The table shows what instances.public() shows in these columns, for the page
instances.list_instances() would give (the same filters, order and total). It builds no
ORM objects and no public views on the way: for `--all` at 10,000 instances those were
most of the command's 1.5 s (SQLite) and 1.8 s (PostgreSQL); the queries take tens of
milliseconds.
"""

from __future__ import annotations

from sqlmodel import Session, col

from app.models import Account, Instance
from app.services import access
from app.services.listing import PageRequest, page_select
from app.services.network.addresses import first_addresses

COLUMNS = ("id", "account_id", "state", "host_node_id", "ip_address", "mac_address", "hostname")
# What instances.list_instances() sorts by. Kept here, and imported there, so that this
# module stays light to import (no hypervisor layer): the command is a new process each time.
SORTABLE = ("created_at", "updated_at", "display_name", "hostname", "state", "id")
# The instance's own columns of the table, in the order the loop below unpacks them.
_OWN = [
    col(getattr(Instance, name))
    for name in ("id", "account_id", "state", "host_node_id", "hostname")
]


def table_page(
    session: Session, account: Account, page: PageRequest, **filters: object
) -> tuple[list[dict[str, object]], int]:
    """One page of rows (COLUMNS -> value) and how many instances match in all."""
    paged, counting = page_select(
        Instance, access.visible(account, Instance), page, SORTABLE, filters
    )
    total = session.scalar(counting) or 0
    rows = session.execute(paged.with_only_columns(*_OWN)).all()
    # The page's NICs found by the page's own select, not by a list of its 1,000 ids: so
    # long a list is bound and parsed again at each query (~10 ms a page on PostgreSQL).
    addresses = first_addresses(session, paged.with_only_columns(col(Instance.id)))
    missing = [row.id for row in rows if row.id not in addresses]
    if missing:  # no NIC, or an instance came into the page between the two reads
        addresses |= first_addresses(session, missing)
    table = []
    for instance_id, account_id, state, host_node_id, hostname in rows:
        ip_address, mac_address = addresses.get(instance_id, (None, None))
        table.append(
            {
                "id": instance_id,
                "account_id": account_id,
                "state": str(state),
                "host_node_id": host_node_id,
                "ip_address": ip_address,
                "mac_address": mac_address,
                "hostname": hostname,
            }
        )
    return table, int(total)
