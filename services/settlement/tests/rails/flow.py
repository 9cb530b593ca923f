"""Helpers for the rail flow tests: drive settlements through the executor like the
lifecycle's sweeper would, and inspect state and rail operations."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pact_schema.clock import utcnow
from pact_settlement.kit.observability import Metrics
from pact_settlement.rails.base import RailStep
from pact_settlement.rails.repository import RailOperationRepository
from pact_settlement.settlements import state_machine
from pact_settlement.settlements.lookup import find_settlement
from pact_settlement.settlements.rail_steps import PlannedTransition, RailStepExecutor, StepPlan
from pact_settlement.settlements.repository import SettlementRepository
from pact_settlement.settlements.state_machine import SettlementEventType as E
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

__all__ = [
    "RELEASE",
    "Crash",
    "after_grace",
    "deliver",
    "refund_plan",
    "run_step",
    "slash_plan",
    "state_of",
]


class Crash(BaseException):
    """The process died here (nothing in the service catches a BaseException)."""


RELEASE = StepPlan(step=RailStep.RELEASE, on_succeeded=PlannedTransition(E.RELEASED))


def refund_plan(code: str | None = None) -> StepPlan:
    return StepPlan(
        step=RailStep.REFUND,
        on_succeeded=PlannedTransition(E.REFUNDED, failure_code=code),
    )


def slash_plan() -> StepPlan:
    return StepPlan(step=RailStep.SLASH, on_succeeded=PlannedTransition(E.SLASHED))


def after_grace(settings: Any) -> Any:
    return utcnow() + timedelta(seconds=settings.reconcile_grace_s + 1)


async def deliver(maker: async_sessionmaker[AsyncSession], intent_id: str) -> None:
    """locked → committed → delivered (what COMMIT + a valid REVEAL do)."""
    async with maker() as session, session.begin():
        row = await find_settlement(
            SettlementRepository.from_session(session), intent_id, for_update=True
        )
        assert row is not None
        await state_machine.transition(session, row, E.COMMITTED, actor="test")
        await state_machine.transition(session, row, E.DELIVERED, actor="test")


async def run_step(
    maker: async_sessionmaker[AsyncSession],
    settings: Any,
    intent_id: str,
    plan: StepPlan,
    *,
    clients: Any,
) -> Any:
    async with maker() as session:
        row = await find_settlement(
            SettlementRepository.from_session(session), intent_id, for_update=True
        )
        assert row is not None
        outcome = await RailStepExecutor(
            session, settings=settings, metrics=Metrics(), clients=clients
        ).run(row, plan)
        await session.commit()
        return outcome


async def state_of(
    maker: async_sessionmaker[AsyncSession], intent_id: str
) -> tuple[str, list[str]]:
    async with maker() as session:
        row = await find_settlement(SettlementRepository.from_session(session), intent_id)
        assert row is not None
        ops = await RailOperationRepository.from_session(session).for_settlement(row.id)
        return row.state, [f"{o.step}:{o.status}" for o in ops]
