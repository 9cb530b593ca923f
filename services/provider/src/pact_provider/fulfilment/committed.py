"""The payload a provider committed to, kept until the buyer can no longer ask for it again.

A handler answers once per settlement; the answer may differ on every call (an upstream API's
weather changes). So the bytes are kept *before* the COMMIT, under the settlement id, and every
later step (the REVEAL, a resent ACCEPT, a retry on another replica or after a crash) reveals
the kept bytes instead of asking the handler again. ``keep`` is first-writer-wins: two replicas
racing on one settlement both commit to the bytes the first one stored.

With ``PACT_PROVIDER_QUOTE_STORE_URL`` the bytes live in that Redis (shared by the replicas,
surviving a restart) under ``{QUOTE_STORE_PREFIX}payload:{settlement id}``; without it, in the
process (lost when it dies: a resent ACCEPT then refunds the buyer unless the handler happens to
answer the same bytes again, as the demo handlers do). Each is kept until the delivery deadline
plus ``PAYLOAD_RETENTION_S``.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Protocol

from redis import asyncio as aioredis

from pact_provider.quotes.store import QuoteStoreUnavailableError, store_call

__all__ = ["CommittedPayloads", "InMemoryCommittedPayloads", "RedisCommittedPayloads"]


class CommittedPayloads(Protocol):
    async def keep(self, settlement_id: str, payload: bytes, *, ttl_ms: int) -> bytes:
        """Store ``payload`` unless one is kept already; return the kept one."""
        ...

    async def find(self, settlement_id: str) -> bytes | None: ...

    async def aclose(self) -> None: ...


class InMemoryCommittedPayloads:
    """One process's payloads, the oldest dropped beyond ``max_entries``."""

    def __init__(self, *, max_entries: int = 10_000) -> None:
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._max = max_entries

    def _live(self, settlement_id: str) -> bytes | None:
        entry = self._entries.get(settlement_id)
        if entry is None:
            return None
        if entry[0] <= time.monotonic():
            del self._entries[settlement_id]
            return None
        return entry[1]

    async def keep(self, settlement_id: str, payload: bytes, *, ttl_ms: int) -> bytes:
        kept = self._live(settlement_id)
        if kept is not None:
            return kept
        self._entries[settlement_id] = (time.monotonic() + ttl_ms / 1000, payload)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)
        return payload

    async def find(self, settlement_id: str) -> bytes | None:
        return self._live(settlement_id)

    async def aclose(self) -> None:
        self._entries.clear()


class RedisCommittedPayloads:
    """Payloads in the quote store's Redis (``SET NX PX``, then read back the winner)."""

    def __init__(self, url: str, *, prefix: str, timeout_s: float) -> None:
        self._redis = aioredis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        self._prefix = f"{prefix}payload:"
        self._timeout_s = timeout_s

    async def keep(self, settlement_id: str, payload: bytes, *, ttl_ms: int) -> bytes:
        key = self._prefix + settlement_id
        await store_call(
            self._timeout_s, "keep payload", self._redis.set(key, payload, nx=True, px=ttl_ms)
        )
        kept = await self.find(settlement_id)
        if kept is None:
            raise QuoteStoreUnavailableError("the committed payload vanished from the store")
        return kept

    async def find(self, settlement_id: str) -> bytes | None:
        value = await store_call(
            self._timeout_s, "find payload", self._redis.get(self._prefix + settlement_id)
        )
        return value if isinstance(value, bytes) else None

    async def aclose(self) -> None:
        await self._redis.aclose()
