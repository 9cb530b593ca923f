"""The optional shared quote store: every signed ASK, by (buyer key, intent id), until it expires.

Reference-SDK buyers send bare ACCEPTs (no ``quote``). With ``QUOTE_STORE_URL`` set, each ASK a
replica signs is stored under ``{prefix}{buyer}:{intent_id}:{round}`` (an open quote, made for
no buyer, under the buyer ``*``) with a time to live of its validity plus ``QUOTE_GRACE_MS``, so
any replica can find the quote a bare ACCEPT takes. The store holds only the provider-signed
envelope: what is read back is verified again like a carried quote (signature, intent id,
buyer, expiry), so a tampered store can refuse trades but never forge one.

A store that does not answer within ``QUOTE_STORE_TIMEOUT_S`` makes the request a 503
(:class:`QuoteStoreUnavailable`): an ASK is handed out only once it is stored, so a bare ACCEPT
always finds the quote it answers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Protocol

import orjson
from redis import asyncio as aioredis
from redis.exceptions import RedisError

from pact_provider.errors import ProviderError

__all__ = [
    "OPEN_BUYER",
    "QuoteStore",
    "QuoteStoreUnavailableError",
    "RedisQuoteStore",
    "store_call",
]

OPEN_BUYER = "*"
"""The buyer an open quote (``POST /quote``: no key to bind) is stored under."""
MAX_ROUND = 3
READY = "ok"


class QuoteStoreUnavailableError(ProviderError):
    """The quote store did not answer in time; the request may be sent again."""

    status = 503
    code = "QUOTE_STORE_UNAVAILABLE"

    def __init__(self, detail: str, *, retry_after_s: int = 1) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after_s)})


class QuoteStore(Protocol):
    async def put(
        self,
        *,
        buyer: str | None,
        intent_id: str,
        round_number: int,
        envelope: dict[str, Any],
        ttl_ms: int,
    ) -> None:
        """Keep ``envelope`` for ``ttl_ms``; ``buyer`` None for an open quote."""
        ...

    async def candidates(self, buyer: str, intent_id: str) -> list[dict[str, Any]]:
        """Every stored quote a bare ACCEPT by ``buyer`` for ``intent_id`` may take: the
        buyer's rounds, then the open quote for the intent id."""
        ...

    async def readiness(self) -> str:
        """``"ok"`` when the store answers, else why not."""
        ...

    async def aclose(self) -> None: ...


async def store_call(timeout_s: float, what: str, operation: Any) -> Any:
    """Await one Redis call within ``timeout_s``; :class:`QuoteStoreUnavailable` otherwise."""
    try:
        async with asyncio.timeout(timeout_s):
            return await operation
    except (TimeoutError, RedisError, OSError) as exc:
        raise QuoteStoreUnavailableError(
            f"the quote store did not answer ({what}: {type(exc).__name__}); send the "
            "same message again"
        ) from exc


class RedisQuoteStore:
    """:class:`QuoteStore` on Redis (redis-py's asyncio client, one connection pool per app)."""

    def __init__(self, url: str, *, prefix: str, timeout_s: float) -> None:
        self._redis = aioredis.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            health_check_interval=30,
        )
        self._prefix = prefix
        self._timeout_s = timeout_s

    def _key(self, buyer: str, intent_id: str, round_number: int) -> str:
        return f"{self._prefix}{buyer}:{intent_id}:{round_number}"

    async def _call(self, what: str, operation: Any) -> Any:
        return await store_call(self._timeout_s, what, operation)

    async def put(
        self,
        *,
        buyer: str | None,
        intent_id: str,
        round_number: int,
        envelope: dict[str, Any],
        ttl_ms: int,
    ) -> None:
        key = self._key(buyer or OPEN_BUYER, intent_id, round_number)
        await self._call("store", self._redis.set(key, orjson.dumps(envelope), px=max(1, ttl_ms)))

    async def candidates(self, buyer: str, intent_id: str) -> list[dict[str, Any]]:
        keys = [self._key(buyer, intent_id, r) for r in range(MAX_ROUND, 0, -1)]
        keys.append(self._key(OPEN_BUYER, intent_id, 1))
        values: Sequence[bytes | None] = await self._call("lookup", self._redis.mget(keys))
        found = []
        for value in values:
            if value is None:
                continue
            try:
                document = orjson.loads(value)
            except orjson.JSONDecodeError:
                continue  # not ours: verified quotes only
            if isinstance(document, dict):
                found.append(document)
        return found

    async def readiness(self) -> str:
        try:
            await self._call("ping", self._redis.ping())
        except QuoteStoreUnavailableError:
            return "unreachable"
        return READY

    async def aclose(self) -> None:
        await self._redis.aclose()
