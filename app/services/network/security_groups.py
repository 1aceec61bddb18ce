"""Security group use cases: groups and their rules, membership of instances, and which
instances' filters must be rebuilt when either changes.

A change never touches libvirt here: it is recorded, and jobs redefine the affected
interfaces' nwfilters (libvirt applies them to the running guest at once; filter_jobs.py
queues them): a `group_filters` job for a group whose rules changed, and for every group
whose rules name a group whose members changed (a rule may name a group as its source);
a `filters` job for an instance whose own groups changed.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from app.config import Settings
from app.errors import BadRequest, Conflict
from app.ids import new_id
from app.models import (
    Account,
    Instance,
    InstanceSecurityGroup,
    SecurityGroup,
    SecurityGroupRule,
)
from app.models.common import utcnow
from app.models.instance import GONE_STATES
from app.models.security_group import (
    DEFAULT_GROUP,
    RuleModel,
    SecurityGroupCreate,
    SecurityGroupPublic,
    SecurityGroupUpdate,
)
from app.services import access, inserts, quotas
from app.services.listing import PageRequest
from app.services.network import filter_jobs, rule_text
from app.services.network.rule_text import Rule, RuleError

SORTABLE = ("created_at", "updated_at", "name", "id")
MAX_GROUPS_PER_INSTANCE = 10


def list_groups(
    session: Session, account: Account, page: PageRequest, **filters: object
) -> tuple[list[SecurityGroup], int]:
    if session.get(Account, account.id) is not None:  # not vdc-manage's operator
        default_group(session, account.id)  # every account has one, from its first look
    return access.page(session, account, SecurityGroup, page, SORTABLE, filters)


def rules_of(session: Session, group_id: str) -> list[Rule]:
    rows = session.exec(
        select(SecurityGroupRule)
        .where(SecurityGroupRule.group_id == group_id)
        .order_by(col(SecurityGroupRule.position))
    )
    return [Rule(r.protocol, r.from_port, r.to_port, r.cidr, r.source_group_id) for r in rows]


def members(session: Session, group_ids: Iterable[str]) -> dict[str, list[str]]:
    """group id -> its live member instances."""
    wanted = list(group_ids)
    found: dict[str, list[str]] = {g: [] for g in wanted}
    rows = session.exec(
        select(InstanceSecurityGroup.group_id, Instance.id)
        .join(Instance, col(Instance.id) == InstanceSecurityGroup.instance_id)
        .where(col(InstanceSecurityGroup.group_id).in_(wanted), col(InstanceSecurityGroup.live))
        .where(col(Instance.state).not_in(GONE_STATES))
        .order_by(col(Instance.id))
    )
    for group_id, instance_id in rows:
        found[group_id].append(instance_id)
    return found


def public(session: Session, groups: list[SecurityGroup]) -> list[SecurityGroupPublic]:
    live = members(session, [g.id for g in groups])
    result = []
    for group in groups:
        rules = rules_of(session, group.id)
        result.append(
            SecurityGroupPublic(
                **group.model_dump(),
                rules=[RuleModel(**vars(rule)) for rule in rules],
                rules_text=rule_text.render(rules),
                instance_ids=live[group.id],
            )
        )
    return result


# --- the default group ---------------------------------------------------------------------


def default_group(session: Session, account_id: str) -> SecurityGroup:
    """The account's `default` group, made on first need: members may reach each other on
    anything, nothing else comes in."""
    statement = select(SecurityGroup).where(
        SecurityGroup.account_id == account_id, SecurityGroup.name == DEFAULT_GROUP
    )
    found = session.exec(statement).first()
    if found is not None:
        return found
    group = SecurityGroup(
        id=new_id("security_group"),
        account_id=account_id,
        name=DEFAULT_GROUP,
        description="Members reach each other; nothing else comes in",
    )
    savepoint = session.begin_nested()
    try:
        session.add(group)
        session.flush()
        session.add(
            SecurityGroupRule(
                group_id=group.id,
                position=0,
                protocol="any",
                from_port=-1,
                to_port=-1,
                source_group_id=group.id,
            )
        )
        session.flush()
    except IntegrityError:  # a concurrent request made it first
        savepoint.rollback()
        return session.exec(statement).one()
    savepoint.commit()
    return group


# --- create, update, delete ----------------------------------------------------------------


def create_group(
    session: Session, settings: Settings, account: Account, body: SecurityGroupCreate
) -> SecurityGroup:
    _name_is_free(session, account.id, body.name)
    group = SecurityGroup(
        id=new_id("security_group"),
        account_id=account.id,
        name=body.name,
        description=body.description,
    )
    rules = _rules_from(session, group, body.rules, body.rules_text) or []
    quotas.check(session, settings, account.id, security_groups=1)
    session.add(group)
    session.flush()
    _store_rules(session, group.id, rules)
    session.commit()
    return group


def update_group(
    session: Session, account: Account, group_id: str, body: SecurityGroupUpdate
) -> SecurityGroup:
    """Renames and/or replaces the rules; members' filters follow within seconds."""
    group = access.get(session, account, SecurityGroup, group_id)
    if body.name is not None and body.name != group.name:
        if group.name == DEFAULT_GROUP:
            raise Conflict("the default group cannot be renamed")
        _name_is_free(session, group.account_id, body.name)
        group.name = body.name
    if body.description is not None:
        group.description = body.description
    rules = _rules_from(session, group, body.rules, body.rules_text)
    if rules is not None:
        for row in session.exec(
            select(SecurityGroupRule).where(SecurityGroupRule.group_id == group.id)
        ):
            session.delete(row)
        session.flush()
        _store_rules(session, group.id, rules)
        filter_jobs.refresh_group_filters(session, [group.id])
    group.updated_at = utcnow()
    session.add(group)
    session.commit()
    return group


