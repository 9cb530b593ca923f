"""Double-entry ledger: accounts with available/locked balances, journal transactions, legs.

An account holds one asset (``USD``, ``ETH``, …; :mod:`pact_settlement.rails.assets`): one per
(owner, asset). Every movement is one journal transaction whose legs sum to zero per asset
(checked in code, and on Postgres by a deferred constraint trigger); a leg names its asset,
which must be its account's (a trigger on both databases), so money never changes asset. A
leg names an account and a bucket (``available`` or ``locked``) so a lock is two legs on the
same account. Balances on the account row are the running sum of its legs, updated under a
row lock in the same transaction.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import BigInteger, Boolean, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from pact_settlement.db.base import Base
from pact_settlement.kit.money import Money
from pact_settlement.kit.time import UTCDateTime

__all__ = ["JournalLeg", "JournalTransaction", "LedgerAccount"]


class LedgerAccount(Base):
    __tablename__ = "ledger_accounts"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64))
    asset: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(16))  # agent | system
    allow_negative: Mapped[bool] = mapped_column(Boolean, default=False)
    available: Mapped[Decimal] = mapped_column(Money())
    locked: Mapped[Decimal] = mapped_column(Money())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (UniqueConstraint("owner", "asset", name="uq_ledger_accounts_owner_asset"),)


class JournalTransaction(Base):
    __tablename__ = "journal_transactions"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # deposit, lock, release, refund, slash, payout_…
    # Exactly-once per movement: e.g. "settlement-st_…-lock" or a deposit's Idempotency-Key.
    idempotency_key: Mapped[str] = mapped_column(String(300), unique=True)
    settlement_id: Mapped[str | None] = mapped_column(ForeignKey("settlements.id"), index=True)
    memo: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())

    legs: Mapped[list[JournalLeg]] = relationship(lazy="raise", order_by="JournalLeg.id")


class JournalLeg(Base):
    __tablename__ = "journal_legs"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    transaction_id: Mapped[str] = mapped_column(ForeignKey("journal_transactions.id"), index=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("ledger_accounts.id"), index=True)
    bucket: Mapped[str] = mapped_column(String(16))  # available | locked
    asset: Mapped[str] = mapped_column(String(16))  # its account's asset (a database trigger)
    amount: Mapped[Decimal] = mapped_column(Money())
