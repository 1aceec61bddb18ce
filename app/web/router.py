"""Collects the web UI's pages; nothing else."""

from fastapi import APIRouter

from app.web import admin, auth, images, instances, keypairs, security_groups, volumes

web_router = APIRouter(include_in_schema=False)
for module in (auth, instances, images, volumes, keypairs, security_groups, admin):
    web_router.include_router(module.router)
