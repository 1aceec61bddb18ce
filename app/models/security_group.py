"""Security groups (`sg-...`): inbound rules for the instances that are members, enforced
on every interface by a libvirt nwfilter built on clean-traffic (anti-spoofing)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal, Self

import sqlalchemy as sa
from pydantic import BaseModel, model_validator
from pydantic import Field as PydanticField
from sqlmodel import Field, SQLModel

from app.models.common import timestamp_column, utcnow

DEFAULT_GROUP = "default"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9 _.@-]*$"
MAX_RULES = 100


class SecurityGroup(SQLModel, table=True):
    __tablename__ = "security_groups"
    __table_args__ = (sa.UniqueConstraint("account_id", "name", name="uq_security_group_name"),)

    id: str = Field(primary_key=True, max_length=32)
    account_id: str = Field(foreign_key="accounts.id", index=True, max_length=32)
    name: str = Field(max_length=255)
    description: str = Field(default="", max_length=1024)
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())
    updated_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())


class SecurityGroupRule(SQLModel, table=True):
    """One inbound rule; `position` keeps the order they were given in."""

    __tablename__ = "security_group_rules"

    id: int | None = Field(default=None, primary_key=True)
    group_id: str = Field(foreign_key="security_groups.id", index=True, max_length=32)
    position: int
    protocol: str = Field(max_length=8)  # tcp, udp, icmp, any
    from_port: int  # tcp/udp: first port; icmp: type; -1 = any
    to_port: int  # tcp/udp: last port; icmp: code; -1 = any
    cidr: str | None = Field(default=None, max_length=18)
    source_group_id: str | None = Field(
        default=None, foreign_key="security_groups.id", index=True, max_length=32
    )


class InstanceSecurityGroup(SQLModel, table=True):
    """Membership: the instance's interfaces accept what the group's rules allow."""

    __tablename__ = "instance_security_groups"
    # A group's live members (every launch asks whether the groups naming its groups have
    # one), without visiting the memberships of its terminated instances, which only grow.
    __table_args__ = (sa.Index("ix_instance_security_groups_group_live", "group_id", "live"),)

    instance_id: str = Field(foreign_key="instances.id", primary_key=True, max_length=32)
    group_id: str = Field(foreign_key="security_groups.id", primary_key=True, max_length=32)
    # False once the instance is gone (shutting down or terminated): it stays listed as a
    # member of its groups, but no longer counts as one. Set with the instance's state
    # (state_changes.compare_and_set, instances.force_state); readers still check the state.
    live: bool = Field(
        default=True, sa_column_kwargs={"server_default": sa.true(), "nullable": False}
    )


class RuleModel(BaseModel):
    """A rule as the API takes and shows it (checked by app/services/rule_text.py)."""

    protocol: Literal["tcp", "udp", "icmp", "any"]
    from_port: int = PydanticField(
        default=-1, description="tcp/udp: first port (1-65535); icmp: type; -1: any"
    )
    to_port: int = PydanticField(default=-1, description="tcp/udp: last port; icmp: code; -1: any")
    cidr: str | None = PydanticField(
        default=None, max_length=18, examples=["0.0.0.0/0"], description="Source network"
    )
    source_group_id: str | None = PydanticField(
        default=None, max_length=32, description="Or: the members of this group"
    )


class _WithRules(BaseModel):
    rules: list[RuleModel] | None = PydanticField(default=None, max_length=MAX_RULES)
    rules_text: str | None = PydanticField(
        default=None,
        max_length=64 * 1024,
        description="Or Wakame-vdc's form, one per line: `tcp:22,22,ip4:0.0.0.0/0`",
        examples=["tcp:22,22,ip4:0.0.0.0/0\nicmp:-1,-1,ip4:0.0.0.0/0\n"],
    )

    @model_validator(mode="after")
    def _one_form(self) -> Self:
        if self.rules is not None and self.rules_text is not None:
            raise ValueError("give rules or rules_text, not both")
        return self


class SecurityGroupCreate(_WithRules):
    name: str = PydanticField(min_length=1, max_length=255, pattern=NAME_PATTERN)
    description: str = PydanticField(default="", max_length=1024)


class SecurityGroupUpdate(_WithRules):
    name: str | None = PydanticField(
        default=None, min_length=1, max_length=255, pattern=NAME_PATTERN
    )
    description: str | None = PydanticField(default=None, max_length=1024)


class SecurityGroupPublic(BaseModel):
    id: str
    account_id: str
    name: str
    description: str
    rules: list[RuleModel]
    rules_text: str
    instance_ids: list[str]  # live members
    created_at: datetime
    updated_at: datetime
