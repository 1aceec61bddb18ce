"""Security groups through the API on SQLite and PostgreSQL: groups and rules (both forms),
every refusal, membership at launch and at run time, and the firewall each interface gets.

libvirt's test driver has no network filter driver, so here the filters are checked as vdc
computes them (app/services/network/nwfilters.py) and through the jobs that apply them; real
enforcement on real guests is tests/e2e/test_security_groups_e2e.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlmodel import Session

from app.models.instance import InstanceState
from app.services.compute import instances
from app.services.network import nwfilters
from hypervisor.specs import FilterRuleSpec
from metadata.app import create_metadata_app
from tests.conftest import Keys, bearer
from tests.integration.cloud import Cloud, build_cloud

API = "/api/v1/security_groups"


@pytest.fixture
def cloud(client: TestClient, keys: Keys, test_host_uri, make_disk: Callable[..., Path]) -> Cloud:  # type: ignore[no-untyped-def]
    return build_cloud(client, keys, test_host_uri(), make_disk)


def groups(cloud: Cloud, key: str) -> dict[str, dict[str, Any]]:
    response = cloud.client.get(API, headers=bearer(key))
    assert response.status_code == 200, response.text
    return {g["name"]: g for g in response.json()["items"]}


def create(cloud: Cloud, key: str, **body: Any) -> dict[str, Any]:
    response = cloud.client.post(API, json=body, headers=bearer(key))
    assert response.status_code == 201, response.text
    return dict(response.json())


def rules_of(engine: sa.Engine, instance_id: str) -> set[FilterRuleSpec]:
    """What the instance's filter lets in: a rule from a group as one rule per member
    address (the filter matches the host's set of them, which holds these)."""
    with Session(engine) as session:
        specs = nwfilters.filter_specs(session, instance_id)
        assert len(specs) == 1
        spec = specs[0][1]
        sets = nwfilters.member_sets(session, [spec])
    return {
        replace(rule, cidr=f"{address}/32", source_group=None)
        for rule in spec.rules
        if rule.source_group is not None
        for address in sets[rule.source_group]
    } | {rule for rule in spec.rules if rule.source_group is None}


def filter_rules(engine: sa.Engine, instance_id: str) -> set[FilterRuleSpec]:
    """The rules of the instance's filter itself."""
    with Session(engine) as session:
        ((_, spec),) = nwfilters.filter_specs(session, instance_id)
    return set(spec.rules)


def filter_jobs_done(
    engine: sa.Engine, instance_id: str, at_least: int, timeout: float = 10
) -> None:
    """Until at least `at_least` jobs that rebuild the instance's filters are done and none
    is queued or running: its own `filters` jobs, and the `group_filters` jobs of its
    groups (one per group change, not one per member)."""
    covering = sa.text(
        "SELECT state FROM jobs WHERE (instance_id = :i AND kind = 'filters') OR "
        "(kind = 'group_filters' AND security_group_id IN "
        "(SELECT group_id FROM instance_security_groups WHERE instance_id = :i))"
    )
    deadline = time.monotonic() + timeout
    while True:
        with engine.connect() as connection:
            states = connection.execute(covering, {"i": instance_id}).scalars().all()
        done = len([s for s in states if s == "done"])
        if done >= at_least and not {"queued", "running"} & set(states):
            return
        assert time.monotonic() < deadline, f"filters jobs of {instance_id}: {states}"
        time.sleep(0.05)


class TestGroups:
    def test_every_account_has_a_default_group_of_its_members(self, cloud: Cloud) -> None:
        alice = cloud.keys.new("alice")
        default = groups(cloud, alice)["default"]
        assert default["id"].startswith("sg-")
        assert default["rules_text"] == f"any:-1,-1,{default['id']}\n"
        assert default["rules"] == [
            {
                "protocol": "any",
                "from_port": -1,
                "to_port": -1,
                "cidr": None,
                "source_group_id": default["id"],
            }
        ]
        assert groups(cloud, alice)["default"]["id"] == default["id"]  # made once

    def test_rules_in_both_forms_round_trip(self, cloud: Cloud) -> None:
        alice = cloud.keys.new("alice")
        text = (
            "tcp:22,22,ip4:0.0.0.0/0\n# ping\nicmp:-1,-1,ip4:10.0.0.0/8\nudp:53,53,ip4:10.1.2.3\n"
        )
        web = create(cloud, alice, name="web", description="the web tier", rules_text=text)
        assert web["rules_text"] == (
            "tcp:22,22,ip4:0.0.0.0/0\nicmp:-1,-1,ip4:10.0.0.0/8\nudp:53,53,ip4:10.1.2.3/32\n"
        )
        app = create(
            cloud,
            alice,
            name="app",
            rules=[
                {
                    "protocol": "tcp",
                    "from_port": 8000,
                    "to_port": 8080,
                    "source_group_id": web["id"],
                },
                {"protocol": "icmp", "from_port": 8, "to_port": 0, "cidr": "192.168.0.0/16"},
            ],
        )
        assert app["rules_text"] == (f"tcp:8000,8080,{web['id']}\nicmp:8,0,ip4:192.168.0.0/16\n")
        changed = cloud.client.patch(
            f"{API}/{app['id']}",
            json={"rules_text": "any:,,ip4:172.16.0.0/12"},
            headers=bearer(alice),
        )
        assert changed.status_code == 200, changed.text
        assert changed.json()["rules_text"] == "any:-1,-1,ip4:172.16.0.0/12\n"
        renamed = cloud.client.patch(
            f"{API}/{app['id']}", json={"name": "backend"}, headers=bearer(alice)
        ).json()
        assert (
            renamed["name"] == "backend" and renamed["rules_text"] == changed.json()["rules_text"]
        )
        assert sorted(groups(cloud, alice)) == ["backend", "default", "web"]

    @pytest.mark.parametrize(
        ("body", "status", "words"),
        [
            ({"rules_text": "tcp:22,99999,ip4:0.0.0.0/0"}, 400, "line 1"),
            ({"rules_text": "tcp:0,22,ip4:0.0.0.0/0"}, 400, "out of range 1-65535"),
            ({"rules_text": "x\ntcp:22"}, 400, "line 1 ('x')"),
            ({"rules_text": "tcp:22,22,ip4:10.0.0.1/8"}, 400, "host bits set"),
            ({"rules_text": "icmp:300,0,ip4:0.0.0.0/0"}, 400, "icmp type 300"),
            ({"rules": [{"protocol": "tcp", "from_port": 22, "to_port": 22}]}, 400, "one source"),
            (
                {
                    "rules": [
                        {"protocol": "tcp", "from_port": 80, "to_port": 22, "cidr": "0.0.0.0/0"}
                    ]
                },
                400,
                "rule 1: port range 80-22 runs backwards",
            ),
            ({"rules": [{"protocol": "gre", "cidr": "0.0.0.0/0"}]}, 422, "protocol"),
            ({"rules": [], "rules_text": ""}, 422, "not both"),
            ({"rules_text": "tcp:22,22,sg-nothere1"}, 400, "source group(s) sg-nothere1 not found"),
            ({"name": ""}, 422, "name"),
            ({"name": "default"}, 409, "already has a security group named 'default'"),
        ],
    )
    def test_bad_groups_are_refused_with_a_reason(
        self, cloud: Cloud, body: dict[str, Any], status: int, words: str
    ) -> None:
        alice = cloud.keys.new("alice")
        groups(cloud, alice)  # the default group exists
        response = cloud.client.post(API, json={"name": "g", **body}, headers=bearer(alice))
        assert response.status_code == status, response.text
        assert words in response.text
        assert sorted(groups(cloud, alice)) == ["default"]

    def test_a_source_group_of_another_account_is_refused(self, cloud: Cloud) -> None:
        alice, bob = cloud.keys.new("alice"), cloud.keys.new("bob")
        bobs = groups(cloud, bob)["default"]["id"]
        refused = cloud.client.post(
            API,
            json={"name": "g", "rules_text": f"tcp:22,22,{bobs}"},
            headers=bearer(alice),
        )
        assert refused.status_code == 400 and f"{bobs} not found" in refused.text

    def test_what_cannot_be_deleted(self, cloud: Cloud) -> None:
        alice = cloud.keys.new("alice")
        default = groups(cloud, alice)["default"]
        web = create(cloud, alice, name="web")
        create(cloud, alice, name="app", rules_text=f"tcp:80,80,{web['id']}")
        refused = cloud.client.delete(f"{API}/{default['id']}", headers=bearer(alice))
        assert refused.status_code == 409 and "default group cannot be deleted" in refused.text
        refused = cloud.client.delete(f"{API}/{web['id']}", headers=bearer(alice))
        assert refused.status_code == 409 and "source of a rule" in refused.text
        lone = create(cloud, alice, name="lone")
        instance = cloud.launch(alice, security_group_ids=[lone["id"]])
        refused = cloud.client.delete(f"{API}/{lone['id']}", headers=bearer(alice))
        assert refused.status_code == 409 and instance["id"] in refused.text
        cloud.wait_for(instance["id"], "running", key=alice)
        cloud.client.delete(f"/api/v1/instances/{instance['id']}", headers=bearer(alice))
        cloud.wait_for(instance["id"], "terminated", key=alice)
        assert cloud.client.delete(f"{API}/{lone['id']}", headers=bearer(alice)).status_code == 204
        assert cloud.client.get(f"{API}/{lone['id']}", headers=bearer(alice)).status_code == 404

    def test_another_accounts_group_is_not_found(self, cloud: Cloud) -> None:
        alice, bob = cloud.keys.new("alice"), cloud.keys.new("bob")
        web = create(cloud, alice, name="web", rules_text="tcp:22,22,ip4:0.0.0.0/0")
        for response in (
            cloud.client.get(f"{API}/{web['id']}", headers=bearer(bob)),
            cloud.client.patch(f"{API}/{web['id']}", json={"name": "x"}, headers=bearer(bob)),
            cloud.client.delete(f"{API}/{web['id']}", headers=bearer(bob)),
        ):
            assert response.status_code == 404, response.text
        assert sorted(groups(cloud, bob)) == ["default"]
        refused = cloud.client.post(
            "/api/v1/instances",
            json={
                "image_id": cloud.image_id,
                "instance_type": "nano",
                "security_group_ids": [web["id"]],
            },
            headers=bearer(bob),
        )
        assert refused.status_code == 400 and f"{web['id']} not found" in refused.text
        after = cloud.client.get(f"{API}/{web['id']}", headers=bearer(alice)).json()
        assert (after["name"], after["rules_text"]) == ("web", "tcp:22,22,ip4:0.0.0.0/0\n")


class TestMembershipAndFilters:
    def test_a_gone_instance_stops_counting_as_a_member_and_one_forced_back_counts_again(
        self, cloud: Cloud, engine: sa.Engine
    ) -> None:
        alice = cloud.keys.new("alice")
        instance_id = cloud.wait_for(cloud.launch(alice)["id"], "running", key=alice)["id"]
        default = groups(cloud, alice)["default"]
        assert default["instance_ids"] == [instance_id]

        def marked_live() -> bool:
            with engine.connect() as connection:
                return bool(
                    connection.execute(
                        sa.text("SELECT live FROM instance_security_groups WHERE instance_id = :i"),
                        {"i": instance_id},
                    ).scalar_one()
                )

        assert marked_live()
        cloud.client.delete(f"/api/v1/instances/{instance_id}", headers=bearer(alice))
        gone = cloud.wait_for(instance_id, "terminated", key=alice)
        assert gone["security_group_ids"] == [default["id"]]  # still listed on the instance
        assert groups(cloud, alice)["default"]["instance_ids"] == []
        assert not marked_live()  # what a launch's look at the group's members skips

        # An operator finds it alive after all: a member again, to its group and its rules.
        with Session(engine) as session:
            instances.force_state(session, instance_id, InstanceState.running, "found alive")
        assert marked_live()
        assert groups(cloud, alice)["default"]["instance_ids"] == [instance_id]

    def test_default_group_members_admit_each_other_and_nothing_else(
        self, cloud: Cloud, engine: sa.Engine
    ) -> None:
        alice = cloud.keys.new("alice")
        first = cloud.wait_for(cloud.launch(alice)["id"], "running", key=alice)
        default = groups(cloud, alice)["default"]
        assert first["security_group_ids"] == [default["id"]]
        second = cloud.wait_for(cloud.launch(alice)["id"], "running", key=alice)
        both = {
            FilterRuleSpec("any", -1, -1, f"{first['ip_address']}/32"),
            FilterRuleSpec("any", -1, -1, f"{second['ip_address']}/32"),
        }
        assert rules_of(engine, second["id"]) == both
        # The first instance's set of members holds the second once its group's job ran;
        # its filter itself names the group, so it stays as it was.
        filter_jobs_done(engine, first["id"], at_least=1)
        assert rules_of(engine, first["id"]) == both
        for member in (first, second):
            assert filter_rules(engine, member["id"]) == {
                FilterRuleSpec("any", -1, -1, source_group=default["id"])
            }
        # Another account's instance is no member of alice's default group.
        bob = cloud.keys.new("bob")
        stranger = cloud.wait_for(cloud.launch(bob)["id"], "running", key=bob)
        assert rules_of(engine, first["id"]) == both
        assert rules_of(engine, stranger["id"]) == {
            FilterRuleSpec("any", -1, -1, f"{stranger['ip_address']}/32")
        }
        # A terminated member's address is taken out of the others' sets.
        cloud.client.delete(f"/api/v1/instances/{second['id']}", headers=bearer(alice))
        cloud.wait_for(second["id"], "terminated", key=alice)
        filter_jobs_done(engine, first["id"], at_least=2)
        assert rules_of(engine, first["id"]) == {
            FilterRuleSpec("any", -1, -1, f"{first['ip_address']}/32")
        }

    def test_rule_and_membership_changes_reach_running_members(
        self, cloud: Cloud, engine: sa.Engine, guest
    ) -> None:  # type: ignore[no-untyped-def]
        alice = cloud.keys.new("alice")
        members = create(cloud, alice, name="members")
        server = create(cloud, alice, name="server", rules_text=f"tcp:8080,8080,{members['id']}")
        a = cloud.launch(alice, security_group_ids=[server["id"]])
        b = cloud.launch(alice, security_group_ids=[members["id"]])
        c = cloud.launch(alice, security_group_ids=[])
        for instance in (a, b, c):
            cloud.wait_for(instance["id"], "running", key=alice)
        assert cloud.show(c["id"], alice)["security_group_ids"] == []
        assert rules_of(engine, c["id"]) == set()  # nothing comes in at all
        filter_jobs_done(engine, a["id"], at_least=0)
        assert rules_of(engine, a["id"]) == {
            FilterRuleSpec("tcp", 8080, 8080, f"{b['ip_address']}/32")
        }

        # c joins "members": a's filter (its set of members) now admits c too.
        joined = cloud.client.patch(
            f"/api/v1/instances/{c['id']}",
            json={"security_group_ids": [members["id"]]},
            headers=bearer(alice),
        )
        assert joined.status_code == 200 and joined.json()["security_group_ids"] == [members["id"]]
        filter_jobs_done(engine, a["id"], at_least=1)
        assert rules_of(engine, a["id"]) == {
            FilterRuleSpec("tcp", 8080, 8080, f"{b['ip_address']}/32"),
            FilterRuleSpec("tcp", 8080, 8080, f"{c['ip_address']}/32"),
        }
        # A rule added at run time reaches the running member.
        cloud.client.patch(
            f"{API}/{server['id']}",
            json={"rules_text": f"tcp:8080,8080,{members['id']}\nicmp:-1,-1,ip4:0.0.0.0/0"},
            headers=bearer(alice),
        )
        filter_jobs_done(engine, a["id"], at_least=2)
        assert FilterRuleSpec("icmp", -1, -1, "0.0.0.0/0") in rules_of(engine, a["id"])
        assert cloud.show(a["id"], alice)["state"] == "running"  # no restart
        # The metadata shows the groups' names.
        me = guest(cloud.show(a["id"], alice)["ip_address"])
        assert me.get("/latest/meta-data/security-groups").text == "server"

        refused = cloud.client.patch(
            f"/api/v1/instances/{c['id']}",
            json={"security_group_ids": ["sg-nothere1"]},
            headers=bearer(alice),
        )
        assert refused.status_code == 400 and "sg-nothere1 not found" in refused.text
        assert cloud.show(c["id"], alice)["security_group_ids"] == [members["id"]]


@pytest.fixture
def guest(engine: sa.Engine):  # type: ignore[no-untyped-def]
    app = create_metadata_app(engine, "vdc-1", token_secret="t" * 32)

    def make(ip: str) -> TestClient:
        return TestClient(app, base_url="http://10.10.0.1:8775", client=(ip, 40000))

    return make
