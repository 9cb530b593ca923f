"""A stream's state shared by the provider replicas, in the quote store's Redis
(docs/protocol.md, "Streaming"; docs/decisions.md, "Stream vouchers in the shared store").

Without it a stream lives only in the replica serving its event stream: vouchers and stops
must reach that replica, and a replica that dies loses the vouchers it had not yet
checkpointed at settlement. With ``PACT_PROVIDER_QUOTE_STORE_URL`` set:

* **Open.** The serving replica writes the stream's terms (settlement id, buyer, seller,
  budget, planned ticks) to a hash ``{prefix}stream:{buyer}:{intent}`` and holds a lease
  ``{prefix}stream-owner:{buyer}:{intent}`` that it renews every :data:`LEASE_RENEW_S`.
* **Vouchers.** Whichever replica a voucher reaches verifies it against those terms and
  raises the stored highest voucher with one atomic script (compare-and-set on the
  ``paid_amount``, as a fixed-width integer string). A voucher is answered 200 only once it is
  in the store: a voucher the seller has acknowledged survives the replica's death. A replica
  that does not serve the stream also publishes it on ``{prefix}stream-events``; the serving
  replica, subscribed, applies it to the stream it runs. A stop is published the same way.
* **Recovery.** Every replica looks, every :data:`RECOVER_EVERY_S`, for stream hashes whose
  lease has lapsed (the serving replica died, or its close did not reach settlement) and closes
  them at settlement with the stored highest voucher; the hash is deleted once settlement has
  closed the stream. Nobody is paid more than that voucher; nothing the buyer signed and the
  seller acknowledged is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson
from redis import asyncio as aioredis
from redis.exceptions import RedisError

from pact_provider.quotes.store import store_call

__all__ = [
    "LEASE_MS",
    "LEASE_RENEW_S",
    "RECOVER_EVERY_S",
    "SharedStream",
    "SharedStreams",
    "rank",
]

#: How long a serving replica's lease on a stream lasts without renewal.
LEASE_MS = 6_000
#: How often the serving replica renews the leases of the streams it runs.
LEASE_RENEW_S = 2.0
#: How often every replica looks for streams whose serving replica is gone.
RECOVER_EVERY_S = 2.0

#: A paid amount as a fixed-width string of 10^-18 units: string order is numeric order.
_RANK_SCALE = Decimal(10) ** 18
_RANK_WIDTH = 48

# KEYS[1] the stream hash, KEYS[2] the channel. ARGV: rank, voucher JSON, message to publish
# ("" for none). -1: no such stream; 0: not higher; 1: raised.
_RAISE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local cur = redis.call('HGET', KEYS[1], 'rank')
if cur and cur >= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'rank', ARGV[1], 'voucher', ARGV[2])
if ARGV[3] ~= '' then redis.call('PUBLISH', KEYS[2], ARGV[3]) end
return 1
"""


def rank(paid_amount: Decimal) -> str:
    return str(int(paid_amount * _RANK_SCALE)).zfill(_RANK_WIDTH)


@dataclass(frozen=True, slots=True)
class SharedStream:
    """A stream as the store holds it."""

    buyer: str
    intent_id: str
    settlement_id: str
    seller: str
    budget: Decimal
    planned_ticks: int
    voucher: dict[str, Any] | None


Listener = Callable[[str, str, str, dict[str, Any]], Awaitable[None]]
"""Called with (kind ``voucher``/``stop``, buyer, intent id, envelope) for a published event."""


