"""The done-when test of streaming settlement: a 1,000-tick stream through the provider (a
real uvicorn server streaming server-sent events) and settlement (on SQLite and Postgres),
paid tick by tick with signed vouchers, settles the exact amount with a constant number of
money movements; the calls the provider makes to settlement are counted too."""

from __future__ import annotations

import asyncio
import contextlib
from decimal import Decimal
from typing import Any

import httpx
from fixtures.streams import CHECKPOINT_EVERY, ElsewhereBuyer, provider_server
from pact_schema import parse_message
from pact_schema.stream_client import StreamBuyer
from pact_schema.streaming import amount_for_ticks
from pact_schema.transcript import verify_transcript
from sqlalchemy import text

BUDGET = Decimal("0.05")
PLANNED = 2_000
TICKS = 1_000


async def _open_stream(api: Any, pact: Any, *, delivery_in_ms: int = 300_000) -> str:
    """A funded buyer's streaming ACCEPT of BUDGET, created at settlement: its intent id."""
    await api.deposit(pact.buyer.public_key_b58, "1")
    accept = pact.accept(
        price=BUDGET, bond=Decimal(0), settlement_mode="streaming", delivery_in_ms=delivery_in_ms
    )
    created = await api.create(accept)
    assert created.status_code == 201, created.text
    intent_id: str = created.json()["intent_id"]
    return intent_id


def _buyer(
    url: str,
    pact: Any,
    intent_id: str,
    *,
    kind: type[StreamBuyer] = StreamBuyer,
    tick_ms: int = 1,
    **options: Any,
) -> StreamBuyer:
    """The test buyer streaming ``intent_id`` from the provider at ``url``: BUDGET over
    PLANNED ticks, ``tick_ms`` apart."""
    return kind(
        url,
        pact.buyer,
        seller=pact.provider.public_key_b58,
        intent_id=intent_id,
        budget=BUDGET,
        tick_ms=tick_ms,
        planned_ticks=PLANNED,
        **options,
    )


async def test_a_thousand_tick_stream_through_both_services_settles_exactly(
    app: Any, api: Any, pact: Any, engine: Any
) -> None:
    buyer_key, seller_key = pact.buyer.public_key_b58, pact.provider.public_key_b58
    intent_id = await _open_stream(api, pact)
    async with provider_server(app, pact.provider) as (url, counting):
        buyer = _buyer(url, pact, intent_id, max_ticks=TICKS)
        try:
            result = await buyer.run()
        finally:
            await buyer.aclose()
    paid = amount_for_ticks(BUDGET, PLANNED, TICKS)
    assert (result.code, result.ticks, result.paid_amount) == ("BUYER_STOPPED", TICKS, paid)
    assert len(result.chunks) >= TICKS
    assert result.chunks[0] == f"{intent_id}:0".encode()
    settlement = result.settlement
    assert settlement is not None
    assert settlement["state"] == "released"
    receipt = parse_message(settlement["receipt"]["message"])
    assert (receipt.paid_amount, receipt.ticks, receipt.failure_code) == (
        paid,
        TICKS,
        "BUYER_STOPPED",
    )
    assert await api.balances(seller_key) == (paid, Decimal(0))
    assert await api.balances(buyer_key) == (Decimal(1) - paid, Decimal(0))
    # Money moved twice (the lock, one partial release), whatever the number of ticks.
    async with engine.connect() as conn:
        kinds = sorted(
            str(r[0])
            for r in await conn.execute(
                text("SELECT kind FROM journal_transactions WHERE settlement_id = :id"),
                {"id": settlement["id"]},
            )
        )
    assert kinds == ["lock", "release_partial"]
    # The provider called settlement once to find the stream, at most once per
    # CHECKPOINT_EVERY ticks, and once to close: not once per tick.
    assert counting.calls["POST close"] == 1
    assert 1 <= counting.calls["POST checkpoints"] <= TICKS // CHECKPOINT_EVERY
    assert sum(counting.calls.values()) <= 2 + TICKS // CHECKPOINT_EVERY
    transcript = (
        await api.client.get(
            f"/v1/settlements/{settlement['id']}/transcript", headers=api.admin_auth
        )
    ).json()
    assert verify_transcript(transcript).ok
    final = transcript["envelopes"][-2]
    assert final["kind"] == "stop"
    checkpoints = [e for e in transcript["envelopes"] if e["kind"] == "checkpoint"]
    assert checkpoints[-1]["envelope"] == result.final_voucher


class _VanishedError(Exception):
    pass


