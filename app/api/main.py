"""Collects the routers; nothing else."""

from fastapi import APIRouter

from app.api import (
    accounts,
    api_keys,
    host_nodes,
    images,
    instance_types,
    instances,
    keypairs,
    networks,
    quotas,
    security_groups,
    volumes,
)
from app.api.errors import ERROR_RESPONSES

api_router = APIRouter(prefix="/api/v1", responses=ERROR_RESPONSES)
for module in (
    accounts,
    api_keys,
    quotas,
    images,
    host_nodes,
    networks,
    instance_types,
    keypairs,
    instances,
    volumes,
    security_groups,
):
    api_router.include_router(module.router)
