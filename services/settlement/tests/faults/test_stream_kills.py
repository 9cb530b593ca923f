"""Streams through real processes (``pact-settlement serve`` on Postgres, ``pact-provider
serve`` selling :mod:`fixtures.stream_goods`), broken mid-stream: the provider SIGKILLed and
restarted, settlement SIGKILLed and restarted, the buyer gone (it stops paying, or it drops the
connection), the seller gone (its handler stops yielding).

Each ends with the money right (docs/protocol.md, "Streaming", "What a crash costs"): the
seller is paid exactly the highest voucher settlement has on record, and that is at least the
highest voucher the provider acknowledged (no signed, acknowledged voucher's money is lost) and
at most the highest the buyer signed; the buyer gets the rest of the budget back; nothing stays
locked; the ledger is conserved.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from fixtures.faults import (
    ADMIN_AUTH,
    PROVIDER_AUTH,
    Stack,
    ledger_problems,
    running_stack,
)
from fixtures.streams import ElsewhereBuyer
from fixtures.waits import HANG_GUARD_S
from pact_schema.stream_client import StreamBuyer, StreamResult
from pact_schema.streaming import amount_for_ticks

pytestmark = [pytest.mark.faults, pytest.mark.postgres, pytest.mark.processes]

BUDGET = Decimal("0.05")
PLANNED = 2_000
FUNDS = Decimal(1)
CHECKPOINT_EVERY = 100
SETTLEMENT = {"PACT_SETTLEMENT_REQUIRE_SELLER_BOND": "false"}
PROVIDER = {
    "PACT_PROVIDER_STREAM_CHECKPOINT_TICKS": str(CHECKPOINT_EVERY),
    "PACT_PROVIDER_SETTLEMENT_BACKOFF_S": "0.05",
}


class Buyer(StreamBuyer):
    """A StreamBuyer that records the highest voucher the provider acknowledged, the highest
    it signed, and can stop paying (a buyer that went silent but keeps the connection)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.acknowledged = 0  # ticks of the highest voucher answered 200
        self.signed = 0  # ticks of the highest voucher signed (sent or not)
        self.silent_after: int | None = None
        self.chunk_seen = asyncio.Event()
        self.seen = 0

    async def _pay(self, result: StreamResult, price: Decimal) -> None:
        if self.silent_after is not None and result.ticks >= self.silent_after:
            await asyncio.Event().wait()  # never pays again, never reads again
        self.signed = result.ticks + 1
        await super()._pay(result, price)
        self.acknowledged = result.ticks

    def count(self, _chunk: bytes) -> None:
        self.seen += 1
        self.chunk_seen.set()


async def _open_stream(stack: Stack, pact: Any, *, fund: bool = True) -> str:
    """Fund the buyer (``fund``) and lock a streaming budget; the intent id."""
    async with httpx.AsyncClient(base_url=stack.settlement.url, timeout=30) as http:
        if fund:
            r = await http.post(
                f"/v1/accounts/{pact.buyer.public_key_b58}/deposits",
                json={"amount": str(FUNDS)},
                headers={**ADMIN_AUTH, "Idempotency-Key": f"fund-{pact.buyer.public_key_b58}"},
            )
            assert r.status_code == 201, r.text
        accept = pact.accept(
            price=BUDGET,
            bond=Decimal(0),
            settlement_mode="streaming",
            delivery_in_ms=600_000,
            valid_for_ms=120_000,
        )
        r = await http.post(
            "/v1/settlements",
            json={"accept": accept, "rail": None},
            headers={**PROVIDER_AUTH, "Idempotency-Key": f"accept-{accept['message_hash_hex']}"},
        )
        assert r.status_code == 201, r.text
        assert r.json()["state"] == "streaming", r.json()
        return str(r.json()["intent_id"])


def _buyer(url: str, pact: Any, intent_id: str, **options: Any) -> Buyer:
    buyer = Buyer(
        url,
        pact.buyer,
        seller=pact.provider.public_key_b58,
        intent_id=intent_id,
        budget=BUDGET,
        tick_ms=1,
        planned_ticks=PLANNED,
        **options,
    )
    buyer.on_chunk = buyer.count
    return buyer


