"""PATCH semantics shared by every update: only the fields sent change, and null is refused
(an optional field in a PATCH body means "leave it", never "clear it")."""

from __future__ import annotations

from pydantic import BaseModel
from sqlmodel import SQLModel

from app.errors import BadRequest


def apply_changes(row: SQLModel, changes: BaseModel) -> None:
    for field, value in changes.model_dump(exclude_unset=True).items():
        if value is None:
            raise BadRequest(f"{field} cannot be null")
        setattr(row, field, value)
