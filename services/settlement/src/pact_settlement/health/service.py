"""Readiness checks.

Ready means the database answers, is at the migration head, **and takes writes**: a Postgres
that answers reads but refuses writes (read-only: a standby, a failover, a read-only switch;
disk full) is not ready. Read-only shows in the session itself (``transaction_read_only``); a
full disk only when a write fails, which the engine's error hook reports to
:class:`~pact_settlement.db.health.DatabaseHealth` (red for ``WRITE_REFUSAL_HOLD_S`` after the
last refusal).
"""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from pact_settlement.db.health import DatabaseHealth
from pact_settlement.db.migrate import current_revision, head_revision

__all__ = ["readiness"]


async def readiness(
    engine: AsyncEngine, health: DatabaseHealth | None = None, timeout_s: float = 3.0
) -> dict[str, Any]:
    head = head_revision()
    try:
        async with asyncio.timeout(timeout_s):
            async with engine.connect() as conn:
                if conn.dialect.name == "postgresql":
                    mode = await conn.scalar(
                        text("SELECT current_setting('transaction_read_only')")
                    )
                    read_only = mode == "on"
                    if read_only:
                        # A session opened read-only stays so: never pool it again.
                        await conn.invalidate()
                else:
                    await conn.execute(text("SELECT 1"))
                    read_only = False
            current = await current_revision(engine)
    except Exception as exc:  # any failure here means "not ready", with the reason
        return {
            "ready": False,
            "database": "unreachable",
            "error": type(exc).__name__,
            "migrations": {"head": head, "current": None},
        }
    at_head = current == head
    migrations = {"head": head, "current": current, "at_head": at_head}
    refused = health.refusing_writes() if health is not None else None
    if read_only or refused is not None:
        return {
            "ready": False,
            "database": "refusing_writes",
            "reason": "read_only" if read_only else str(refused),
            "migrations": migrations,
        }
    return {"ready": at_head, "database": "ok", "migrations": migrations}
