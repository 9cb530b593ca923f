"""Rail operations: every rail call is recorded ``pending`` before it is made
(docs/decisions.md, decision 3)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from pact_settlement.db.base import Base
from pact_settlement.kit.money import Money
from pact_settlement.kit.time import UTCDateTime

__all__ = ["RailOperation"]


class RailOperation(Base):
    __tablename__ = "rail_operations"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    settlement_id: Mapped[str] = mapped_column(ForeignKey("settlements.id"), index=True)
    rail: Mapped[str] = mapped_column(String(32))
    step: Mapped[str] = mapped_column(String(16))  # lock | release | refund | slash
    idempotency_key: Mapped[str] = mapped_column(String(128), unique=True)
    status: Mapped[str] = mapped_column(String(16))  # pending | succeeded | failed
    amount: Mapped[Decimal] = mapped_column(Money())
    bond: Mapped[Decimal] = mapped_column(Money())
    external_ref: Mapped[str | None] = mapped_column(String(200))
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_detail: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # What resolving the step means for the settlement (``settlements.rail_steps.StepPlan``),
    # so the reconciler can finish it after a crash with no request context.
    plan: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Pending: not reconciled before this time (the caller's own call is in flight, or a
    # reconciler holds the operation). Failed: not retried by the sweeper before this time.
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        UniqueConstraint("settlement_id", "step"),
        Index("ix_rail_operations_status", "status", "created_at"),
        Index("ix_rail_operations_lease", "status", "lease_until"),
    )
