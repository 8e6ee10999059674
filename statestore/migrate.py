"""Bring a store's schema to the newest Alembic revision."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection

from statestore.engine import create_migration_engine


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", "statestore:migrations")
    config.attributes["connection"] = connection
    return config


def _upgrade(connection: Connection) -> None:
    command.upgrade(_config(connection), "head")


async def upgrade(url: str) -> None:
    engine = create_migration_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_upgrade)
    finally:
        await engine.dispose()
