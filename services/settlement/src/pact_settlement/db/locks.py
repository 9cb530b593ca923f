"""Transaction-scoped named locks: ``pg_advisory_xact_lock`` on Postgres.

SQLite needs none: every transaction starts with ``BEGIN IMMEDIATE``, so writers are already
serialised for the whole transaction.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["lock_names"]


async def lock_names(session: AsyncSession, *names: str) -> None:
    """Block until this transaction holds a lock on each name (sorted: no deadlocks)."""
    if session.get_bind().dialect.name != "postgresql":
        return
    for name in sorted(set(names)):
        await session.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:name, 0))"), {"name": name}
        )
