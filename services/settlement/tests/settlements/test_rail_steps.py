"""The two-phase rail-step executor and the reconciler, with an in-memory external rail.

``MemoryRail`` is non-transactional (like Stripe or an EVM escrow): it keeps its own records by
idempotency key, moves money at most once per key, and can be told to "crash" the process
just before a call reaches it or right after it has acted (a ``BaseException`` that nothing in
the service catches, as a killed process would leave things).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from pact_schema.clock import utcnow
from pact_settlement.config import SettlementSettings
from pact_settlement.kit.observability import Metrics
from pact_settlement.rails import registry
from pact_settlement.rails.base import (
    RailError,
    RailInsufficientFundsError,
    RailOpStatus,
    RailResult,
    RailSettlement,
    RailStep,
)
from pact_settlement.rails.repository import RailOperationRepository, rail_idempotency_key
from pact_settlement.settlements import state_machine
from pact_settlement.settlements.lookup import find_settlement
from pact_settlement.settlements.rail_steps import (
    PlannedTransition,
    RailStepExecutor,
    StepInFlightError,
    StepPlan,
    StepStatus,
)
from pact_settlement.settlements.repository import SettlementRepository
from pact_settlement.settlements.state_machine import SettlementEventType as E
from pact_settlement.workers.reconciler import Reconciler
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker


class Crash(BaseException):
    """The process died here."""


@dataclass
class MemoryRail:
    name: str = "memory"
    transactional: bool = False
    supports_bond: bool = True
    asset: str = "USD"
    records: dict[str, RailResult] = field(default_factory=dict)  # the rail's own records
    moves: list[tuple[str, str]] = field(default_factory=list)  # (step, key) money movements
    reached: list[tuple[str, str]] = field(default_factory=list)  # calls that reached it
    crash: dict[str, str] = field(default_factory=dict)  # step → "before" | "after" (once)
    lost_answer: set[str] = field(default_factory=set)  # steps that act, then time out (once)
    refuse: dict[str, RailError] = field(default_factory=dict)
    during_call: Any = None  # async hook(step, key) run when a call reaches the rail

    async def _act(self, step: str, key: str) -> RailResult:
        if self.crash.get(step) == "before":
            del self.crash[step]
            raise Crash
        self.reached.append((step, key))
        if self.during_call is not None:
            await self.during_call(step, key)
        if step in self.refuse:
            raise self.refuse[step]
        if key not in self.records:
            self.records[key] = RailResult(
                step=RailStep(step), status=RailOpStatus.SUCCEEDED, reference=f"mem-{step}-1"
            )
            self.moves.append((step, key))
        if self.crash.get(step) == "after":
            del self.crash[step]
            raise Crash
        if step in self.lost_answer:
            self.lost_answer.discard(step)
            raise ConnectionError("the rail's answer was lost")
        return self.records[key]

    async def lock(self, settlement: RailSettlement, *, idempotency_key: str) -> RailResult:
        return await self._act("lock", idempotency_key)

    async def release(self, settlement: RailSettlement, *, idempotency_key: str) -> RailResult:
        return await self._act("release", idempotency_key)

    async def refund(self, settlement: RailSettlement, *, idempotency_key: str) -> RailResult:
        return await self._act("refund", idempotency_key)

    async def slash(self, settlement: RailSettlement, *, idempotency_key: str) -> RailResult:
        return await self._act("slash", idempotency_key)

    async def status(self, settlement: RailSettlement, *, idempotency_key: str) -> RailResult:
        step = RailStep(idempotency_key.rsplit("-", 1)[-1])
        found = self.records.get(idempotency_key)
        return found or RailResult(step=step, status=RailOpStatus.NOT_FOUND)


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"enabled_rails": ["ledger", "memory"], "workers_enabled": False}


@pytest.fixture
def rail(monkeypatch: pytest.MonkeyPatch) -> MemoryRail:
    memory = MemoryRail()
    monkeypatch.setitem(registry.RAIL_FACTORIES, "memory", lambda _settings, _db, _clients: memory)
    return memory


@pytest.fixture
def reconciler(
    sessionmaker: async_sessionmaker[AsyncSession], settings: SettlementSettings
) -> Reconciler:
    return Reconciler(sessionmaker, settings=settings, metrics=Metrics())


def _after_grace(settings: SettlementSettings) -> Any:
    return utcnow() + timedelta(seconds=settings.reconcile_grace_s + 1)


async def _locked(api: Any, pact: Any) -> str:
    accept = pact.accept()
    response = await api.create(accept, rail="memory")
    assert response.status_code == 201, response.text
    assert response.json()["state"] == "locked"
    return str(accept["message"]["intent_id"])


async def _deliver(maker: async_sessionmaker[AsyncSession], intent_id: str) -> None:
    async with maker() as session, session.begin():
        row = await find_settlement(
            SettlementRepository.from_session(session), intent_id, for_update=True
        )
        assert row is not None
        await state_machine.transition(session, row, E.COMMITTED, actor="test")
        await state_machine.transition(session, row, E.DELIVERED, actor="test")


async def _run(
    maker: async_sessionmaker[AsyncSession],
    settings: SettlementSettings,
    intent_id: str,
    plan: StepPlan,
) -> Any:
    async with maker() as session:
        row = await find_settlement(
            SettlementRepository.from_session(session), intent_id, for_update=True
        )
        assert row is not None
        outcome = await RailStepExecutor(session, settings=settings, metrics=Metrics()).run(
            row, plan
        )
        await session.commit()
        return outcome


async def _state(maker: async_sessionmaker[AsyncSession], intent_id: str) -> tuple[str, list[str]]:
    async with maker() as session:
        repo = SettlementRepository.from_session(session)
        row = await find_settlement(repo, intent_id)
        assert row is not None
        ops = await RailOperationRepository.from_session(session).for_settlement(row.id)
        return row.state, [f"{o.step}:{o.status}" for o in ops]


RELEASE = StepPlan(step=RailStep.RELEASE, on_succeeded=PlannedTransition(E.RELEASED))


async def test_external_lock_is_committed_pending_before_the_rail_is_called(
    api: Any, pact: Any, rail: MemoryRail, app: Any
) -> None:
    seen: list[tuple[str, str, str]] = []

    async def look(step: str, key: str) -> None:
        # Another connection sees the pending record (it was committed) and is not blocked
        # by the request: no transaction of the request is open during the call.
        async with app.state.settlement.sessionmaker() as other, other.begin():
            ops = await RailOperationRepository.from_session(other).pending()
            settlement = await SettlementRepository.from_session(other).get_by_id(
                ops[0].settlement_id, for_update=True
            )
            assert settlement is not None
            seen.extend((o.step, o.idempotency_key, settlement.state) for o in ops)

    rail.during_call = look
    intent_id = await _locked(api, pact)
    body = await api.settlement(intent_id)
    assert len(seen) == 1
    assert seen[0][0] == "lock"
    assert seen[0][1] == f"settlement-{body['id']}-lock"
    assert seen[0][2] == "pending"
    assert rail.moves == [("lock", f"settlement-{body['id']}-lock")]
    assert [e["event"] for e in body["events"]] == ["settlement.created", "settlement.locked"]


async def test_crash_after_the_rail_acted_is_resolved_by_the_reconciler_without_a_second_call(
    api: Any,
    pact: Any,
    rail: MemoryRail,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: SettlementSettings,
    reconciler: Reconciler,
) -> None:
    intent_id = await _locked(api, pact)
    await _deliver(sessionmaker, intent_id)
    rail.crash["release"] = "after"
    with pytest.raises(Crash):
        await _run(sessionmaker, settings, intent_id, RELEASE)
    assert await _state(sessionmaker, intent_id) == (
        "delivered",
        ["lock:succeeded", "release:pending"],
    )
    # Within the grace period the operation belongs to its caller.
    assert await reconciler.run_once() == 0
    assert await reconciler.run_once(now=_after_grace(settings)) == 1
    assert await _state(sessionmaker, intent_id) == (
        "released",
        ["lock:succeeded", "release:succeeded"],
    )
    releases = [m for m in rail.moves if m[0] == "release"]
    assert len(releases) == 1
    assert [r for r in rail.reached if r[0] == "release"] == releases  # status, not a retry
    assert await reconciler.run_once(now=_after_grace(settings)) == 0


async def test_crash_before_the_call_reached_the_rail_is_retried_with_the_same_key(
    api: Any,
    pact: Any,
    rail: MemoryRail,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: SettlementSettings,
    reconciler: Reconciler,
) -> None:
    intent_id = await _locked(api, pact)
    await _deliver(sessionmaker, intent_id)
    rail.crash["release"] = "before"
    with pytest.raises(Crash):
        await _run(sessionmaker, settings, intent_id, RELEASE)
    assert rail.reached == [("lock", rail.reached[0][1])]
    assert await reconciler.run_once(now=_after_grace(settings)) == 1
    state, ops = await _state(sessionmaker, intent_id)
    assert (state, ops) == ("released", ["lock:succeeded", "release:succeeded"])
    body = await api.settlement(intent_id)
    key = rail_idempotency_key(body["id"], RailStep.RELEASE)
    assert [m for m in rail.moves if m[0] == "release"] == [("release", key)]


async def test_lost_lock_answer_is_202_pending_then_locked_by_the_reconciler(
    api: Any,
    pact: Any,
    rail: MemoryRail,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: SettlementSettings,
    reconciler: Reconciler,
) -> None:
    rail.lost_answer.add("lock")
    accept = pact.accept()
    response = await api.create(accept, rail="memory")
    assert response.status_code == 202, response.text
    assert response.json()["state"] == "pending"
    intent_id = accept["message"]["intent_id"]
    replay = await api.create(accept, rail="memory")
    assert replay.status_code == 202  # still in flight: what the first answer said
    assert replay.json()["state"] == "pending"
    assert await reconciler.run_once(now=_after_grace(settings)) == 1
    body = await api.settlement(intent_id)
    assert body["state"] == "locked"
    assert [e["event"] for e in body["events"]] == ["settlement.created", "settlement.locked"]
    assert len(rail.moves) == 1
    replay = await api.create(accept, rail="memory")
    assert (replay.status_code, replay.json()["state"]) == (200, "locked")


async def test_refused_external_lock_ends_failed_with_nothing_pending(
    api: Any, pact: Any, rail: MemoryRail, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    rail.refuse["lock"] = RailInsufficientFundsError("card declined")
    accept = pact.accept()
    response = await api.create(accept, rail="memory")
    assert response.status_code == 402, response.text
    assert response.json()["code"] == "INSUFFICIENT_ESCROW"
    assert await _state(sessionmaker, accept["message"]["intent_id"]) == (
        "failed",
        ["lock:failed"],
    )
    again = await api.create(accept, rail="memory")
    assert again.status_code == 402
    assert len(rail.reached) == 1


async def test_a_second_step_is_refused_while_one_is_in_flight(
    api: Any,
    pact: Any,
    rail: MemoryRail,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: SettlementSettings,
) -> None:
    intent_id = await _locked(api, pact)
    await _deliver(sessionmaker, intent_id)
    rail.lost_answer.add("release")
    outcome = await _run(sessionmaker, settings, intent_id, RELEASE)
    assert outcome.status is StepStatus.IN_FLIGHT
    refund = StepPlan(step=RailStep.REFUND, on_succeeded=PlannedTransition(E.REFUNDED))
    with pytest.raises(StepInFlightError):
        await _run(sessionmaker, settings, intent_id, refund)
    # The same step again does not call the rail again: it is the reconciler's now.
    again = await _run(sessionmaker, settings, intent_id, RELEASE)
    assert again.status is StepStatus.IN_FLIGHT
    assert len([r for r in rail.reached if r[0] == "release"]) == 1


async def test_definite_failure_of_a_close_step_is_reopened_under_the_same_key(
    api: Any,
    pact: Any,
    rail: MemoryRail,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: SettlementSettings,
) -> None:
    intent_id = await _locked(api, pact)
    await _deliver(sessionmaker, intent_id)
    rail.refuse["release"] = RailError("RAIL_DOWN", "maintenance")
    first = await _run(sessionmaker, settings, intent_id, RELEASE)
    assert first.status is StepStatus.FAILED
    assert await _state(sessionmaker, intent_id) == (
        "delivered",
        ["lock:succeeded", "release:failed"],
    )
    del rail.refuse["release"]
    second = await _run(sessionmaker, settings, intent_id, RELEASE)
    assert second.status is StepStatus.SUCCEEDED
    assert second.operation.attempts == 2
    assert await _state(sessionmaker, intent_id) == (
        "released",
        ["lock:succeeded", "release:succeeded"],
    )
    assert len([m for m in rail.moves if m[0] == "release"]) == 1


async def test_racing_reconcilers_resolve_each_operation_once(
    api: Any,
    pact: Any,
    rail: MemoryRail,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: SettlementSettings,
) -> None:
    intents = [await _locked(api, pact) for _ in range(4)]
    for intent_id in intents:
        await _deliver(sessionmaker, intent_id)
        rail.crash["release"] = "before"
        with pytest.raises(Crash):
            await _run(sessionmaker, settings, intent_id, RELEASE)
    now = _after_grace(settings)
    workers = [Reconciler(sessionmaker, settings=settings, metrics=Metrics()) for _ in range(3)]
    handled = await asyncio.gather(*(w.run_once(now=now) for w in workers))
    assert sum(handled) == 4
    for intent_id in intents:
        assert (await _state(sessionmaker, intent_id))[0] == "released"
    releases = [m for m in rail.moves if m[0] == "release"]
    assert len(releases) == len(set(releases)) == 4


async def test_ledger_steps_run_inside_the_callers_transaction(
    api: Any,
    pact: Any,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: SettlementSettings,
) -> None:
    await api.deposit(pact.buyer.public_key_b58, "1")
    accept = pact.accept()
    assert (await api.create(accept)).status_code == 201
    intent_id = accept["message"]["intent_id"]
    await _deliver(sessionmaker, intent_id)
    async with sessionmaker() as session:
        row = await find_settlement(
            SettlementRepository.from_session(session), intent_id, for_update=True
        )
        assert row is not None
        outcome = await RailStepExecutor(session, settings=settings, metrics=Metrics()).run(
            row, RELEASE
        )
        assert outcome.status is StepStatus.SUCCEEDED
        await session.rollback()  # nothing was committed by the executor
    assert await _state(sessionmaker, intent_id) == ("delivered", ["lock:succeeded"])
    assert await api.balances(pact.provider.public_key_b58) == (Decimal(0), Decimal(0))
