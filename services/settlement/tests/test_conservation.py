"""Money conservation across a randomized run of many settlements (both databases).

Buyers and sellers get random deposits; many ACCEPTs (some unaffordable, some replayed, some
racing each other) are settled through the API; locked ones are then released, refunded or
slashed through the ledger rail and the state machine. At every checkpoint the sum of all
balances (including the external account deposits came from) is zero, the agents hold
exactly what was deposited, every balance equals the sum of its journal legs, and each
agent's locked balance equals what its open settlements hold.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections import defaultdict
from decimal import Decimal
from typing import Any

import pytest
from pact_schema import Keypair
from pact_settlement.config import SettlementSettings
from pact_settlement.kit.money import add, total
from pact_settlement.kit.observability import Metrics
from pact_settlement.ledger.repository import LedgerAccountRepository
from pact_settlement.ledger.service import EXTERNAL_ACCOUNT, LedgerService
from pact_settlement.rails.base import RailStep
from pact_settlement.rails.ledger import LedgerRail
from pact_settlement.rails.repository import rail_idempotency_key
from pact_settlement.settlements import state_machine
from pact_settlement.settlements.lookup import find_settlement
from pact_settlement.settlements.rail_steps import (
    PlannedTransition,
    RailStepExecutor,
    StepPlan,
    StepStatus,
)
from pact_settlement.settlements.repository import SettlementRepository
from pact_settlement.settlements.state_machine import SettlementEventType
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

SELLERS = [Keypair(bytes([200 + i] * 32)) for i in range(3)]
BUYERS = [Keypair(bytes([100 + i] * 32)) for i in range(6)]
SEED = int(os.environ.get("PACT_TEST_SEED", "20261126"))


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {
        "provider_keys": [s.public_key_b58 for s in SELLERS],
        "require_seller_bond": True,
    }


async def _check(maker: async_sessionmaker[AsyncSession], deposited: Decimal) -> None:
    async with maker() as session:
        accounts = await LedgerAccountRepository.from_session(session).all_accounts()
        problems = await LedgerService(session).integrity_report()
        rows = await SettlementRepository.from_session(session).list(
            state="locked", buyer=None, seller=None, rail=None, limit=10_000, cursor=None
        )
    assert problems == []
    everything = total(add(a.available, a.locked) for a in accounts)
    assert everything == 0
    agents = total(add(a.available, a.locked) for a in accounts if a.owner != EXTERNAL_ACCOUNT)
    assert agents == deposited
    held: dict[str, Decimal] = defaultdict(Decimal)
    for s in rows:
        held[s.buyer] = add(held[s.buyer], s.amount)
        held[s.seller] = add(held[s.seller], s.bond_locked)
    for account in accounts:
        if account.owner != EXTERNAL_ACCOUNT:
            assert account.locked == held.get(account.owner, Decimal(0)), account.owner
        assert account.available >= 0 or account.owner == EXTERNAL_ACCOUNT


async def _finish(
    maker: async_sessionmaker[AsyncSession],
    settings: SettlementSettings,
    intent_id: str,
    step: RailStep,
) -> None:
    """What the delivery/sweeper flows will do: one rail movement + one transition, atomically."""
    event = {
        RailStep.RELEASE: (
            (SettlementEventType.COMMITTED, SettlementEventType.DELIVERED),
            SettlementEventType.RELEASED,
        ),
        RailStep.REFUND: ((), SettlementEventType.REFUNDED),
        RailStep.SLASH: ((), SettlementEventType.SLASHED),
    }[step]
    async with maker() as session, session.begin():
        settlement = await find_settlement(
            SettlementRepository.from_session(session), intent_id, for_update=True
        )
        assert settlement is not None
        for before in event[0]:
            await state_machine.transition(session, settlement, before, actor="test")
        executor = RailStepExecutor(
            session, settings=settings, metrics=Metrics(), rail=LedgerRail(session)
        )
        outcome = await executor.run(
            settlement, StepPlan(step=step, on_succeeded=PlannedTransition(event[1]))
        )
        assert outcome.status is StepStatus.SUCCEEDED
        assert outcome.operation.idempotency_key == rail_idempotency_key(settlement.id, step)


async def test_money_is_conserved_across_a_randomized_run(
    api: Any,
    pact: Any,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: SettlementSettings,
) -> None:
    rng = random.Random(SEED)
    deposited = Decimal(0)
    for agent in BUYERS + SELLERS:
        amount = Decimal(rng.randint(1, 400)) / Decimal(1000)
        await api.deposit(agent.public_key_b58, str(amount))
        deposited = add(deposited, amount)
    await _check(sessionmaker, deposited)

    accepts = []
    for _ in range(48):
        price = Decimal(rng.randint(1, 90)) / Decimal(1000)
        accepts.append(
            pact.accept(
                buyer=rng.choice(BUYERS),
                provider=rng.choice(SELLERS),
                price=price,
                bond=price * 2,
            )
        )
    statuses: dict[int, int] = defaultdict(int)
    for start in range(0, len(accepts), 8):
        batch = accepts[start : start + 8]
        batch = [*batch, rng.choice(batch)]  # a replay racing its original
        responses = await asyncio.gather(*(api.create(a) for a in batch))
        for response in responses:
            assert response.status_code in (200, 201, 402), response.text
            statuses[response.status_code] += 1
        await _check(sessionmaker, deposited)
    assert statuses[201] > 0
    assert statuses[402] > 0, "the run should include unaffordable ACCEPTs"

    locked = [
        a["message"]["intent_id"]
        for a in accepts
        if (await api.settlement(a["message"]["intent_id"]))["state"] == "locked"
    ]
    for intent_id in locked:
        endings = [RailStep.RELEASE, RailStep.REFUND, RailStep.SLASH]  # hash_reveal endings
        await _finish(sessionmaker, settings, intent_id, rng.choice(endings))
    await _check(sessionmaker, deposited)
    for intent_id in locked:
        assert (await api.settlement(intent_id))["state"] in ("released", "refunded", "slashed")