def delete_group(session: Session, account: Account, group_id: str) -> None:
    group = access.get(session, account, SecurityGroup, group_id)
    if group.name == DEFAULT_GROUP:
        raise Conflict("the default group cannot be deleted")
    using = members(session, [group.id])[group.id]
    if using:
        raise Conflict(f"security group {group.id} is in use by instance(s) {', '.join(using)}")
    naming = session.exec(
        select(SecurityGroupRule.group_id)
        .where(SecurityGroupRule.source_group_id == group.id)
        .where(SecurityGroupRule.group_id != group.id)
    ).first()
    if naming is not None:
        raise Conflict(f"security group {group.id} is the source of a rule of group {naming}")
    for link in session.exec(
        select(InstanceSecurityGroup).where(InstanceSecurityGroup.group_id == group.id)
    ):
        session.delete(link)  # terminated instances' memberships
    for row in session.exec(
        select(SecurityGroupRule).where(SecurityGroupRule.group_id == group.id)
    ):
        session.delete(row)
    session.flush()
    session.delete(group)
    session.commit()


# --- membership ----------------------------------------------------------------------------


def groups_for_launch(
    session: Session, account_id: str, group_ids: list[str] | None
) -> list[SecurityGroup]:
    if group_ids is None:
        return [default_group(session, account_id)]
    return _own_groups(session, account_id, group_ids)


def join(session: Session, instance_id: str, groups: list[SecurityGroup]) -> None:
    inserts.insert(
        session, *(InstanceSecurityGroup(instance_id=instance_id, group_id=g.id) for g in groups)
    )


