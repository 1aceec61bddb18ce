"""What `GET /metrics` reads from the database at each scrape: instances by state, hosts
by status, jobs by kind and state. Three grouped counts, each from an index; every state
is listed (zero included) so a series does not vanish when its count drops to zero."""

from __future__ import annotations

import sqlalchemy as sa
from sqlmodel import Session, col, select

from app.metrics import Reading
from app.models import HostNode, Instance, Job
from app.models.host_node import HostStatus
from app.models.instance import InstanceState
from app.models.job import JobState

# Done jobs are history (every launch and action leaves one): counting them would read the
# whole table at every scrape. These are the ones an operator watches.
JOB_STATES = (JobState.queued, JobState.running, JobState.failed)


def readings(session: Session) -> list[Reading]:
    instances: dict[tuple[str, ...], float] = dict.fromkeys(
        ((s.value,) for s in InstanceState), 0.0
    )
    for state, number in session.exec(
        select(Instance.state, sa.func.count()).group_by(col(Instance.state))
    ):
        instances[(str(state),)] = number
    hosts: dict[tuple[str, ...], float] = dict.fromkeys(((s.value,) for s in HostStatus), 0.0)
    for status, number in session.exec(
        select(HostNode.status, sa.func.count()).group_by(col(HostNode.status))
    ):
        hosts[(str(status),)] = number
    counted = session.exec(
        select(Job.kind, Job.state, sa.func.count())
        .where(col(Job.state).in_(JOB_STATES))
        .group_by(col(Job.kind), col(Job.state))
    ).all()
    # Each kind seen gets all three states, zero included.
    jobs: dict[tuple[str, ...], float] = {
        (kind, s.value): 0.0 for kind, _, _ in counted for s in JOB_STATES
    }
    for kind, state, number in counted:
        jobs[(kind, str(state))] = number
    return [
        Reading("vdc_instances", "Instances by state", ("state",), instances),
        Reading(
            "vdc_hosts", "Hosts by status (online: vdc reaches its libvirt)", ("status",), hosts
        ),
        Reading(
            "vdc_jobs",
            "Jobs queued, running (claimed by a worker) and failed, by kind",
            ("kind", "state"),
            jobs,
        ),
    ]
