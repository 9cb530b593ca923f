"""Programmatic Alembic: works from any working directory, sync or inside an event loop."""

from __future__ import annotations

from typing import Any

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = [
    "alembic_config",
    "current_revision",
    "downgrade",
    "head_revision",
    "is_at_head",
    "upgrade",
]

VERSION_TABLE = "alembic_version"
FILE_TEMPLATE = "%%(year)d_%%(month).2d_%%(day).2d_%%(hour).2d%%(minute).2d-%%(rev)s_%%(slug)s"


def alembic_config(url: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", "pact_settlement:migrations")
    cfg.set_main_option("file_template", FILE_TEMPLATE)
    cfg.set_main_option("timezone", "UTC")
    if url:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def _with_connection(fn: Any, connection: Connection, *args: Any) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    fn(cfg, *args)


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    async with engine.begin() as conn:
        await conn.run_sync(lambda c: _with_connection(command.upgrade, c, revision))


async def downgrade(engine: AsyncEngine, revision: str) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(lambda c: _with_connection(command.downgrade, c, revision))


async def current_revision(engine: AsyncEngine) -> str | None:
    """The database's Alembic revision (None when never migrated)."""
    async with engine.connect() as conn:

        def _current(sync_conn: Connection) -> str | None:
            if not inspect(sync_conn).has_table(VERSION_TABLE):
                return None
            rows = sync_conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).all()  # noqa: S608
            return str(rows[0][0]) if len(rows) == 1 else None

        return await conn.run_sync(_current)


async def is_at_head(engine: AsyncEngine) -> bool:
    return await current_revision(engine) == head_revision()
