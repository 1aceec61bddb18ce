"""An instance's firewall as the host needs it: one nwfilter per interface, with its
security groups' rules. A rule of any protocol from a source group matches the host's set
of that group's member addresses (hypervisor/member_sets.py), which changes without the
filters; a tcp, udp or icmp rule from a group lists the members' addresses."""

from __future__ import annotations

from collections.abc import Iterable

from sqlmodel import Session, col, select

from app.models import Instance, InstanceSecurityGroup, NetworkInterface, SecurityGroupRule
from app.models.instance import GONE_STATES, InstanceState
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
    """Groups' rules with their source groups resolved, each read once per reading."""

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
                ports = (rule.protocol, rule.from_port, rule.to_port)
                if rule.cidr is not None:
                    found.append(FilterRuleSpec(*ports, cidr=rule.cidr))
                elif rule.protocol == "any":  # the host's set of the members' addresses
                    found.append(FilterRuleSpec(*ports, source_group=rule.source_group_id))
                else:
                    # libvirt (9.0) takes a set on `all` rules only: it drops one on a tcp,
                    # udp or icmp rule without a word, which would then admit every source.
                    # Those rules list the members' addresses, and change with them.
                    assert rule.source_group_id is not None
                    found.extend(
                        FilterRuleSpec(*ports, cidr=f"{address}/32")
                        for address in self._members(rule.source_group_id)
                    )
        return tuple(dict.fromkeys(found))  # in order, each once

    def _members(self, group_id: str) -> list[str]:
        if group_id not in self._addresses:
            self._addresses[group_id] = member_addresses(self._session, group_id)
        return self._addresses[group_id]


def member_sets(session: Session, specs: Iterable[FilterSpec]) -> dict[str, list[str]]:
    """The member sets that the filters match (group id -> its members' addresses): the
    host must hold them before a filter naming one is instantiated."""
    groups = {rule.source_group for spec in specs for rule in spec.rules if rule.source_group}
    return {group_id: member_addresses(session, group_id) for group_id in sorted(groups)}


def source_groups_on(
    session: Session, host_id: str, states: Iterable[InstanceState] | None = None
) -> list[str]:
    """The groups whose member sets the filters on the host match: the sources named by the
    `any` rules (those that match a set, see _Rules) of the groups its live instances (in
    one of `states`, if given) are in."""
    groups_here = (
        select(InstanceSecurityGroup.group_id)
        .join(Instance, col(Instance.id) == InstanceSecurityGroup.instance_id)
        .where(Instance.host_node_id == host_id, col(InstanceSecurityGroup.live))
        .where(col(Instance.state).not_in(GONE_STATES))
    )
    if states is not None:
        groups_here = groups_here.where(col(Instance.state).in_(list(states)))
    named = (
        select(SecurityGroupRule.source_group_id)
        .where(col(SecurityGroupRule.group_id).in_(groups_here))
        .where(col(SecurityGroupRule.source_group_id).is_not(None))
        .where(SecurityGroupRule.protocol == "any")
        .distinct()
    )
    return sorted(group for group in session.exec(named) if group is not None)


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
