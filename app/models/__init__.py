"""All table models, imported here so SQLModel.metadata (and alembic) sees every table."""

from app.models.account import Account, ApiKey, BrowserSession
from app.models.console_ticket import ConsoleTicket
from app.models.host_node import HostNode
from app.models.image import Image
from app.models.image_copy import ImageCopy
from app.models.instance import Instance, NetworkInterface
from app.models.instance_type import InstanceType
from app.models.job import Job
from app.models.keypair import SshKeyPair
from app.models.network import Network
from app.models.quota import AccountQuota
from app.models.security_group import InstanceSecurityGroup, SecurityGroup, SecurityGroupRule
from app.models.volume import Volume

__all__ = [
    "Account",
    "AccountQuota",
    "ApiKey",
    "BrowserSession",
    "ConsoleTicket",
    "HostNode",
    "Image",
    "ImageCopy",
    "Instance",
    "InstanceSecurityGroup",
    "InstanceType",
    "Job",
    "Network",
    "NetworkInterface",
    "SecurityGroup",
    "SecurityGroupRule",
    "SshKeyPair",
    "Volume",
]
