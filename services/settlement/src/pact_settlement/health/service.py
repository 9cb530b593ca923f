"""Readiness checks."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from pact_settlement.db.migrate import current_revision, head_revision

__all__ = ["readiness"]


async def readiness(engine: AsyncEngine, timeout_s: float = 3.0) -> dict[str, Any]:
    head = head_revision()
    try:
        async with asyncio.timeout(timeout_s):
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            current = await current_revision(engine)
    except Exception as exc:  # any failure here means "not ready", with the reason
        return {
            "ready": False,
            "database": "unreachable",
            "error": type(exc).__name__,
            "migrations": {"head": head, "current": None},
        }
    at_head = current == head
    return {
        "ready": at_head,
        "database": "ok",
        "migrations": {"head": head, "current": current, "at_head": at_head},
    }
