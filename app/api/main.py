"""Collects the routers; nothing else."""

from fastapi import APIRouter

from app.api import accounts, images
from app.api.errors import ERROR_RESPONSES

api_router = APIRouter(prefix="/api/v1", responses=ERROR_RESPONSES)
api_router.include_router(accounts.router)
api_router.include_router(images.router)
