"""Alembic environment. Used through ``pact_settlement.db.migrate`` (programmatic config).

Two ways in: a sync ``Connection`` handed over in ``config.attributes["connection"]`` (the
async callers run migrations inside ``AsyncConnection.run_sync``), or a URL in
``sqlalchemy.url`` for which an async engine is made here.
"""

from __future__ import annotations

import asyncio

from alembic import context
from pact_settlement.db.engine import make_engine
from pact_settlement.db.models import Base
from sqlalchemy.engine import Connection

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        transaction_per_migration=False,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_with_url(url: str) -> None:
    engine = make_engine(url)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
            await connection.commit()
    finally:
        await engine.dispose()


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:  # plain `alembic -c services/settlement/alembic.ini …`: the service's settings
        from pact_settlement.config import SettlementSettings

        url = SettlementSettings().resolved_database_url
    asyncio.run(_run_with_url(url))


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