def group_ids_of(session: Session, instance_ids: list[str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {i: [] for i in instance_ids}
    rows = session.exec(
        select(InstanceSecurityGroup.instance_id, InstanceSecurityGroup.group_id)
        .where(col(InstanceSecurityGroup.instance_id).in_(instance_ids))
        .order_by(col(InstanceSecurityGroup.group_id))
    )
    for instance_id, group_id in rows:
        found[instance_id].append(group_id)
    return found


def set_instance_groups(session: Session, instance: Instance, group_ids: list[str]) -> None:
    """Replaces the instance's groups; its filters, and those of instances whose rules name
    a group it left or joined, are rebuilt by jobs (the caller commits)."""
    groups = _own_groups(session, instance.account_id, group_ids)
    before = set(group_ids_of(session, [instance.id])[instance.id])
    after = {g.id for g in groups}
    if before == after:
        return
    for link in session.exec(
        select(InstanceSecurityGroup).where(InstanceSecurityGroup.instance_id == instance.id)
    ):
        if link.group_id not in after:
            session.delete(link)
    join(session, instance.id, [g for g in groups if g.id not in before])
    session.flush()
    filter_jobs.refresh_filters(session, [instance.id])
    filter_jobs.refresh_groups_naming(session, before ^ after)


# --- helpers -------------------------------------------------------------------------------


def _own_groups(session: Session, account_id: str, group_ids: list[str]) -> list[SecurityGroup]:
    unique = list(dict.fromkeys(group_ids))
    if len(unique) > MAX_GROUPS_PER_INSTANCE:
        raise BadRequest(f"an instance takes at most {MAX_GROUPS_PER_INSTANCE} security groups")
    found = {
        g.id: g
        for g in session.exec(
            select(SecurityGroup)
            .where(col(SecurityGroup.id).in_(unique))
            .where(SecurityGroup.account_id == account_id)
        )
    }
    missing = [g for g in unique if g not in found]
    if missing:
        raise BadRequest(f"security group(s) {', '.join(missing)} not found in {account_id}")
    return [found[g] for g in unique]


def _name_is_free(session: Session, account_id: str, name: str) -> None:
    taken = session.exec(
        select(SecurityGroup.id).where(
            SecurityGroup.account_id == account_id, SecurityGroup.name == name
        )
    ).first()
    if taken is not None:
        raise Conflict(f"{account_id} already has a security group named {name!r} ({taken})")


def _rules_from(
    session: Session,
    group: SecurityGroup,
    rules: list[RuleModel] | None,
    text: str | None,
) -> list[Rule] | None:
    """The checked rules of a request (None: not given); sources must be the account's."""
    try:
        if text is not None:
            parsed = rule_text.parse(text)
        elif rules is not None:
            parsed = []
            for number, given in enumerate(rules, 1):
                try:
                    cidr = rule_text.canonical_cidr(given.cidr) if given.cidr else None
                    parsed.append(
                        Rule(
                            given.protocol,
                            given.from_port,
                            given.to_port,
                            cidr,
                            given.source_group_id,
                        )
                    )
                except RuleError as exc:
                    raise RuleError(f"rule {number}: {exc}") from None
        else:
            return None
    except RuleError as exc:
        raise BadRequest(str(exc)) from None
    if len(parsed) > 100:
        raise BadRequest("a security group holds at most 100 rules")
    sources = {r.source_group_id for r in parsed if r.source_group_id} - {group.id}
    if sources:
        own = set(
            session.exec(
                select(SecurityGroup.id)
                .where(col(SecurityGroup.id).in_(sources))
                .where(SecurityGroup.account_id == group.account_id)
            )
        )
        missing = sorted(sources - own)
        if missing:
            raise BadRequest(
                f"source group(s) {', '.join(missing)} not found in {group.account_id}"
            )
    return parsed


def _store_rules(session: Session, group_id: str, rules: list[Rule]) -> None:
    session.add_all(
        SecurityGroupRule(
            group_id=group_id,
            position=n,
            protocol=rule.protocol,
            from_port=rule.from_port,
            to_port=rule.to_port,
            cidr=rule.cidr,
            source_group_id=rule.source_group_id,
        )
        for n, rule in enumerate(rules)
    )
    session.flush()
