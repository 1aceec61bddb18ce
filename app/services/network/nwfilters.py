"""An instance's firewall as the host needs it: one nwfilter per interface, with its
security groups' rules, a rule naming a source group expanded to its members' addresses."""

from __future__ import annotations

from sqlmodel import Session, col, select

from app.models import Instance, InstanceSecurityGroup, NetworkInterface
from app.models.instance import GONE_STATES
from app.models.lookups import interfaces_with_networks_of
from app.services.network import security_groups
from app.services.network.rule_text import Rule
from hypervisor.specs import FilterRuleSpec, FilterSpec

Specs = list[tuple[NetworkInterface, FilterSpec]]


def filter_name(interface: NetworkInterface) -> str:
    return f"vdc-{interface.id}"


def filter_specs(session: Session, instance_id: str) -> Specs:
    return specs_of(session, [instance_id])[instance_id]


def specs_of(session: Session, instance_ids: list[str]) -> dict[str, Specs]:
    """instance id -> its interfaces' filters, for many instances in a few queries: each
    group's rules and each source group's addresses are read once (a group's members all
    list the same addresses)."""
    groups = security_groups.group_ids_of(session, instance_ids)
    rules = _Rules(session)
    nics = interfaces_with_networks_of(session, instance_ids)
    return {
        instance_id: [
            (
                nic,
                FilterSpec(
                    name=filter_name(nic),
                    rules=rules.inbound(groups[instance_id]),
                    dhcp_server=network.gateway,
                ),
            )
            for nic, network in nics[instance_id]
        ]
        for instance_id in instance_ids
    }


class _Rules:
    """Groups' rules with their source groups expanded, each read once per reading."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._rules: dict[str, list[Rule]] = {}
        self._addresses: dict[str, list[str]] = {}

    def inbound(self, group_ids: list[str]) -> tuple[FilterRuleSpec, ...]:
        found: list[FilterRuleSpec] = []
        for group_id in group_ids:
            if group_id not in self._rules:
                self._rules[group_id] = security_groups.rules_of(self._session, group_id)
            for rule in self._rules[group_id]:
                if rule.cidr is not None:
                    sources = [rule.cidr]
                else:
                    assert rule.source_group_id is not None
                    sources = [f"{ip}/32" for ip in self._members(rule.source_group_id)]
                found.extend(
                    FilterRuleSpec(rule.protocol, rule.from_port, rule.to_port, cidr)
                    for cidr in sources
                )
        return tuple(dict.fromkeys(found))  # in order, each once

    def _members(self, group_id: str) -> list[str]:
        if group_id not in self._addresses:
            self._addresses[group_id] = member_addresses(self._session, group_id)
        return self._addresses[group_id]


def member_addresses(session: Session, group_id: str) -> list[str]:
    """Addresses of the live members of a group (what `source: sg-...` means)."""
    rows = session.exec(
        select(NetworkInterface.ip_address)
        .join(Instance, col(Instance.id) == NetworkInterface.instance_id)
        .join(
            InstanceSecurityGroup,
            col(InstanceSecurityGroup.instance_id) == NetworkInterface.instance_id,
        )
        .where(InstanceSecurityGroup.group_id == group_id, col(InstanceSecurityGroup.live))
        .where(col(Instance.state).not_in(GONE_STATES))
        .order_by(col(NetworkInterface.ip_address))
    )
    return list(dict.fromkeys(rows))
