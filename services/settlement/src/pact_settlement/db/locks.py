"""Transaction-scoped named locks: ``pg_advisory_xact_lock`` on Postgres.

SQLite needs none: every transaction starts with ``BEGIN IMMEDIATE``, so writers are already
serialised for the whole transaction.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["lock_names"]


async def lock_names(session: AsyncSession, *names: str) -> None:
    """Block until this transaction holds a lock on each name (sorted: no deadlocks).

    One round trip for all names: Postgres evaluates a target list left to right, so the
    locks are taken in the sorted order.
    """
    if session.get_bind().dialect.name != "postgresql":
        return
    ordered = sorted(set(names))
    if not ordered:
        return
    calls = ", ".join(
        f"pg_advisory_xact_lock(hashtextextended(:n{i}, 0))" for i in range(len(ordered))
    )
    await session.execute(text(f"SELECT {calls}"), {f"n{i}": n for i, n in enumerate(ordered)})