async def _until(buyer: Buyer, chunks: int) -> None:
    deadline = time.monotonic() + HANG_GUARD_S
    while buyer.seen < chunks:
        assert time.monotonic() < deadline, f"only {buyer.seen} chunks arrived"
        buyer.chunk_seen.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(buyer.chunk_seen.wait(), 1)


async def _settled(stack: Stack, intent_id: str, buyer_key: str) -> dict[str, Any]:
    """The settlement once it has left ``streaming`` (bounded by the hang guard)."""
    deadline = time.monotonic() + HANG_GUARD_S
    async with httpx.AsyncClient(base_url=stack.settlement.url, timeout=10) as http:
        while True:
            with contextlib.suppress(httpx.HTTPError):
                r = await http.get(
                    f"/v1/settlements/{intent_id}",
                    params={"buyer": buyer_key},
                    headers=ADMIN_AUTH,
                )
                if r.status_code == 200 and r.json()["state"] != "streaming":
                    return dict(r.json())
            assert time.monotonic() < deadline, f"{intent_id} never closed"
            await asyncio.sleep(0.2)


async def _highest_on_record(stack: Stack, settlement_id: str) -> int:
    """Ticks of the highest STREAM_VOUCHER in the settlement's transcript."""
    async with httpx.AsyncClient(base_url=stack.settlement.url, timeout=10) as http:
        transcript = (
            await http.get(f"/v1/settlements/{settlement_id}/transcript", headers=ADMIN_AUTH)
        ).json()
    ticks = [
        e["envelope"]["message"]["ticks"]
        for e in transcript["envelopes"]
        if e["envelope"].get("message", {}).get("type") == "STREAM_VOUCHER"
    ]
    return max(ticks, default=0)


async def _assert_money_right(
    stack: Stack, pact: Any, settled: dict[str, Any], *, at_least: int, at_most: int
) -> int:
    """The seller got exactly the highest voucher on record, within [at_least, at_most]
    ticks; the buyer the rest; nothing locked; the ledger conserved. The ticks paid."""
    receipt = settled["receipt"]["message"]
    ticks = int(receipt["ticks"])
    assert at_least <= ticks <= at_most, (at_least, ticks, at_most)
    assert ticks == await _highest_on_record(stack, settled["id"])
    paid = amount_for_ticks(BUDGET, PLANNED, ticks)
    assert Decimal(str(receipt["paid_amount"])) == paid
    async with httpx.AsyncClient(base_url=stack.settlement.url, timeout=10) as http:
        seller = (
            await http.get(f"/v1/accounts/{pact.provider.public_key_b58}", headers=ADMIN_AUTH)
        ).json()
        buyer = (
            await http.get(f"/v1/accounts/{pact.buyer.public_key_b58}", headers=ADMIN_AUTH)
        ).json()
    assert (Decimal(seller["available"]), Decimal(seller["locked"])) == (paid, 0)
    assert (Decimal(buyer["available"]), Decimal(buyer["locked"])) == (FUNDS - paid, 0)
    assert await ledger_problems(stack.dsn) == {
        "assets not summing to zero": [],
        "unbalanced transactions": [],
        "balances off their legs": [],
    }
    return ticks


async def _run_quietly(buyer: Buyer) -> StreamResult | None:
    """The buyer's run, which a kill may break."""
    try:
        return await buyer.run()
    except (httpx.HTTPError, ValueError):
        return None


