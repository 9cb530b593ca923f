"""The state machine: one table, compare-and-set transitions, one event per transition."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from pact_schema.clock import utcnow
from pact_settlement.kit.ids import new_id
from pact_settlement.settlements import state_machine
from pact_settlement.settlements.models import Settlement
from pact_settlement.settlements.repository import SettlementEventRepository, SettlementRepository
from pact_settlement.settlements.state_machine import (
    TERMINAL_STATES,
    TRANSITIONS,
    InvalidTransitionError,
    SettlementEventType,
    SettlementState,
    TransitionConflictError,
)
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

S, E = SettlementState, SettlementEventType
Maker = async_sessionmaker[AsyncSession]


def test_every_state_can_reach_a_terminal_state_and_terminals_are_final() -> None:
    graph: dict[SettlementState, set[SettlementState]] = {s: set() for s in S}
    for (origin, _), target in TRANSITIONS.items():
        graph[origin].add(target)
    for terminal in TERMINAL_STATES:
        assert graph[terminal] == set(), terminal
    for state in S:
        seen, frontier = {state}, [state]
        while frontier:
            for nxt in graph[frontier.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    frontier.append(nxt)
        assert seen & TERMINAL_STATES, f"{state} cannot end"
    assert set(S) - TERMINAL_STATES == {
        S.PENDING,
        S.LOCKED,
        S.COMMITTED,
        S.DELIVERED,
        S.STREAMING,
    }


def test_transition_table_is_the_documented_one() -> None:
    assert {(o.value, e.value, t.value) for (o, e), t in TRANSITIONS.items()} == {
        ("pending", "settlement.locked", "locked"),
        ("pending", "settlement.lock_failed", "failed"),
        ("locked", "settlement.committed", "committed"),
        ("locked", "settlement.refunded", "refunded"),
        ("locked", "settlement.slashed", "slashed"),
        ("committed", "settlement.delivered", "delivered"),
        ("committed", "settlement.refunded", "refunded"),
        ("committed", "settlement.slashed", "slashed"),
        ("delivered", "settlement.released", "released"),
        ("delivered", "settlement.refunded", "refunded"),
        ("delivered", "settlement.slashed", "slashed"),
        ("pending", "settlement.stream_opened", "streaming"),
        ("streaming", "settlement.stream_closed", "released"),
        ("streaming", "settlement.refunded", "refunded"),
    }


def _settlement() -> Settlement:
    now = utcnow()
    sid = new_id("st")
    return Settlement(
        id=sid,
        intent_id=f"intent-{sid}",
        rail="ledger",
        asset="USD",
        amount=Decimal("0.5"),
        bond=Decimal(0),
        bond_locked=Decimal(0),
        buyer="b",
        seller="s",
        settlement_mode="hash_reveal",
        proof_type="hash_reveal",
        challenge_window_ms=1000,
        delivery_deadline_ms=0,
        delivery_deadline_at=now + timedelta(minutes=1),
        quote_expires_at=now + timedelta(minutes=1),
        accept_hash="0" * 64,
        request_fingerprint="0" * 64,
    )


async def _started(maker: Maker) -> Settlement:
    settlement = _settlement()
    async with maker() as session, session.begin():
        await state_machine.start(session, settlement, actor="test")
    return settlement


async def test_transition_updates_state_and_appends_event_atomically(sessionmaker: Maker) -> None:
    settlement = await _started(sessionmaker)
    async with sessionmaker() as session, session.begin():
        row = await SettlementRepository.from_session(session).get_by_id(settlement.id)
        assert row is not None
        event = await state_machine.transition(session, row, E.LOCKED, actor="test")
        assert (event.seq, event.from_state, event.to_state) == (2, "pending", "locked")
        await state_machine.transition(session, row, E.SLASHED, actor="sweeper", reason="late")
        assert row.state == "slashed"
        assert row.closed_at is not None
    async with sessionmaker() as session:
        row = await SettlementRepository.from_session(session).get_by_id(settlement.id)
        events = await SettlementEventRepository.from_session(session).for_settlement(settlement.id)
    assert row is not None
    assert row.state == "slashed"
    assert [(e.seq, e.to_state) for e in events] == [(1, "pending"), (2, "locked"), (3, "slashed")]


async def test_rolled_back_transition_leaves_no_event(sessionmaker: Maker) -> None:
    settlement = await _started(sessionmaker)
    async with sessionmaker() as session:
        await session.begin()
        row = await SettlementRepository.from_session(session).get_by_id(settlement.id)
        assert row is not None
        await state_machine.transition(session, row, E.LOCKED, actor="test")
        await session.rollback()
    async with sessionmaker() as session:
        row = await SettlementRepository.from_session(session).get_by_id(settlement.id)
        events = await SettlementEventRepository.from_session(session).for_settlement(settlement.id)
    assert row is not None
    assert row.state == "pending"
    assert len(events) == 1


async def test_event_not_allowed_from_state_is_invalid_transition(sessionmaker: Maker) -> None:
    settlement = await _started(sessionmaker)
    async with sessionmaker() as session, session.begin():
        row = await SettlementRepository.from_session(session).get_by_id(settlement.id)
        assert row is not None
        with pytest.raises(InvalidTransitionError) as info:
            await state_machine.transition(session, row, E.RELEASED, actor="test")
        assert info.value.status == 409
        await state_machine.transition(session, row, E.LOCK_FAILED, actor="test")
        with pytest.raises(InvalidTransitionError, match="final"):
            await state_machine.transition(session, row, E.LOCKED, actor="test")


async def test_lost_race_raises_transition_conflict(sessionmaker: Maker) -> None:
    settlement = await _started(sessionmaker)
    # Two writers read the same pending settlement …
    async with sessionmaker() as session:
        first = await SettlementRepository.from_session(session).get_by_id(settlement.id)
    async with sessionmaker() as session:
        second = await SettlementRepository.from_session(session).get_by_id(settlement.id)
    assert first is not None
    assert second is not None
    # … the first one moves it …
    async with sessionmaker() as session, session.begin():
        session.add(first)
        await state_machine.transition(session, first, E.LOCKED, actor="a")
    # … and the second one's compare-and-set finds no row in the state it read.
    async with sessionmaker() as session:
        await session.begin()
        session.add(second)
        with pytest.raises(TransitionConflictError) as info:
            await state_machine.transition(session, second, E.LOCK_FAILED, actor="b")
        assert info.value.status == 409
        await session.rollback()
    async with sessionmaker() as session:
        events = await SettlementEventRepository.from_session(session).for_settlement(settlement.id)
    assert [e.to_state for e in events] == ["pending", "locked"]


async def test_transition_cannot_set_arbitrary_columns(sessionmaker: Maker) -> None:
    settlement = await _started(sessionmaker)
    async with sessionmaker() as session, session.begin():
        row = await SettlementRepository.from_session(session).get_by_id(settlement.id)
        assert row is not None
        with pytest.raises(ValueError, match="cannot set"):
            await state_machine.transition(
                session, row, E.LOCKED, actor="x", values={"amount": Decimal(9)}
            )


async def test_database_refuses_unknown_states_and_event_edits(sessionmaker: Maker) -> None:
    settlement = await _started(sessionmaker)
    async with sessionmaker() as session:
        await session.begin()
        with pytest.raises(DBAPIError):
            await session.execute(
                text("UPDATE settlements SET state = 'limbo' WHERE id = :id"), {"id": settlement.id}
            )
        await session.rollback()
    async with sessionmaker() as session:
        await session.begin()
        with pytest.raises(DBAPIError, match="append-only"):
            await session.execute(text("UPDATE settlement_events SET actor = 'mallory'"))
        await session.rollback()
