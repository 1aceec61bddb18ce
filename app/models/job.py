"""Jobs (`job-...`): background work as rows, claimed with a lease so a dead worker's job is
picked up again, and every step written to be safe to run twice."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlmodel import Field, SQLModel

from app.models.common import state_column, timestamp_column, utcnow


class JobState(StrEnum):
    queued = "queued"
    running = "running"
    done = "done"
    failed = "failed"


class Job(SQLModel, table=True):
    __tablename__ = "jobs"

    id: str = Field(primary_key=True, max_length=32)
    kind: str = Field(max_length=32)
    instance_id: str | None = Field(default=None, index=True, max_length=32)
    # Volume jobs name their volume; attach and detach also name the instance, so they run
    # in order with its other jobs (an attach queued before a stop runs first).
    volume_id: str | None = Field(default=None, index=True, max_length=32)
    # An image capture names the image it makes, and its instance (to run in order with the
    # instance's other jobs: a start asked after the capture waits for it).
    image_id: str | None = Field(default=None, max_length=32)
    # A `group_filters` job names its security group: its members' filters are rebuilt on
    # their hosts, one job for the group, however many members it has.
    security_group_id: str | None = Field(default=None, index=True, max_length=32)
    state: JobState = Field(default=JobState.queued, sa_column=state_column(JobState, index=True))
    attempts: int = 0
    lease_owner: str | None = Field(default=None, max_length=64)
    lease_expires_at: datetime | None = Field(
        default=None, sa_column=timestamp_column(nullable=True)
    )
    run_after: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())
    last_error: str = Field(default="", max_length=2048)
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())
    updated_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())