async def test_provider_sigkill_mid_stream_pays_every_acknowledged_voucher(
    fault_database: str, pact: Any, tmp_path: Path, redis_prefix: tuple[str, str]
) -> None:
    """The provider is SIGKILLed between checkpoints and restarted. Its vouchers since the
    last checkpoint were acknowledged only once in the shared store, so the restarted
    provider's recovery closes the stream at the highest of them, not at the checkpoint."""
    url, prefix = redis_prefix
    shared = PROVIDER | {
        "PACT_PROVIDER_QUOTE_STORE_URL": url,
        "PACT_PROVIDER_QUOTE_STORE_PREFIX": prefix,
    }
    async with running_stack(
        fault_database,
        tmp_path,
        pact.provider,
        settings=SETTLEMENT,
        providers=1,
        provider_settings=shared,
    ) as stack:
        intent_id = await _open_stream(stack, pact)
        buyer = _buyer(stack.provider.url, pact, intent_id)
        run = asyncio.create_task(_run_quietly(buyer))
        await _until(buyer, 250)  # two checkpoints behind it, 50 ticks since the last
        await asyncio.to_thread(stack.provider.kill)
        assert await run is None  # the stream broke
        await buyer.aclose()
        acknowledged, signed = buyer.acknowledged, buyer.signed
        assert acknowledged % CHECKPOINT_EVERY != 0
        await asyncio.to_thread(stack.provider.start)
        settled = await _settled(stack, intent_id, pact.buyer.public_key_b58)
        assert settled["state"] == "released"
        assert settled["receipt"]["message"]["failure_code"] == "SELLER_STOPPED"
        await _assert_money_right(stack, pact, settled, at_least=acknowledged, at_most=signed)


async def test_settlement_sigkill_mid_stream_pays_the_final_voucher_after_restart(
    fault_database: str, pact: Any, tmp_path: Path
) -> None:
    """Settlement is SIGKILLed mid-stream; the stream goes on (ticks need no settlement), the
    buyer stops while settlement is down, and the provider's close, retried until settlement
    is back, pays exactly the buyer's final voucher."""
    async with running_stack(
        fault_database,
        tmp_path,
        pact.provider,
        settings=SETTLEMENT,
        providers=1,
        provider_settings=PROVIDER,
    ) as stack:
        intent_id = await _open_stream(stack, pact)
        buyer = _buyer(stack.provider.url, pact, intent_id, max_ticks=300)
        run = asyncio.create_task(buyer.run())
        await _until(buyer, 150)
        await asyncio.to_thread(stack.settlement.kill)
        result = await run
        await buyer.aclose()
        assert (result.code, result.ticks) == ("BUYER_STOPPED", 300)
        assert result.settlement is None  # settlement was down: the close is still to come
        await asyncio.to_thread(stack.settlement.start)
        settled = await _settled(stack, intent_id, pact.buyer.public_key_b58)
        assert settled["state"] == "released"
        assert settled["receipt"]["message"]["failure_code"] == "BUYER_STOPPED"
        await _assert_money_right(stack, pact, settled, at_least=300, at_most=300)


@pytest.mark.parametrize("how", ["stops_paying", "drops_the_connection"])
async def test_a_vanished_buyer_pays_exactly_what_it_signed(
    fault_database: str, pact: Any, tmp_path: Path, how: str
) -> None:
    """The buyer stops paying (the seller stops sending after its voucher timeout) or drops
    the connection (the provider closes at once): the seller is paid the last voucher."""
    settings = PROVIDER | {"PACT_PROVIDER_STREAM_VOUCHER_TIMEOUT_MS": "1000"}
    async with running_stack(
        fault_database,
        tmp_path,
        pact.provider,
        settings=SETTLEMENT,
        providers=1,
        provider_settings=settings,
    ) as stack:
        intent_id = await _open_stream(stack, pact)
        buyer = _buyer(stack.provider.url, pact, intent_id)
        if how == "stops_paying":
            buyer.silent_after = 120
        run = asyncio.create_task(_run_quietly(buyer))
        await _until(buyer, 120)
        if how == "drops_the_connection":
            run.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await run
        settled = await _settled(stack, intent_id, pact.buyer.public_key_b58)
        run.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await run
        await buyer.aclose()
        assert settled["state"] == "released"
        code = "SELLER_STOPPED" if how == "stops_paying" else "BUYER_STOPPED"
        assert settled["receipt"]["message"]["failure_code"] == code
        await _assert_money_right(
            stack, pact, settled, at_least=buyer.acknowledged, at_most=buyer.signed
        )


