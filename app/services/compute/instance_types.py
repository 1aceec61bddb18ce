"""Instance types: named sizes (cpu cores, memory, root disk)."""

from __future__ import annotations

from sqlmodel import Session, col, select

from app.errors import Conflict, NotFound
from app.models import InstanceType
from app.models.instance_type import InstanceTypeCreate, InstanceTypeUpdate
from app.services.changes import apply_changes


def list_types(session: Session) -> list[InstanceType]:
    return list(
        session.exec(
            select(InstanceType).order_by(col(InstanceType.memory_size), col(InstanceType.name))
        )
    )


def get_type(session: Session, name: str) -> InstanceType:
    found = session.get(InstanceType, name)
    if found is None:
        raise NotFound.resource("instance type", name)
    return found


def create_type(session: Session, body: InstanceTypeCreate) -> InstanceType:
    if session.get(InstanceType, body.name) is not None:
        raise Conflict(f"instance type {body.name!r} already exists")
    row = InstanceType(**body.model_dump())
    session.add(row)
    session.commit()
    return row


def update_type(session: Session, name: str, body: InstanceTypeUpdate) -> InstanceType:
    row = get_type(session, name)
    apply_changes(row, body)
    session.add(row)
    session.commit()
    return row


def delete_type(session: Session, name: str) -> None:
    # Instances keep their own copy of the size, so a type can go while they run.
    session.delete(get_type(session, name))
    session.commit()
