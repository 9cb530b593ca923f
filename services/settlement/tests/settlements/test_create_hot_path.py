"""The ledger-rail create writes every row once, in its final state, and survives a dead
pooled connection without a pre-ping (issue 19).

The statements are counted through SQLAlchemy's ``before_cursor_execute`` hook on the app's
own engine: no wall clock, only what the create sends to the database.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
from pact_settlement.idempotency.models import IdempotencyKey
from pact_settlement.kit.errors import ConflictError, ProblemCode
from pact_settlement.ledger.models import JournalTransaction
from pact_settlement.rails.models import RailOperation
from pact_settlement.runtime import runtime_of
from pact_settlement.settlements.models import Settlement, SettlementEvent
from pact_settlement.settlements.service import _duplicate_intent
from sqlalchemy import event, insert, select
from sqlalchemy.exc import IntegrityError

#: What a ledger create sends on Postgres: the named locks, the idempotency and intent
#: lookups (one statement), the accounts row-locked, the webhook endpoints, then ONE statement
#: writing the settlement, its 2 events, the journal transaction and its legs, the balances,
#: the rail operation, the 2 transcripts and the idempotency record with its answer.
POSTGRES_STATEMENTS = 5
#: On SQLite: BEGIN IMMEDIATE, no named locks, the same 3 reads, then the writes one by one
#: (8 INSERTs and an UPDATE per account: 2 with the seller's bond).
SQLITE_MAX_STATEMENTS = 13


@contextmanager
def statements(app: Any) -> Iterator[list[str]]:
    seen: list[str] = []
    engine = runtime_of(app).engine.sync_engine

    def _record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(" ".join(statement.split()))

    event.listen(engine, "before_cursor_execute", _record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", _record)


def _writes_to(seen: list[str], verb: str, table: str) -> list[str]:
    """Statements that contain ``verb table`` (alone, or inside a WITH)."""
    pattern = re.compile(rf"\b{verb} {table}\b", re.IGNORECASE)
    return [s for s in seen if pattern.search(s)]


@pytest.mark.parametrize(
    "settings_overrides", [{"require_seller_bond": False}, {"require_seller_bond": True}]
)
async def test_a_ledger_create_writes_each_row_once_in_its_final_state(
    app: Any, api: Any, pact: Any, settings_overrides: dict[str, Any], backend: str
) -> None:
    await api.deposit(pact.buyer.public_key_b58, "1")
    await api.deposit(pact.provider.public_key_b58, "1")
    with statements(app) as seen:
        response = await api.create(pact.accept(price=Decimal("0.00008"), bond=Decimal("0.00016")))
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["state"] == "locked"
    assert [(e["from_state"], e["to_state"]) for e in body["events"]] == [
        (None, "pending"),
        ("pending", "locked"),
    ]

    # Inserted as they end: never pending first, then updated; no savepoint.
    for table in ("settlements", "rail_operations", "idempotency_keys", "settlement_events"):
        assert _writes_to(seen, "UPDATE", table) == [], table
    assert not [s for s in seen if s.upper().startswith(("SAVEPOINT", "RELEASE"))]
    if backend == "postgres":
        assert len(seen) == POSTGRES_STATEMENTS, "\n".join(seen)
        writes = [s for s in seen if s.upper().startswith("WITH")]
        assert len(writes) == 1  # every write in one statement, after every read
        assert seen[-1] == writes[0]
        for table in ("settlements", "settlement_events", "journal_transactions", "journal_legs"):
            assert _writes_to(writes, "INSERT INTO", table) == [writes[0]], table
    else:
        assert len(seen) <= SQLITE_MAX_STATEMENTS, "\n".join(seen)

    async with runtime_of(app).sessionmaker() as session:
        settlement = await session.get(Settlement, body["id"])
        assert settlement is not None
        assert settlement.state == "locked"
        assert settlement.locked_at is not None
        events = (
            await session.scalars(
                select(SettlementEvent)
                .where(SettlementEvent.settlement_id == body["id"])
                .order_by(SettlementEvent.seq)
            )
        ).all()
        assert [(e.seq, e.event) for e in events] == [
            (1, "settlement.created"),
            (2, "settlement.locked"),
        ]
        op = (
            await session.scalars(
                select(RailOperation).where(RailOperation.settlement_id == body["id"])
            )
        ).one()
        journal = (
            await session.scalars(
                select(JournalTransaction).where(JournalTransaction.settlement_id == body["id"])
            )
        ).one()
        assert (op.step, op.status, op.external_ref) == ("lock", "succeeded", journal.id)
        assert op.resolved_at is not None
        assert op.lease_until is None
        assert events[1].data == {"rail_step": "lock", "rail_reference": journal.id}
        record = (
            await session.scalars(
                select(IdempotencyKey).where(IdempotencyKey.resource_id == body["id"])
            )
        ).one()
        assert (record.status_code, record.response) == (201, body)
        assert record.completed_at is not None

    bond = Decimal("0.00016") if settings_overrides["require_seller_bond"] else Decimal(0)
    assert Decimal(body["bond_locked"]) == bond
    assert await api.balances(pact.buyer.public_key_b58) == (Decimal("0.99992"), Decimal("0.00008"))
    assert await api.balances(pact.provider.public_key_b58) == (Decimal(1) - bond, bond)


async def test_a_refused_ledger_create_takes_the_general_path_and_is_recorded(
    app: Any, api: Any, pact: Any
) -> None:
    """Nothing is written before the lock is known to succeed; a refusal is recorded as
    before (a failed settlement, 402, replayed as such)."""
    await api.deposit(pact.buyer.public_key_b58, "0.00001")
    accept = pact.accept(price=Decimal("0.00008"))
    first = await api.create(accept)
    assert first.status_code == 402, first.text
    assert first.json()["code"] == "INSUFFICIENT_ESCROW"
    again = await api.create(accept)
    assert (again.status_code, again.json()["code"]) == (402, "INSUFFICIENT_ESCROW")
    async with runtime_of(app).sessionmaker() as session:
        states = (await session.scalars(select(Settlement.state))).all()
    assert states == ["failed"]
    assert await api.balances(pact.buyer.public_key_b58) == (Decimal("0.00001"), Decimal(0))


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_a_dead_pooled_connection_is_replaced_without_a_pre_ping(
    app: Any, api: Any, pact: Any, database_url: str
) -> None:
    """The server drops every connection the service holds (as a restart does): the next
    requests still succeed, the first statement of each failed transaction run again once on
    a fresh connection, and no request pays a ping."""
    import asyncpg

    await api.deposit(pact.buyer.public_key_b58, "1")
    dsn = database_url.replace("postgresql+asyncpg://", "postgresql://")
    admin = await asyncpg.connect(dsn)
    try:
        killed = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name = 'pact-settlement'"
        )
    finally:
        await admin.close()
    assert killed >= 1
    with statements(app) as seen:
        response = await api.create(pact.accept())
    assert response.status_code == 201, response.text
    assert not [s for s in seen if s.strip() in (";", "SELECT 1")]  # no pre-ping
    assert await api.balances(pact.buyer.public_key_b58) == (Decimal("0.99992"), Decimal("0.00008"))


async def _insert_guarded(engine: Any, verified: Any, values: dict[str, Any]) -> None:
    async with engine.begin() as conn:
        with _duplicate_intent(verified):
            await conn.execute(insert(Settlement.__table__).values(values))


async def test_only_a_buyer_intent_violation_reads_as_a_duplicate_intent(
    app: Any, api: Any, pact: Any
) -> None:
    """The create's one write statement is wrapped to answer 409 DUPLICATE_INTENT when a
    concurrent writer won the (buyer, intent id) race; any other integrity error there (here
    a second row under an existing primary key) is a defect and is not disguised as one."""
    await api.deposit(pact.buyer.public_key_b58, "1")
    created = await api.create(pact.accept(price=Decimal("0.01"), bond=Decimal(0)))
    assert created.status_code == 201, created.text
    table = Settlement.__table__
    engine = runtime_of(app).engine
    async with engine.connect() as conn:
        row = dict((await conn.execute(select(table))).mappings().one())
    verified = SimpleNamespace(accept=SimpleNamespace(intent_id=row["intent_id"]))
    same_intent = row | {"id": "st_01kb0ybq0g7m4n6p8r0s2t4v6w"}
    with pytest.raises(ConflictError) as conflict:
        await _insert_guarded(engine, verified, same_intent)
    assert conflict.value.code == ProblemCode.DUPLICATE_INTENT
    same_id = row | {"intent_id": "intent-another-one"}
    with pytest.raises(IntegrityError):
        await _insert_guarded(engine, verified, same_id)
