"""What every job handler gets: the settings and the database engine."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlmodel import Session

from app.config import Settings


@dataclass
class JobContext:
    settings: Settings
    engine: sa.Engine

    def session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)
