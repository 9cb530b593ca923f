"""Payout queries: the row lock that serialises a payout's resolution, the reconciler's claim."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import func, or_, select

from pact_settlement.kit.repository import RepositoryBase
from pact_settlement.payouts.models import Payout, PayoutStatus

__all__ = ["PayoutRepository"]


class PayoutRepository(RepositoryBase[Payout]):
    model = Payout

    async def get_by_id(self, payout_id: str) -> Payout | None:
        return await self.session.get(Payout, payout_id)

    async def get_for_update(self, payout_id: str) -> Payout | None:
        return await self.get_one_or_none(
            select(Payout)
            .where(Payout.id == payout_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )

    async def pending_to(self, rail: str, destination: str, asset: str) -> Decimal:
        """What payouts still ``pending`` on ``rail`` to ``destination`` will pay (the rail
        may not have paid them yet, so they still count against what it owes the payee)."""
        total = await self.session.scalar(
            select(func.coalesce(func.sum(Payout.amount), 0)).where(
                Payout.rail == rail,
                Payout.destination == destination,
                Payout.asset == asset,
                Payout.status == PayoutStatus.PENDING.value,
            )
        )
        return Decimal(str(total or 0))

    async def of_agent(self, agent_id: str, *, limit: int) -> list[Payout]:
        return await self.get_all(
            select(Payout)
            .where(Payout.agent_id == agent_id)
            .order_by(Payout.created_at.desc(), Payout.id.desc())
            .limit(limit)
        )

    async def claim_due(self, *, now: datetime, lease_until: datetime, limit: int) -> list[str]:
        """Pending payouts whose lease ran out, leased to the caller until ``lease_until``
        (``FOR UPDATE SKIP LOCKED`` on Postgres; SQLite serialises writers). The caller commits
        the claim before calling any rail."""
        stmt = (
            select(Payout)
            .where(
                Payout.status == PayoutStatus.PENDING.value,
                or_(Payout.lease_until.is_(None), Payout.lease_until <= now),
            )
            .order_by(Payout.created_at, Payout.id)
            .limit(limit)
            .execution_options(populate_existing=True)
        )
        if self.dialect == "postgresql":
            stmt = stmt.with_for_update(skip_locked=True)
        payouts = await self.get_all(stmt)
        for p in payouts:
            p.lease_until = lease_until
            p.attempts = (p.attempts or 0) + 1
            p.updated_at = now
        await self.session.flush()
        return [p.id for p in payouts]
