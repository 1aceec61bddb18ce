"""All table models, imported here so SQLModel.metadata (and alembic) sees every table."""

from app.models.account import Account, ApiKey
from app.models.image import Image

__all__ = ["Account", "ApiKey", "Image"]
