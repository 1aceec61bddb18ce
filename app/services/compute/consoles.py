"""Console tickets: who may open a running instance's screen, once, within a short time.

A ticket is asked for by a signed-in browser (it is then bound to that browser's session)
or with an API key (for other clients). The WebSocket that opens the screen presents it:
`check` says whether it may be used, without using it, so that a refusal for another
reason (no session, too many screens open) does not burn it; `redeem` then uses it up
with a compare-and-set, so that two connections racing with one ticket get one screen.
Who is asking (the browser's session, the key) is checked by the caller, which knows the
request; this module checks the ticket and the instance.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session, col

from app.errors import Conflict, Forbidden, NotFound
from app.models import Account, ConsoleTicket, HostNode, Instance
from app.models.common import utcnow
from app.models.instance import InstanceState
from app.services import access

TICKET_SECONDS = 60  # long enough to open the socket, short enough to be of no use later


@dataclass(frozen=True)
class Issued:
    token: str  # shown once, to the one who asked; the database keeps its SHA-256
    expires_at: datetime


@dataclass(frozen=True)
class Admitted:
    """A redeemed ticket: whose screen to open, for whom, on which host."""

    instance_id: str
    account_id: str
    host: HostNode
    web_session_id: str | None  # the browser it was given to, or
    api_key_id: str | None  # the API key it was asked for with


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue(
    session: Session,
    account: Account,
    instance_id: str,
    *,
    web_session_id: str | None = None,
    api_key_id: str | None = None,
) -> Issued:
    """A ticket to the instance's screen: 404 for an instance the account cannot see, 409
    when it is not running (its screen exists only then)."""
    if (web_session_id is None) == (api_key_id is None):
        raise ValueError("a ticket is asked for by one web session or one API key")
    instance = access.get(session, account, Instance, instance_id)
    _require_running(instance)
    now = utcnow()
    # Tickets that ran out are of no use to anyone: they go as new ones come.
    session.execute(sa.delete(ConsoleTicket).where(col(ConsoleTicket.expires_at) < now))
    token = secrets.token_urlsafe(32)
    expires_at = now + timedelta(seconds=TICKET_SECONDS)
    session.add(
        ConsoleTicket(
            id=_digest(token),
            instance_id=instance.id,
            account_id=account.id,
            web_session_id=web_session_id,
            api_key_id=api_key_id,
            created_at=now,
            expires_at=expires_at,
        )
    )
    session.commit()
    return Issued(token, expires_at)


def check(session: Session, token: str, instance_id: str) -> ConsoleTicket:
    """The ticket if it may still open this instance's screen (not used, not expired);
    Forbidden saying why not. Does not use it up."""
    ticket = session.get(ConsoleTicket, _digest(token)) if token else None
    if ticket is None or ticket.instance_id != instance_id:
        raise Forbidden(f"no such console ticket for instance {instance_id}: ask for a new one")
    if ticket.used_at is not None:
        raise Forbidden("this console ticket was used already: each opens one connection")
    if ticket.expires_at <= utcnow():
        raise Forbidden(f"this console ticket expired (it lasts {TICKET_SECONDS} s)")
    return ticket


def redeem(session: Session, ticket: ConsoleTicket) -> Admitted:
    """Uses the ticket up, after checking that its account may still see the instance and
    that it runs. Forbidden when another connection used it first."""
    account = session.get(Account, ticket.account_id)
    if account is None:
        raise NotFound.resource("instance", ticket.instance_id)
    instance = access.get(session, account, Instance, ticket.instance_id)
    _require_running(instance)
    host = session.get(HostNode, instance.host_node_id) if instance.host_node_id else None
    if host is None:
        raise Conflict(f"instance {instance.id} has no host")
    session.expunge(host)  # the caller uses it after this session's commit
    now = utcnow()
    # Compare-and-set: exactly one redeem of a ticket sees its used_at empty.
    used = session.execute(
        sa.update(ConsoleTicket)
        .where(
            col(ConsoleTicket.id) == ticket.id,
            col(ConsoleTicket.used_at).is_(None),
            col(ConsoleTicket.expires_at) > now,
        )
        .values(used_at=now)
    )
    session.commit()
    if used.rowcount != 1:  # type: ignore[attr-defined]
        raise Forbidden("this console ticket was used already: each opens one connection")
    return Admitted(instance.id, account.id, host, ticket.web_session_id, ticket.api_key_id)


def why_closed(session: Session, admitted: Admitted) -> str | None:
    """Why an open screen must close now (its instance no longer runs, or its account may
    no longer see it), or None."""
    account = session.get(Account, admitted.account_id)
    try:
        if account is None:
            raise NotFound.resource("instance", admitted.instance_id)
        instance = access.get(session, account, Instance, admitted.instance_id)
    except NotFound:
        return f"instance {admitted.instance_id} is not yours to see any more"
    if instance.state != InstanceState.running:
        return f"instance {instance.id} is {instance.state}"
    return None


def _require_running(instance: Instance) -> None:
    if instance.state != InstanceState.running:
        raise Conflict(
            f"instance {instance.id} is {instance.state}: its screen exists only while it runs"
        )