async def _wait_for_state(api: Any, intent_id: str, state: str) -> dict[str, Any]:
    """Poll until settlement shows ``state`` (bounded: the provider's close is one call)."""
    for _ in range(500):
        body = await api.settlement(intent_id)
        if body["state"] == state:
            return body
        await asyncio.sleep(0.02)
    raise AssertionError(f"{intent_id} never became {state}: {body['state']}")


async def test_a_buyer_that_vanishes_mid_stream_pays_only_what_it_signed(
    app: Any, api: Any, pact: Any
) -> None:
    intent_id = await _open_stream(api, pact)
    seen: list[bytes] = []

    def read(chunk: bytes) -> None:
        seen.append(chunk)
        if len(seen) == 51:  # the 51st chunk arrives, is never paid, and the buyer is gone
            raise _VanishedError

    async with provider_server(app, pact.provider) as (url, _counting):
        buyer = _buyer(url, pact, intent_id, on_chunk=read)
        with contextlib.suppress(_VanishedError):
            await buyer.run()
        await buyer.aclose()
        body = await _wait_for_state(api, intent_id, "released")
    paid = amount_for_ticks(BUDGET, PLANNED, 50)
    assert body["receipt"]["message"]["ticks"] == 50
    assert body["receipt"]["message"]["failure_code"] == "BUYER_STOPPED"
    assert await api.balances(pact.provider.public_key_b58) == (paid, Decimal(0))
    assert await api.balances(pact.buyer.public_key_b58) == (Decimal(1) - paid, Decimal(0))


async def test_the_reference_stream_chunk_shape_serves_a_running_streams_chunks(
    app: Any, api: Any, pact: Any
) -> None:
    from pact_schema import verify_envelope

    intent_id = await _open_stream(api, pact)
    fetched: list[dict[str, Any]] = []
    async with (
        provider_server(app, pact.provider) as (url, _counting),
        httpx.AsyncClient(base_url=url) as reference_buyer,
    ):

        async def fetch_while_running(chunk: bytes) -> None:
            answer = await reference_buyer.post(
                "/stream/chunk", json={"intent_id": intent_id, "seq": 0}
            )
            fetched.append(answer.json())

        pending: list[asyncio.Task[None]] = []
        buyer = _buyer(
            url,
            pact,
            intent_id,
            tick_ms=5,
            max_ticks=20,
            on_chunk=lambda c: (
                pending.append(asyncio.create_task(fetch_while_running(c)))
                if len(pending) < 3
                else None
            ),
        )
        result = await buyer.run()
        await buyer.aclose()
        await asyncio.gather(*pending)
    assert result.code == "BUYER_STOPPED"
    envelopes = [f["envelope"] for f in fetched]
    signed = [verify_envelope(e) for e in envelopes if e["message"]["type"] == "STREAM_CHUNK"]
    assert signed, fetched
    assert signed[0].signer == pact.provider.public_key_b58
    assert signed[0].message_raw["seq"] == 0


async def test_pact_stream_cli_pays_a_stream_and_prints_the_receipt(
    app: Any, api: Any, pact: Any, tmp_path: Any, capsys: Any
) -> None:
    from pact_schema.cli import main

    intent_id = await _open_stream(api, pact)
    key_file = tmp_path / "buyer.json"
    pact.buyer.save(key_file)
    async with provider_server(app, pact.provider) as (url, _counting):
        code = await asyncio.to_thread(
            main,
            [
                "stream",
                url,
                "--intent",
                intent_id,
                "--budget",
                str(BUDGET),
                "--tick-ms",
                "1",
                "--planned-ticks",
                str(PLANNED),
                "--max-ticks",
                "30",
                "--max-spend-per-minute",
                "0.01",
                "--key-file",
                str(key_file),
                "--json",
            ],
        )
    out = capsys.readouterr().out
    assert code == 0, out
    import json

    # The apps' log lines share stdout with the CLI's one JSON line.
    [line] = [x for x in out.splitlines() if '"final_voucher"' in x]
    result = json.loads(line)
    assert (result["code"], result["ticks"]) == ("BUYER_STOPPED", 30)
    assert result["settlement"]["receipt"]["message"]["ticks"] == 30


async def test_the_spend_cap_stops_the_stream_with_the_reference_code(
    app: Any, api: Any, pact: Any
) -> None:
    intent_id = await _open_stream(api, pact)
    cap = amount_for_ticks(BUDGET, PLANNED, 40)  # 40 ticks a minute, no more
    async with provider_server(app, pact.provider) as (url, _counting):
        buyer = _buyer(url, pact, intent_id, max_spend_per_minute=cap)
        result = await buyer.run()
        await buyer.aclose()
    assert result.code == "STREAMING_SPEND_CAP_EXCEEDED"
    assert result.ticks == 40
    assert result.settlement is not None
    receipt = result.settlement["receipt"]["message"]
    assert receipt["failure_code"] == "STREAMING_SPEND_CAP_EXCEEDED"
    assert Decimal(str(receipt["paid_amount"])) == cap
    assert await api.balances(pact.provider.public_key_b58) == (cap, Decimal(0))