async def test_a_vanished_seller_cannot_hold_the_stream_open(
    fault_database: str, pact: Any, tmp_path: Path
) -> None:
    """The seller's handler stops yielding after 40 chunks and never returns; the buyer,
    getting nothing more, stops; the stream closes at once at the 40 ticks paid."""
    settings = PROVIDER | {"STREAM_GOODS_STALL_AFTER": "40"}
    async with running_stack(
        fault_database,
        tmp_path,
        pact.provider,
        settings=SETTLEMENT,
        providers=1,
        provider_settings=settings,
    ) as stack:
        intent_id = await _open_stream(stack, pact)
        buyer = _buyer(stack.provider.url, pact, intent_id)
        run = asyncio.create_task(buyer.run())
        await _until(buyer, 40)
        while buyer.acknowledged < 40:  # noqa: ASYNC110 - the 40th voucher is in flight
            await asyncio.sleep(0.05)
        await buyer._stop("BUYER_STOPPED", "the seller stopped sending")
        result = await asyncio.wait_for(run, HANG_GUARD_S)
        await buyer.aclose()
        assert (result.code, result.ticks, len(result.chunks)) == ("BUYER_STOPPED", 40, 40)
        assert result.settlement is not None
        assert result.settlement["state"] == "released"
        await _assert_money_right(stack, pact, result.settlement, at_least=40, at_most=40)


class CountingElsewhereBuyer(ElsewhereBuyer, Buyer):
    """A :class:`Buyer` whose vouchers and stops go to another replica than its stream."""


async def test_two_replicas_vouchers_and_stop_to_the_other_one_then_a_replica_dies(
    fault_database: str, pact: Any, tmp_path: Path, redis_prefix: tuple[str, str]
) -> None:
    """Two provider replicas share the quote store. A stream served by the first takes
    every voucher and its stop through the second, and settles exactly; a second stream on
    the first replica loses that replica to SIGKILL, and the second replica, never
    restarted, closes it at the highest acknowledged voucher."""
    url, prefix = redis_prefix
    shared = PROVIDER | {
        "PACT_PROVIDER_QUOTE_STORE_URL": url,
        "PACT_PROVIDER_QUOTE_STORE_PREFIX": prefix,
    }
    async with running_stack(
        fault_database,
        tmp_path,
        pact.provider,
        settings=SETTLEMENT,
        providers=2,
        provider_settings=shared,
    ) as stack:
        first, second = stack.providers
        intent_id = await _open_stream(stack, pact)
        buyer = CountingElsewhereBuyer(
            first.url,
            pact.buyer,
            seller=pact.provider.public_key_b58,
            intent_id=intent_id,
            budget=BUDGET,
            tick_ms=1,
            planned_ticks=PLANNED,
            max_ticks=300,
            control_url=second.url,
        )
        result = await buyer.run()
        await buyer.aclose()
        assert (result.code, result.ticks) == ("BUYER_STOPPED", 300)
        assert result.settlement is not None
        assert result.settlement["state"] == "released"
        await _assert_money_right(stack, pact, result.settlement, at_least=300, at_most=300)
        paid = amount_for_ticks(BUDGET, PLANNED, 300)

        # A second trade (the same buyer and seller), on the first replica, which dies.
        intent_id = await _open_stream(stack, pact, fund=False)
        buyer = _buyer(first.url, pact, intent_id)
        run = asyncio.create_task(_run_quietly(buyer))
        await _until(buyer, 150)
        await asyncio.to_thread(first.kill)
        assert await run is None
        await buyer.aclose()
        settled = await _settled(stack, intent_id, pact.buyer.public_key_b58)
        assert settled["receipt"]["message"]["failure_code"] == "SELLER_STOPPED"
        ticks = int(settled["receipt"]["message"]["ticks"])
        assert buyer.acknowledged <= ticks <= buyer.signed
        assert ticks == await _highest_on_record(stack, settled["id"])
        assert await ledger_problems(stack.dsn) == {
            "assets not summing to zero": [],
            "unbalanced transactions": [],
            "balances off their legs": [],
        }
        async with httpx.AsyncClient(base_url=stack.settlement.url, timeout=10) as http:
            seller = (
                await http.get(f"/v1/accounts/{pact.provider.public_key_b58}", headers=ADMIN_AUTH)
            ).json()
        assert Decimal(seller["available"]) == paid + amount_for_ticks(BUDGET, PLANNED, ticks)