class SharedStreams:
    def __init__(self, url: str, *, prefix: str, timeout_s: float) -> None:
        self._redis = aioredis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        # The subscriber blocks on its socket; it gets its own client without a read timeout.
        self._url = url
        self._timeout_s = timeout_s
        self._prefix = f"{prefix}stream:"
        self._owner_prefix = f"{prefix}stream-owner:"
        self._channel = f"{prefix}stream-events"
        self._raise = self._redis.register_script(_RAISE)

    def _key(self, buyer: str, intent_id: str) -> str:
        return f"{self._prefix}{buyer}:{intent_id}"

    def _owner(self, buyer: str, intent_id: str) -> str:
        return f"{self._owner_prefix}{buyer}:{intent_id}"

    async def _call(self, what: str, awaitable: Awaitable[Any]) -> Any:
        return await store_call(self._timeout_s, what, awaitable)

    async def opened(self, stream: SharedStream, *, ttl_ms: int) -> None:
        key = self._key(stream.buyer, stream.intent_id)
        terms: dict[str | bytes, str | bytes] = {
            "settlement_id": stream.settlement_id,
            "seller": stream.seller,
            "budget": str(stream.budget),
            "planned_ticks": str(stream.planned_ticks),
        }
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(key, mapping=terms)  # type: ignore[arg-type]
        pipe.pexpire(key, max(1, ttl_ms))
        pipe.set(self._owner(stream.buyer, stream.intent_id), b"1", px=LEASE_MS)
        await self._call("open stream", pipe.execute())

    async def renew(self, streams: list[tuple[str, str]], *, ttl_ms: int) -> None:
        if not streams:
            return
        pipe = self._redis.pipeline(transaction=False)
        for buyer, intent_id in streams:
            pipe.set(self._owner(buyer, intent_id), b"1", px=LEASE_MS)
            pipe.pexpire(self._key(buyer, intent_id), max(1, ttl_ms))
        await self._call("renew stream leases", pipe.execute())

    async def find(self, buyer: str, intent_id: str) -> SharedStream | None:
        fields = await self._call("find stream", self._redis.hgetall(self._key(buyer, intent_id)))
        return self._parse(buyer, intent_id, fields)

    @staticmethod
    def _parse(buyer: str, intent_id: str, fields: Any) -> SharedStream | None:
        if not fields or b"settlement_id" not in fields:
            return None
        voucher = fields.get(b"voucher")
        return SharedStream(
            buyer=buyer,
            intent_id=intent_id,
            settlement_id=fields[b"settlement_id"].decode(),
            seller=fields[b"seller"].decode(),
            budget=Decimal(fields[b"budget"].decode()),
            planned_ticks=int(fields[b"planned_ticks"]),
            voucher=orjson.loads(voucher) if voucher else None,
        )

    async def raise_voucher(
        self,
        buyer: str,
        intent_id: str,
        voucher: dict[str, Any],
        paid_amount: Decimal,
        *,
        publish: bool,
    ) -> int:
        """Store ``voucher`` if it pays more than the stored one (and publish it when
        ``publish``): 1 raised, 0 not higher, -1 no such stream."""
        raw = orjson.dumps(voucher)
        event = b""
        if publish:
            event = orjson.dumps(
                {"kind": "voucher", "buyer": buyer, "intent_id": intent_id, "env": voucher}
            )
        result = await self._call(
            "store voucher",
            self._raise(
                keys=[self._key(buyer, intent_id), self._channel],
                args=[rank(paid_amount), raw, event],
            ),
        )
        return int(result)

    async def publish_stop(self, buyer: str, intent_id: str, stop: dict[str, Any]) -> None:
        event = orjson.dumps({"kind": "stop", "buyer": buyer, "intent_id": intent_id, "env": stop})
        await self._call("publish stop", self._redis.publish(self._channel, event))

    async def ended(self, buyer: str, intent_id: str) -> None:
        await self._call(
            "end stream",
            self._redis.delete(self._key(buyer, intent_id), self._owner(buyer, intent_id)),
        )

    async def orphans(self) -> AsyncIterator[SharedStream]:
        """Streams whose serving replica's lease has lapsed."""
        async for key in self._redis.scan_iter(match=f"{self._prefix}*", count=500):
            name = key.decode()[len(self._prefix) :]
            buyer, _, intent_id = name.partition(":")
            if await self._redis.exists(self._owner(buyer, intent_id)):
                continue
            stream = self._parse(buyer, intent_id, await self._redis.hgetall(key))
            if stream is not None:
                yield stream

    async def listen(
        self,
        listener: Listener,
        log_error: Callable[[str], None],
        subscribed: asyncio.Event | None = None,
    ) -> None:
        """Deliver published events to ``listener`` until cancelled (reconnecting); sets
        ``subscribed`` once the subscription is in place."""
        while True:
            client = aioredis.Redis.from_url(self._url, socket_connect_timeout=self._timeout_s)
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._channel)
                if subscribed is not None:
                    subscribed.set()
                async for message in pubsub.listen():
                    if message.get("type") != "message":
                        continue
                    with contextlib.suppress(ValueError, KeyError, TypeError):
                        event = orjson.loads(message["data"])
                        await listener(
                            str(event["kind"]),
                            str(event["buyer"]),
                            str(event["intent_id"]),
                            dict(event["env"]),
                        )
            except (RedisError, OSError) as exc:
                log_error(str(exc)[:300])
                await asyncio.sleep(LEASE_RENEW_S)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
                    await client.aclose()

    async def aclose(self) -> None:
        await self._redis.aclose()
