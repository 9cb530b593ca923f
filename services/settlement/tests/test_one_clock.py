"""One clock: every timestamp the settlement service writes comes from the clock it was given.

The clock is frozen years away from the wall clock, so a single wall-clock read anywhere on
the path (an event time, ``locked_at``, a ledger posting, an idempotency record) shows.
"""

from __future__ import annotations

import base64
from datetime import datetime, timedelta
from typing import Any

from pact_schema import PROTOCOL_VERSION, Keypair, commit_hash_hex, sign_message
from pact_settlement.idempotency.models import IdempotencyKey
from pact_settlement.kit.time import from_ms, session_now
from pact_settlement.ledger.models import JournalTransaction, LedgerAccount
from pact_settlement.rails.models import RailOperation
from pact_settlement.settlements.models import Settlement, SettlementEvent
from pact_settlement.transcripts.models import Transcript
from sqlalchemy import select

T0 = 1_900_000_000_000  # 2030-03-17: no wall clock a test runs under is anywhere near it


def _commit(intent_id: str, signer: Keypair, sent: int) -> dict[str, Any]:
    message = {
        "protocol_version": PROTOCOL_VERSION,
        "type": "COMMIT",
        "intent_id": intent_id,
        "sent_at_ms": sent,
        "expires_at_ms": sent + 60_000,
        "commit_hash_hex": commit_hash_hex(
            base64.b64encode(b"payload").decode(), base64.b64encode(b"nonce").decode()
        ),
    }
    return sign_message(message, signer, signed_at_ms=sent)


async def _rows(app: Any, settlement_id: str) -> dict[str, list[Any]]:
    async with app.state.settlement.sessionmaker() as session:

        async def all_of(statement: Any) -> list[Any]:
            return list((await session.execute(statement)).scalars().all())

        return {
            "settlement": await all_of(select(Settlement).where(Settlement.id == settlement_id)),
            "events": await all_of(
                select(SettlementEvent)
                .where(SettlementEvent.settlement_id == settlement_id)
                .order_by(SettlementEvent.seq)
            ),
            "transcripts": await all_of(
                select(Transcript).where(Transcript.settlement_id == settlement_id)
            ),
            "postings": await all_of(
                select(JournalTransaction).where(JournalTransaction.settlement_id == settlement_id)
            ),
            "rail_ops": await all_of(
                select(RailOperation).where(RailOperation.settlement_id == settlement_id)
            ),
            "accounts": await all_of(select(LedgerAccount)),
            "idempotency": await all_of(select(IdempotencyKey)),
        }


async def test_a_settlement_is_stamped_by_the_service_clock_frozen_and_advanced(
    app: Any, api: Any, pact: Any, clock: Any
) -> None:
    clock.fixed_ms = T0
    at_lock = from_ms(T0)
    assert (await api.deposit(pact.buyer.public_key_b58, "1.0")).status_code == 201
    accept = pact.accept(sent_at_ms=T0, ask_sent_at_ms=T0)
    created = await api.create(accept)
    assert created.status_code == 201, created.text
    settlement_id = created.json()["id"]

    rows = await _rows(app, settlement_id)
    [settlement] = rows["settlement"]
    assert settlement.state == "locked"
    assert (settlement.created_at, settlement.updated_at, settlement.locked_at) == (at_lock,) * 3
    assert {event.created_at for event in rows["events"]} == {at_lock}
    assert rows["events"][0].event == "settlement.created"
    assert rows["transcripts"]
    assert {row.created_at for row in rows["transcripts"]} == {at_lock}
    assert rows["postings"]
    assert {row.created_at for row in rows["postings"]} == {at_lock}
    assert rows["rail_ops"]
    assert {(op.created_at, op.updated_at) for op in rows["rail_ops"]} == {(at_lock, at_lock)}
    assert {row.created_at for row in rows["idempotency"]} == {at_lock}
    assert {row.completed_at for row in rows["idempotency"]} == {at_lock}
    assert {row.updated_at for row in rows["accounts"]} == {at_lock}

    # The clock moves on: the COMMIT, and only it, is stamped with the new time.
    clock.fixed_ms = T0 + 2_500
    at_commit = from_ms(T0 + 2_500)
    intent_id = accept["message"]["intent_id"]
    headers = {**api.provider_auth, "Idempotency-Key": f"c-{intent_id}"}
    committed = await api.client.post(
        f"/v1/settlements/{intent_id}/commit",
        json={"commit": _commit(intent_id, pact.provider, T0 + 2_500)},
        headers=headers,
    )
    assert committed.status_code == 200, committed.text
    rows = await _rows(app, settlement_id)
    [settlement] = rows["settlement"]
    assert settlement.state == "committed"
    assert (settlement.committed_at, settlement.updated_at) == (at_commit, at_commit)
    assert (settlement.created_at, settlement.locked_at) == (at_lock, at_lock)
    assert [(event.event, event.created_at) for event in rows["events"]][-1] == (
        "settlement.committed",
        at_commit,
    )
    assert {row.created_at for row in rows["events"][:-1]} == {at_lock}
    body = await api.settlement(intent_id)
    assert datetime.fromisoformat(body["committed_at"]) == at_commit


async def test_sessions_carry_the_app_clock(app: Any, clock: Any) -> None:
    clock.fixed_ms = T0
    async with app.state.settlement.sessionmaker() as session:
        assert session_now(session) == from_ms(T0)
        clock.fixed_ms += 60_000
        assert session_now(session) == from_ms(T0) + timedelta(minutes=1)
