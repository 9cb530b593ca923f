"""Payouts: one row per payout, recorded ``pending`` with the ledger hold on its amount in the
same transaction, before any rail is called (docs/decisions.md, decision 3)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from pact_settlement.db.base import Base
from pact_settlement.kit.money import Money
from pact_settlement.kit.time import UTCDateTime

__all__ = ["Payout", "PayoutStatus"]


class PayoutStatus(StrEnum):
    PENDING = "pending"  # held on the ledger; the rail call is made or about to be
    PAID = "paid"  # the rail paid it; the held amount left the ledger (system payout account)
    FAILED = "failed"  # the rail refused it; the held amount is available again


class Payout(Base):
    __tablename__ = "payouts"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    agent_id: Mapped[str] = mapped_column(String(64))
    rail: Mapped[str] = mapped_column(String(32))
    asset: Mapped[str] = mapped_column(String(16))
    amount: Mapped[Decimal] = mapped_column(Money())
    # The rail's payee: a Stripe Connect account (acct_…), an address; the ledger's system
    # payout account on the ledger rail.
    destination: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16))
    # Outgoing idempotency key, derived from our id (``payout-{id}``).
    idempotency_key: Mapped[str] = mapped_column(String(128), unique=True)
    request_fingerprint: Mapped[str] = mapped_column(String(64))
    # The journal transaction of the hold (seller available → locked); NULL for a payout of
    # credit the rail itself holds (the EVM escrows' deferred credit: held and paid on chain).
    hold_transaction_id: Mapped[str | None] = mapped_column(ForeignKey("journal_transactions.id"))
    external_ref: Mapped[str | None] = mapped_column(String(200))
    failure_code: Mapped[str | None] = mapped_column(String(64))
    failure_detail: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Pending: not reconciled before this time (the request's own call is in flight, or a
    # reconciler holds the payout).
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        Index("ix_payouts_agent_created", "agent_id", "created_at", "id"),
        Index("ix_payouts_status_lease", "status", "lease_until"),
    )
