"""Payment profiles: who pays (and gets paid) with what on an external rail.

One row per (agent, rail). The ledger rail needs none (the agent id is the account). Stripe
needs the buyer's customer and saved payment method; the EVM escrow needs the agent's address
(the buyer's refund address, the seller's payee address, and the buyer's address again as the
beneficiary of a slashed bond).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from pact_settlement.db.base import Base
from pact_settlement.kit.time import UTCDateTime

__all__ = ["PaymentProfile"]


class PaymentProfile(Base):
    __tablename__ = "payment_profiles"

    agent_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    rail: Mapped[str] = mapped_column(String(32), primary_key=True)
    stripe_customer: Mapped[str | None] = mapped_column(String(255))
    stripe_payment_method: Mapped[str | None] = mapped_column(String(255))
    # A seller's Stripe Connect account (acct_…): where its payouts are transferred.
    stripe_connect_account: Mapped[str | None] = mapped_column(String(255))
    evm_address: Mapped[str | None] = mapped_column(String(42))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
