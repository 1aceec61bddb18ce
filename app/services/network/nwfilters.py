"""An instance's firewall as the host needs it: one nwfilter per interface, with its
security groups' rules, a rule naming a source group expanded to its members' addresses."""

from __future__ import annotations

from sqlmodel import Session, col, select

from app.models import Instance, InstanceSecurityGroup, NetworkInterface
from app.models.instance import GONE_STATES
from app.models.lookups import interfaces_with_networks
from app.services.network import security_groups
from hypervisor.specs import FilterRuleSpec, FilterSpec


def filter_name(interface: NetworkInterface) -> str:
    return f"vdc-{interface.id}"


def filter_specs(session: Session, instance_id: str) -> list[tuple[NetworkInterface, FilterSpec]]:
    rules = inbound_rules(session, instance_id)
    return [
        (nic, FilterSpec(name=filter_name(nic), rules=rules, dhcp_server=network.gateway))
        for nic, network in interfaces_with_networks(session, instance_id)
    ]


def inbound_rules(session: Session, instance_id: str) -> tuple[FilterRuleSpec, ...]:
    group_ids = security_groups.group_ids_of(session, [instance_id])[instance_id]
    found: list[FilterRuleSpec] = []
    for group_id in group_ids:
        for rule in security_groups.rules_of(session, group_id):
            if rule.cidr is not None:
                sources = [rule.cidr]
            else:
                assert rule.source_group_id is not None
                sources = [f"{ip}/32" for ip in member_addresses(session, rule.source_group_id)]
            found.extend(
                FilterRuleSpec(rule.protocol, rule.from_port, rule.to_port, cidr)
                for cidr in sources
            )
    return tuple(dict.fromkeys(found))  # in order, each once


def member_addresses(session: Session, group_id: str) -> list[str]:
    """Addresses of the live members of a group (what `source: sg-...` means)."""
    rows = session.exec(
        select(NetworkInterface.ip_address)
        .join(Instance, col(Instance.id) == NetworkInterface.instance_id)
        .join(
            InstanceSecurityGroup,
            col(InstanceSecurityGroup.instance_id) == NetworkInterface.instance_id,
        )
        .where(InstanceSecurityGroup.group_id == group_id)
        .where(col(Instance.state).not_in(GONE_STATES))
        .order_by(col(NetworkInterface.ip_address))
    )
    return list(dict.fromkeys(rows))
