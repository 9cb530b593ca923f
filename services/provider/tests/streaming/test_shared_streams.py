"""The replicas' shared stream state on a real Redis (``TEST_REDIS_URL``): the voucher
compare-and-set, the lease that tells a live stream from an orphan, the published events."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

from fixtures.waits import HANG_GUARD_S
from pact_provider.streaming.shared import SharedStream, SharedStreams, rank


def _stream(voucher: dict[str, Any] | None = None) -> SharedStream:
    return SharedStream(
        buyer="buyer-key",
        intent_id="intent-1",
        settlement_id="st_1",
        seller="seller-key",
        budget=Decimal("0.05"),
        planned_ticks=2_000,
        voucher=voucher,
    )


def test_rank_orders_amounts_as_strings() -> None:
    amounts = [Decimal(0), Decimal("0.00000001"), Decimal("0.000025"), Decimal("0.1"), Decimal(7)]
    ranks = [rank(a) for a in amounts]
    assert ranks == sorted(ranks)
    assert len({len(r) for r in ranks}) == 1


async def test_a_voucher_is_stored_only_when_it_pays_more(redis_store_url: Any) -> None:
    url, prefix = redis_store_url
    shared = SharedStreams(url, prefix=prefix, timeout_s=2)
    try:
        voucher = {"message": {"ticks": 2}, "n": 2}
        unknown = await shared.raise_voucher(
            "buyer-key", "intent-1", voucher, Decimal("0.00005"), publish=False
        )
        assert unknown == -1  # no such stream
        await shared.opened(_stream(), ttl_ms=60_000)
        assert (
            await shared.raise_voucher(
                "buyer-key", "intent-1", voucher, Decimal("0.00005"), publish=False
            )
            == 1
        )
        lower = {"message": {"ticks": 1}, "n": 1}
        assert (
            await shared.raise_voucher(
                "buyer-key", "intent-1", lower, Decimal("0.000025"), publish=False
            )
            == 0
        )
        assert (
            await shared.raise_voucher(
                "buyer-key", "intent-1", lower, Decimal("0.00005"), publish=False
            )
            == 0
        )  # equal: the first stays
        found = await shared.find("buyer-key", "intent-1")
        assert found is not None
        assert found.voucher == voucher
        assert (found.settlement_id, found.budget, found.planned_ticks) == (
            "st_1",
            Decimal("0.05"),
            2_000,
        )
    finally:
        await shared.aclose()


async def test_a_stream_without_its_lease_is_an_orphan_until_it_ends(redis_store_url: Any) -> None:
    url, prefix = redis_store_url
    shared = SharedStreams(url, prefix=prefix, timeout_s=2)
    try:
        await shared.opened(_stream(), ttl_ms=60_000)
        assert [s async for s in shared.orphans()] == []  # its replica holds the lease
        await shared._redis.delete(shared._owner("buyer-key", "intent-1"))  # the replica died
        orphans = [s async for s in shared.orphans()]
        assert [(s.buyer, s.intent_id) for s in orphans] == [("buyer-key", "intent-1")]
        await shared.ended("buyer-key", "intent-1")
        assert [s async for s in shared.orphans()] == []
        assert await shared.find("buyer-key", "intent-1") is None
    finally:
        await shared.aclose()


async def test_a_voucher_taken_elsewhere_and_a_stop_reach_the_listener(
    redis_store_url: Any,
) -> None:
    url, prefix = redis_store_url
    shared = SharedStreams(url, prefix=prefix, timeout_s=2)
    heard: asyncio.Queue[tuple[str, str, str, dict[str, Any]]] = asyncio.Queue()

    async def listener(kind: str, buyer: str, intent_id: str, env: dict[str, Any]) -> None:
        await heard.put((kind, buyer, intent_id, env))

    subscribed = asyncio.Event()
    listening = asyncio.create_task(shared.listen(listener, lambda error: None, subscribed))
    try:
        await shared.opened(_stream(), ttl_ms=60_000)
        await asyncio.wait_for(subscribed.wait(), HANG_GUARD_S)
        await shared.raise_voucher(
            "buyer-key", "intent-1", {"v": 1}, Decimal("0.00005"), publish=True
        )
        await shared.publish_stop("buyer-key", "intent-1", {"s": 1})
        first = await asyncio.wait_for(heard.get(), HANG_GUARD_S)
        second = await asyncio.wait_for(heard.get(), HANG_GUARD_S)
    finally:
        listening.cancel()
        await asyncio.gather(listening, return_exceptions=True)
        await shared.aclose()
    assert first == ("voucher", "buyer-key", "intent-1", {"v": 1})
    assert second == ("stop", "buyer-key", "intent-1", {"s": 1})
