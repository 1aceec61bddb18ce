"""/api/v1/instances: launch, list, show, power actions, eject, capture as an image,
terminate, console."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, status

from app.api.deps import CurrentAccount, CurrentKey, SessionDep, SettingsDep
from app.api.paging import PageDep
from app.models import Instance
from app.models.common import Page
from app.models.console_ticket import VncConsole
from app.models.image import ImageCapture, ImagePublic
from app.models.instance import (
    ConsoleOutput,
    InstanceCreate,
    InstancePublic,
    InstanceState,
    InstanceUpdate,
    StopOptions,
)
from app.models.volume import VolumePublic
from app.services import access
from app.services.compute import consoles, instances
from app.services.images import capture
from app.services.storage import volumes

router = APIRouter(prefix="/instances", tags=["instances"])


def _one(session: SessionDep, row: instances.Instance) -> InstancePublic:
    return instances.public(session, [row])[0]


@router.post("", response_model=InstancePublic, status_code=status.HTTP_202_ACCEPTED)
def launch(
    body: InstanceCreate, session: SessionDep, settings: SettingsDep, account: CurrentAccount
) -> InstancePublic:
    """Places the instance, allocates its MAC and IP, and starts it in the background:
    it answers at once in `pending`; poll until `running` (or `error` with a reason)."""
    return instances.launch_public(session, settings, account, body)


@router.get("", response_model=Page[InstancePublic])
def list_instances(
    session: SessionDep,
    account: CurrentAccount,
    page: PageDep,
    state: InstanceState | None = None,
    image_id: Annotated[str | None, Query(max_length=32)] = None,
    host_node_id: Annotated[str | None, Query(max_length=32)] = None,
    account_id: Annotated[str | None, Query(max_length=32)] = None,
) -> Page[InstancePublic]:
    rows, total = instances.list_instances(
        session,
        account,
        page,
        state=state,
        image_id=image_id,
        host_node_id=host_node_id,
        account_id=account_id,
    )
    return Page(
        items=instances.public(session, rows), total=total, limit=page.limit, offset=page.offset
    )


@router.get("/{instance_id}", response_model=InstancePublic)
def show(instance_id: str, session: SessionDep, account: CurrentAccount) -> InstancePublic:
    return _one(session, access.get(session, account, Instance, instance_id))


@router.patch("/{instance_id}", response_model=InstancePublic)
def update(
    instance_id: str, body: InstanceUpdate, session: SessionDep, account: CurrentAccount
) -> InstancePublic:
    return _one(session, instances.update_instance(session, account, instance_id, body))


@router.delete(
    "/{instance_id}", response_model=InstancePublic, status_code=status.HTTP_202_ACCEPTED
)
def terminate(instance_id: str, session: SessionDep, account: CurrentAccount) -> InstancePublic:
    """Terminates: the domain, its root disk, its DHCP entry and lease are removed; its
    volumes are detached and kept, or deleted when marked `delete_on_termination`."""
    return _one(session, instances.terminate(session, account, instance_id))


def _action(name: str, summary: str):  # type: ignore[no-untyped-def]
    def endpoint(instance_id: str, session: SessionDep, account: CurrentAccount) -> InstancePublic:
        return _one(session, instances.request_action(session, account, instance_id, name))

    def endpoint_with_options(
        instance_id: str,
        session: SessionDep,
        account: CurrentAccount,
        body: StopOptions | None = None,
    ) -> InstancePublic:
        eject = body is not None and body.eject
        return _one(session, instances.request_action(session, account, instance_id, name, eject))

    chosen = endpoint_with_options if name in STOPS else endpoint
    chosen.__name__ = f"{name}_instance"
    chosen.__doc__ = summary
    router.post(
        f"/{{instance_id}}/{name}",
        response_model=InstancePublic,
        status_code=status.HTTP_202_ACCEPTED,
    )(chosen)


STOPS = ("stop", "poweroff")  # these take {"eject": true}: the CD out once the guest is off
_action("start", "Starts a stopped instance.")
_action("stop", "ACPI shutdown; forced off after the stop timeout. `eject`: the CD too.")
_action("poweroff", "Turns the instance off at once. `eject`: the CD too.")
_action("reboot", "Reboots a running instance.")


@router.post(
    "/{instance_id}/eject", response_model=InstancePublic, status_code=status.HTTP_202_ACCEPTED
)
def eject(instance_id: str, session: SessionDep, account: CurrentAccount) -> InstancePublic:
    """Takes the installer CD out (live if it runs): the next start boots the disk."""
    return _one(session, instances.eject(session, account, instance_id))


@router.post(
    "/{instance_id}/image", response_model=ImagePublic, status_code=status.HTTP_202_ACCEPTED
)
def capture_image(
    instance_id: str,
    body: ImageCapture,
    session: SessionDep,
    settings: SettingsDep,
    account: CurrentAccount,
) -> ImagePublic:
    """Makes an image of a stopped instance's root disk (a standalone copy, brought to the
    image store): answers at once with the image `creating`; poll it until `available`
    (or `error` with a reason). `prepare`: the `image prepare` steps on the copy."""
    image = capture.request_capture(session, settings, account, instance_id, body)
    return ImagePublic.model_validate(image, from_attributes=True)


@router.get("/{instance_id}/console", response_model=ConsoleOutput)
def console(
    instance_id: str, session: SessionDep, settings: SettingsDep, account: CurrentAccount
) -> ConsoleOutput:
    """The serial console output (the last 64 KiB)."""
    instance = access.get(session, account, Instance, instance_id)
    return instances.console_output(session, settings, instance)


# The WebSocket route's name (app/web/screen_socket.py), which the web UI and API clients
# share; looked up by name so that the API does not import the web UI.
_SCREEN_SOCKET = "instance_screen_socket"


@router.post("/{instance_id}/console/vnc", response_model=VncConsole)
def vnc_console(
    instance_id: str,
    request: Request,
    session: SessionDep,
    account: CurrentAccount,
    key: CurrentKey,
) -> VncConsole:
    """A one-time WebSocket URL to the instance's screen, for VNC clients other than the
    web UI (e.g. noVNC elsewhere, or websockify in front of a desktop viewer). Connect
    within a minute; the URL opens one connection. It speaks RFB 3.8 in binary messages
    and asks for no password: vdc answers the screen's own VNC authentication. 409 while
    the instance is not running."""
    issued = consoles.issue(session, account, instance_id, api_key_id=key.id)
    socket = request.url_for(_SCREEN_SOCKET, instance_id=instance_id)
    url = socket.replace(scheme="wss" if socket.scheme == "https" else "ws")
    return VncConsole(
        instance_id=instance_id,
        url=str(url.include_query_params(ticket=issued.token)),
        expires_at=issued.expires_at,
    )


@router.get("/{instance_id}/volumes", response_model=list[VolumePublic])
def instance_volumes(
    instance_id: str, session: SessionDep, account: CurrentAccount
) -> list[VolumePublic]:
    """The instance's disks in device order: its root disk (`boot`) and attached volumes."""
    return [VolumePublic.of(v) for v in volumes.volumes_of_instance(session, account, instance_id)]
