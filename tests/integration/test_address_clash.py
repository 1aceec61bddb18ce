"""A launch reads its free addresses before its first write (so that on SQLite it holds
the writer slot for its writes only): an address taken in between by another process is a
clash the unique lease constraint catches, and the allocation tries again with a fresh
read, on both databases."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlmodel import Session

from app.models import Network, NetworkInterface
from app.services.network import addresses
from tests.conftest import Keys
from tests.integration.cloud import Cloud, build_cloud


@pytest.fixture
def cloud(client: TestClient, keys: Keys, test_host_uri, make_disk: Callable[..., Path]) -> Cloud:  # type: ignore[no-untyped-def]
    return build_cloud(client, keys, test_host_uri(), make_disk)


def test_a_candidate_taken_since_it_was_read_is_passed_over(
    cloud: Cloud, engine: sa.Engine
) -> None:
    first = cloud.launch()
    second = cloud.launch()
    assert (first["ip_address"], second["ip_address"]) == ("10.10.0.2", "10.10.0.3")
    with Session(engine) as session:
        network = session.get(Network, cloud.network_id)
        assert network is not None
        # Read while .2 and .3 were free, say; both are taken by the time of the write.
        stale = ["10.10.0.2", "10.10.0.3"]
        interface = addresses.allocate_interface(
            session, second["id"], network, device_index=1, candidates=stale
        )
        session.commit()
        assert interface.ip_address not in stale
        assert interface.ip_address.startswith("10.10.0.")
    with Session(engine) as session:
        stored = session.get(NetworkInterface, interface.id)
        assert stored is not None and stored.ip_address == interface.ip_address
