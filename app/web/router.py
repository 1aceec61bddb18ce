"""Collects the web UI's pages; nothing else."""

from fastapi import APIRouter

from app.web import (
    admin,
    api_keys,
    auth,
    images,
    instances,
    keypairs,
    screen,
    screen_socket,
    security_groups,
    volumes,
)

web_router = APIRouter(include_in_schema=False)
for module in (
    auth,
    instances,
    screen,
    screen_socket,
    images,
    volumes,
    keypairs,
    security_groups,
    api_keys,
    admin,
):
    web_router.include_router(module.router)
