"""Rail operation records: pending before the call, resolved after
(docs/decisions.md, decision 3)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import Table, or_, select

from pact_settlement.kit.ids import new_id
from pact_settlement.kit.repository import (
    RepositoryBase,
    insert_columns,
    insert_params,
    insert_rows,
)
from pact_settlement.kit.time import session_now
from pact_settlement.rails.base import RailOpStatus, RailStep
from pact_settlement.rails.models import RailOperation

__all__ = ["RailOperationRepository", "rail_idempotency_key"]

_RAIL_OPERATIONS = cast(Table, RailOperation.__table__)
_OP_COLUMNS = insert_columns(RailOperation)


def rail_idempotency_key(settlement_id: str, step: RailStep) -> str:
    """Outgoing idempotency key, derived from our own ids (Polar's payout habit)."""
    return f"settlement-{settlement_id}-{step.value}"


class RailOperationRepository(RepositoryBase[RailOperation]):
    model = RailOperation

    async def begin(
        self,
        *,
        settlement_id: str,
        rail: str,
        step: RailStep,
        amount: Decimal,
        bond: Decimal,
        plan: dict[str, Any] | None = None,
        lease_until: datetime | None = None,
    ) -> RailOperation:
        now = session_now(self.session)
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
            plan=plan,
            lease_until=lease_until,
            created_at=now,
            updated_at=now,
        )
        # Not flushed here: the executor's next step is a SAVEPOINT or a COMMIT, and both flush
        # first, together with whatever the caller added (one round of INSERTs, not several).
        return await self.add(op, flush=False)

    async def insert_resolved(
        self,
        *,
        settlement_id: str,
        rail: str,
        step: RailStep,
        amount: Decimal,
        bond: Decimal,
        plan: dict[str, Any] | None,
        reference: str | None,
    ) -> RailOperation:
        """The record of a step that was made and resolved in this very transaction (a
        transactional rail's movement, written with it): inserted ``succeeded`` by one INSERT,
        never ``pending`` first, since a pending row here could never be seen by anyone."""
        now = session_now(self.session)
        op = RailOperation(
            id=new_id("rop"),
            settlement_id=settlement_id,
            rail=rail,
            step=step.value,
            idempotency_key=rail_idempotency_key(settlement_id, step),
            status=RailOpStatus.SUCCEEDED.value,
            amount=amount,
            bond=bond,
            external_ref=reference,
            error_code=None,
            error_detail=None,
            attempts=1,
            plan=plan,
            lease_until=None,
            created_at=now,
            updated_at=now,
            resolved_at=now,
        )
        await insert_rows(self.session, _RAIL_OPERATIONS, [insert_params(op, _OP_COLUMNS)])
        return op

    async def reopen(
        self, op: RailOperation, *, plan: dict[str, Any] | None, lease_until: datetime | None
    ) -> None:
        """A failed operation is tried again under the SAME idempotency key."""
        op.status = RailOpStatus.PENDING.value
        op.attempts = (op.attempts or 0) + 1
        op.plan = plan
        op.lease_until = lease_until
        op.error_code = None
        op.error_detail = None
        op.resolved_at = None
        op.updated_at = session_now(self.session)
        await self.session.flush()

    async def resolve(
        self,
        op: RailOperation,
        status: RailOpStatus,
        *,
        reference: str | None = None,
        error_code: str | None = None,
        error_detail: str | None = None,
        retry_at: datetime | None = None,
    ) -> None:
        """``retry_at``: a failed operation is not re-opened by the sweeper before then."""
        now = session_now(self.session)
        op.status = status.value
        op.external_ref = reference
        op.error_code = error_code
        op.error_detail = error_detail
        op.updated_at = now
        op.resolved_at = now
        op.lease_until = retry_at
        await self.session.flush()

    async def note_attempt(
        self,
        op: RailOperation,
        *,
        lease_until: datetime,
        error_code: str | None = None,
        error_detail: str | None = None,
    ) -> None:
        """The operation stays pending (outcome unknown); not retried before ``lease_until``."""
        op.lease_until = lease_until
        op.error_code = error_code
        op.error_detail = error_detail
        op.updated_at = session_now(self.session)
        await self.session.flush()

    async def get_for_update(self, op_id: str) -> RailOperation | None:
        return await self.get_one_or_none(
            select(RailOperation)
            .where(RailOperation.id == op_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )

    async def for_settlement(self, settlement_id: str) -> list[RailOperation]:
        return await self.get_all(
            select(RailOperation)
            .where(RailOperation.settlement_id == settlement_id)
            .order_by(RailOperation.created_at, RailOperation.id)
        )

    async def pending(self, limit: int = 100) -> list[RailOperation]:
        return await self.get_all(
            select(RailOperation)
            .where(RailOperation.status == RailOpStatus.PENDING.value)
            .order_by(RailOperation.created_at)
            .limit(limit)
        )

    async def claim_due(
        self, *, now: datetime, lease_until: datetime, limit: int
    ) -> list[RailOperation]:
        """Pending operations whose lease has run out, leased to the caller until
        ``lease_until``. ``FOR UPDATE SKIP LOCKED`` on Postgres, so concurrent reconcilers
        split the work; SQLite serialises writers (``BEGIN IMMEDIATE``), which is as safe.
        The caller commits the claim before calling any rail."""
        stmt = (
            select(RailOperation)
            .where(
                RailOperation.status == RailOpStatus.PENDING.value,
                or_(RailOperation.lease_until.is_(None), RailOperation.lease_until <= now),
            )
            .order_by(RailOperation.created_at, RailOperation.id)
            .limit(limit)
            .execution_options(populate_existing=True)
        )
        if self.dialect == "postgresql":
            stmt = stmt.with_for_update(skip_locked=True)
        ops = await self.get_all(stmt)
        for op in ops:
            op.lease_until = lease_until
            op.attempts = (op.attempts or 0) + 1
            op.updated_at = now
        await self.session.flush()
        return ops
