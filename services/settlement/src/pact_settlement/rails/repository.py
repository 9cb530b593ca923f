"""Rail operation records: pending before the call, resolved after."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import select

from pact_settlement.kit.ids import new_id
from pact_settlement.kit.repository import RepositoryBase
from pact_settlement.kit.time import utcnow
from pact_settlement.rails.base import RailOpStatus, RailStep
from pact_settlement.rails.models import RailOperation

__all__ = ["RailOperationRepository", "rail_idempotency_key"]


def rail_idempotency_key(settlement_id: str, step: RailStep) -> str:
    """Outgoing idempotency key, derived from our own ids (Polar's payout habit)."""
    return f"settlement-{settlement_id}-{step.value}"


class RailOperationRepository(RepositoryBase[RailOperation]):
    model = RailOperation

    async def begin(
        self, *, settlement_id: str, rail: str, step: RailStep, amount: Decimal, bond: Decimal
    ) -> RailOperation:
        now = utcnow()
        op = RailOperation(
            id=new_id("rop"),
            settlement_id=settlement_id,
            rail=rail,
            step=step.value,
            idempotency_key=rail_idempotency_key(settlement_id, step),
            status=RailOpStatus.PENDING.value,
            amount=amount,
            bond=bond,
            attempts=1,
            created_at=now,
            updated_at=now,
        )
        return await self.add(op)

    async def resolve(
        self,
        op: RailOperation,
        status: RailOpStatus,
        *,
        reference: str | None = None,
        error_code: str | None = None,
        error_detail: str | None = None,
    ) -> None:
        now = utcnow()
        op.status = status.value
        op.external_ref = reference
        op.error_code = error_code
        op.error_detail = error_detail
        op.updated_at = now
        op.resolved_at = now
        await self.session.flush()

    async def for_settlement(self, settlement_id: str) -> list[RailOperation]:
        return await self.get_all(
            select(RailOperation)
            .where(RailOperation.settlement_id == settlement_id)
            .order_by(RailOperation.created_at)
        )

    async def pending(self, limit: int = 100) -> list[RailOperation]:
        return await self.get_all(
            select(RailOperation)
            .where(RailOperation.status == RailOpStatus.PENDING.value)
            .order_by(RailOperation.created_at)
            .limit(limit)
        )