async def test_a_provider_that_dies_mid_stream_loses_at_most_the_ticks_since_a_checkpoint(
    app: Any, api: Any, pact: Any, clock: Any
) -> None:
    """The provider process is gone (its server torn down with no close sent): the buyer's
    stream breaks, and settlement's sweeper closes the stream at its deadline at the last
    checkpoint. The seller is paid exactly the checkpointed voucher, never more; what it lost
    is bounded by STREAM_CHECKPOINT_TICKS."""
    from pact_settlement.workers.sweeper import Sweeper

    intent_id = await _open_stream(api, pact, delivery_in_ms=60_000)
    died = asyncio.Event()
    seen: list[bytes] = []

    def read(chunk: bytes) -> None:
        seen.append(chunk)
        if len(seen) == 250:
            died.set()

    async with provider_server(app, pact.provider) as (url, counting):
        buyer = _buyer(url, pact, intent_id, on_chunk=read)
        run = asyncio.create_task(buyer.run())
        await asyncio.wait_for(died.wait(), 60)
        # From here on the provider reaches settlement no more, as if killed: its in-memory
        # vouchers since the last checkpoint, and its close, never arrive.
        counting.dead = True
        run.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await run
        await buyer.aclose()
    body = await api.settlement(intent_id)
    assert body["state"] == "streaming"
    clock.offset_ms = 61_000
    s = app.state.settlement
    sweeper = Sweeper(
        s.sessionmaker, settings=s.settings, metrics=s.metrics, applier=s.applier, clock=s.clock
    )
    report = await sweeper.run_once()
    assert report.ended == {intent_id: "released"}
    body = await api.settlement(intent_id)
    receipt = body["receipt"]["message"]
    assert receipt["failure_code"] == "STREAM_DEADLINE_PASSED"
    ticks = receipt["ticks"]
    assert ticks % CHECKPOINT_EVERY == 0
    assert 250 - CHECKPOINT_EVERY - 1 <= ticks <= 250
    paid = amount_for_ticks(BUDGET, PLANNED, ticks)
    assert Decimal(str(receipt["paid_amount"])) == paid
    assert await api.balances(pact.provider.public_key_b58) == (paid, Decimal(0))
    assert await api.balances(pact.buyer.public_key_b58) == (Decimal(1) - paid, Decimal(0))


async def test_two_replicas_sharing_a_store_take_each_others_vouchers_and_stop(
    app: Any, api: Any, pact: Any, redis_prefix: tuple[str, str]
) -> None:
    """With the quote store shared, a stream served by one replica is paid and stopped
    through the other (decision 19), and settles exactly; without it the other answers 404."""
    url, prefix = redis_prefix
    intent_id = await _open_stream(api, pact)
    shared = {"quote_store_url": url, "quote_store_prefix": prefix}
    async with (
        provider_server(app, pact.provider, **shared) as (serving, _a),
        provider_server(app, pact.provider, **shared) as (other, _b),
    ):
        buyer = _buyer(
            serving, pact, intent_id, kind=ElsewhereBuyer, control_url=other, max_ticks=120
        )
        try:
            result = await buyer.run()
        finally:
            await buyer.aclose()
    paid = amount_for_ticks(BUDGET, PLANNED, 120)
    assert (result.code, result.ticks, result.paid_amount) == ("BUYER_STOPPED", 120, paid)
    assert result.settlement is not None
    assert result.settlement["state"] == "released"
    assert result.settlement["receipt"]["message"]["ticks"] == 120
    assert await api.balances(pact.provider.public_key_b58) == (paid, Decimal(0))


async def test_without_a_shared_store_another_replica_does_not_know_the_stream(
    app: Any, api: Any, pact: Any
) -> None:
    intent_id = await _open_stream(api, pact)
    async with (
        provider_server(app, pact.provider) as (serving, _a),
        provider_server(app, pact.provider) as (other, _b),
    ):
        buyer = _buyer(
            serving, pact, intent_id, kind=ElsewhereBuyer, control_url=other, max_ticks=10
        )
        try:
            with contextlib.suppress(Exception):
                await buyer.run()
            refused = await buyer._post("vouchers", {"voucher": {"signer_public_key_b58": "x"}})
        finally:
            await buyer.aclose()
    assert refused.status_code == 404
    assert refused.json()["code"] == "NOT_FOUND"
