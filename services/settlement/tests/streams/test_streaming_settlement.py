"""Streaming settlement through the running app: one lock, checkpoints, one closing payment.

Every promise is attacked the way a hostile buyer or seller would: vouchers above the budget,
signed by someone else, replayed or lower; a close that claims more than the buyer signed; a
buyer that vanishes (the sweeper closes at the last checkpoint)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import pytest
from pact_schema import Keypair, parse_message
from pact_schema.streaming import amount_for_ticks, sign_voucher
from pact_schema.transcript import verify_transcript
from pact_settlement.workers.sweeper import Sweeper
from sqlalchemy import text

BUDGET = Decimal("0.05")
PLANNED = 2_000
AUTH = {"Authorization": "Bearer test-provider-token-0123456789abcdef"}


class Stream:
    """A buyer paying a stream, and the provider presenting its vouchers."""

    def __init__(self, api: Any, pact: Any, intent_id: str) -> None:
        self.api = api
        self.pact = pact
        self.intent_id = intent_id
        self.client: httpx.AsyncClient = api.client
        self.calls = 0  # HTTP calls to settlement after the create

    def voucher(
        self, ticks: int, *, signer: Keypair | None = None, amount: Decimal | None = None
    ) -> dict[str, Any]:
        return sign_voucher(
            signer or self.pact.buyer,
            intent_id=self.intent_id,
            seller=self.pact.provider.public_key_b58,
            ticks=ticks,
            paid_amount=amount if amount is not None else amount_for_ticks(BUDGET, PLANNED, ticks),
            seq=ticks,
            sent_at_ms=1_000 + ticks,
        )

    async def checkpoint(self, voucher: dict[str, Any]) -> httpx.Response:
        self.calls += 1
        return await self.client.post(
            f"/v1/settlements/{self.intent_id}/checkpoints",
            json={"voucher": voucher},
            headers=AUTH,
        )

    async def close(self, body: dict[str, Any], *, key: str = "close-1") -> httpx.Response:
        self.calls += 1
        return await self.client.post(
            f"/v1/settlements/{self.intent_id}/close",
            json=body,
            headers={**AUTH, "Idempotency-Key": key},
        )


async def _open(api: Any, pact: Any, *, deposit: str = "1", **accept: Any) -> Stream:
    await api.deposit(pact.buyer.public_key_b58, deposit)
    envelope = pact.accept(price=BUDGET, bond=Decimal(0), settlement_mode="streaming", **accept)
    response = await api.create(envelope)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["state"] == "streaming"
    assert body["commit_by_at"] is None
    return Stream(api, pact, body["intent_id"])


async def _journal_transactions(engine: Any, settlement_id: str) -> list[str]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT kind FROM journal_transactions WHERE settlement_id = :id ORDER BY kind"),
            {"id": settlement_id},
        )
        return [str(r[0]) for r in rows]


async def test_a_thousand_tick_stream_settles_the_highest_voucher_in_two_money_movements(
    api: Any, pact: Any, engine: Any
) -> None:
    stream = await _open(api, pact)
    buyer, seller = pact.buyer.public_key_b58, pact.provider.public_key_b58
    assert await api.balances(buyer) == (Decimal("0.95"), BUDGET)  # the budget locked once
    ticks, every = 1_000, 100
    vouchers = [stream.voucher(t) for t in range(1, ticks + 1)]  # one per tick, no HTTP
    for tick in range(every, ticks, every):
        answer = await stream.checkpoint(vouchers[tick - 1])
        assert answer.status_code == 200, answer.text
        assert answer.json()["recorded"] is True
    closed = await stream.close(
        {
            "voucher": vouchers[-1],
            "by": "buyer",
            "code": "BUYER_STOPPED",
            "reason": "enough",
            "chunks": ticks,
        }
    )
    assert closed.status_code == 200, closed.text
    body = closed.json()
    paid = amount_for_ticks(BUDGET, PLANNED, ticks)
    assert paid == Decimal("0.025")
    assert body["state"] == "released"
    assert await api.balances(seller) == (paid, Decimal(0))
    assert await api.balances(buyer) == (Decimal(1) - paid, Decimal(0))
    # Constant money movements: the lock and one partial release, whatever the tick count.
    kinds = await _journal_transactions(engine, body["id"])
    assert kinds == ["lock", "release_partial"]
    assert stream.calls == ticks // every  # 9 checkpoints + 1 close for 1,000 ticks
    receipt = parse_message(body["receipt"]["message"])
    assert receipt.paid_amount == paid
    assert (receipt.ticks, receipt.chunks, receipt.fulfilled) == (ticks, ticks, False)
    assert receipt.failure_code == "BUYER_STOPPED"
    assert body["receipt"]["message"]["checkpoints"] == ticks // every
    transcript = (
        await api.client.get(f"/v1/settlements/{body['id']}/transcript", headers=api.admin_auth)
    ).json()
    kinds_listed = [e["kind"] for e in transcript["envelopes"]]
    assert kinds_listed[-1] == "receipt"
    assert kinds_listed.count("checkpoint") == ticks // every
    check = verify_transcript(transcript)
    assert check.ok, check.lines


async def test_a_stream_used_to_its_budget_is_fulfilled(api: Any, pact: Any) -> None:
    stream = await _open(api, pact)
    closed = await stream.close(
        {
            "voucher": stream.voucher(PLANNED),
            "by": "seller",
            "code": "COMPLETED",
            "reason": "budget used",
            "chunks": PLANNED,
        }
    )
    receipt = closed.json()["receipt"]["message"]
    assert receipt["fulfilled"] is True
    assert "failure_code" not in receipt
    assert Decimal(str(receipt["paid_amount"])) == BUDGET
    assert await api.balances(pact.buyer.public_key_b58) == (Decimal("0.95"), Decimal(0))


async def test_the_same_and_lower_vouchers_change_nothing(api: Any, pact: Any) -> None:
    stream = await _open(api, pact)
    high = stream.voucher(50)
    assert (await stream.checkpoint(high)).json()["recorded"] is True
    for again in (high, stream.voucher(49), stream.voucher(50)):
        answer = await stream.checkpoint(again)
        assert answer.status_code == 200, answer.text
        assert answer.json()["recorded"] is False
        assert answer.json()["ticks"] == 50
        assert Decimal(answer.json()["paid_amount"]) == amount_for_ticks(BUDGET, PLANNED, 50)


@pytest.mark.parametrize("fault", ["above_budget", "signed_by_seller", "other_buyer", "junk"])
async def test_hostile_vouchers_are_refused_and_move_nothing(
    api: Any, pact: Any, fault: str
) -> None:
    stream = await _open(api, pact)
    voucher: Any
    if fault == "above_budget":
        voucher = stream.voucher(10, amount=BUDGET + Decimal("0.00000001"))
    elif fault == "signed_by_seller":
        voucher = stream.voucher(10, signer=pact.provider)
    elif fault == "other_buyer":
        voucher = stream.voucher(10, signer=Keypair.generate())
    else:
        voucher = {"envelope_version": "pact-envelope/1.0", "message": {"x": 1}}
    answer = await stream.checkpoint(voucher)
    assert answer.status_code in (404, 422), answer.text
    if answer.status_code == 422:
        assert answer.json()["code"] == "VOUCHER_INVALID"
    body = await api.settlement(stream.intent_id)
    assert body["state"] == "streaming"
    assert await api.balances(pact.buyer.public_key_b58) == (Decimal("0.95"), BUDGET)


async def test_a_close_pays_only_the_highest_voucher_whatever_the_seller_claims(
    api: Any, pact: Any
) -> None:
    stream = await _open(api, pact)
    await stream.checkpoint(stream.voucher(200))
    claim = {"by": "seller", "code": "SELLER_STOPPED", "reason": "done", "chunks": 900}
    # An amount of its own choosing is not part of the close.
    refused = await stream.close({**claim, "amount": "0.05"})
    assert refused.status_code == 422
    # A higher "voucher" the seller signed itself is not the buyer's promise.
    forged = await stream.close({**claim, "voucher": stream.voucher(900, signer=pact.provider)})
    assert forged.status_code == 422
    assert forged.json()["code"] == "VOUCHER_INVALID"
    closed = await stream.close(claim, key="close-2")
    assert closed.status_code == 200, closed.text
    paid = amount_for_ticks(BUDGET, PLANNED, 200)
    assert await api.balances(pact.provider.public_key_b58) == (paid, Decimal(0))
    # The same close again answers the same; a checkpoint after the close cannot add money.
    again = await stream.close(claim, key="close-2")
    assert again.json()["receipt"] == closed.json()["receipt"]
    late = await stream.checkpoint(stream.voucher(1_500))
    assert late.status_code == 409
    assert await api.balances(pact.provider.public_key_b58) == (paid, Decimal(0))


async def test_a_stream_closed_with_no_voucher_refunds_the_budget(api: Any, pact: Any) -> None:
    stream = await _open(api, pact)
    closed = await stream.close(
        {"by": "buyer", "code": "BUYER_STOPPED", "reason": "changed my mind", "chunks": 0}
    )
    assert closed.json()["state"] == "refunded"
    assert closed.json()["receipt"]["message"]["failure_code"] == "BUYER_STOPPED"
    assert await api.balances(pact.buyer.public_key_b58) == (Decimal(1), Decimal(0))


async def test_a_vanished_buyer_is_closed_by_the_sweeper_at_the_last_checkpoint(
    app: Any, api: Any, pact: Any, clock: Any
) -> None:
    stream = await _open(api, pact, delivery_in_ms=10_000)
    await stream.checkpoint(stream.voucher(300))
    # ... the buyer goes silent; vouchers it never sent are never paid.
    clock.offset_ms = 11_000
    s = app.state.settlement
    sweeper = Sweeper(
        s.sessionmaker, settings=s.settings, metrics=s.metrics, applier=s.applier, clock=s.clock
    )
    report = await sweeper.run_once()
    assert report.ended == {stream.intent_id: "released"}
    body = await api.settlement(stream.intent_id)
    paid = amount_for_ticks(BUDGET, PLANNED, 300)
    assert body["receipt"]["message"]["failure_code"] == "STREAM_DEADLINE_PASSED"
    assert await api.balances(pact.provider.public_key_b58) == (paid, Decimal(0))
    assert await api.balances(pact.buyer.public_key_b58) == (Decimal(1) - paid, Decimal(0))


async def test_a_streaming_settlement_takes_no_commit(api: Any, pact: Any) -> None:
    from pact_schema import sign_message

    stream = await _open(api, pact)
    commit = sign_message(
        {
            "protocol_version": "pact/1.0",
            "type": "COMMIT",
            "intent_id": stream.intent_id,
            "commit_hash_hex": "0" * 64,
            "sent_at_ms": 1,
            "expires_at_ms": 2,
        },
        pact.provider,
    )
    answer = await api.client.post(
        f"/v1/settlements/{stream.intent_id}/commit",
        json={"commit": commit},
        headers={**AUTH, "Idempotency-Key": "c-1"},
    )
    assert answer.status_code == 409


class _WholeReleaseOnlyRail:
    """The ledger rail as a rail that cannot release part of a lock (no ``release_partial``)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = inner.name
        self.transactional = inner.transactional
        self.supports_bond = inner.supports_bond
        self.lock, self.release, self.refund = inner.lock, inner.release, inner.refund
        self.slash, self.status = inner.slash, inner.status


async def test_a_rail_that_cannot_release_part_refuses_streaming_before_locking(
    api: Any, pact: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pact_settlement.rails import registry

    ledger = registry.RAIL_FACTORIES["ledger"]
    monkeypatch.setitem(
        registry.RAIL_FACTORIES, "ledger", lambda *args: _WholeReleaseOnlyRail(ledger(*args))
    )
    await api.deposit(pact.buyer.public_key_b58, "1")
    response = await api.create(
        pact.accept(price=BUDGET, bond=Decimal(0), settlement_mode="streaming")
    )
    assert response.status_code == 422
    assert response.json()["code"] == "SETTLEMENT_MODE_NOT_ALLOWED"
    assert "streaming" in response.json()["detail"]
    assert await api.balances(pact.buyer.public_key_b58) == (Decimal(1), Decimal(0))
