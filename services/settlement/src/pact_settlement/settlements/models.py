"""Settlements and their append-only event trail."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from pact_settlement.db.base import Base
from pact_settlement.kit.money import Money
from pact_settlement.kit.time import UTCDateTime

__all__ = ["Settlement", "SettlementEvent"]


class Settlement(Base):
    """One agreement's money record. ``state`` changes only through ``state_machine``."""

    __tablename__ = "settlements"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    # Unique per buyer, not globally: see uq_settlements_buyer_intent_id below.
    intent_id: Mapped[str] = mapped_column(String(256))
    state: Mapped[str] = mapped_column(String(16))
    rail: Mapped[str] = mapped_column(String(32))
    # The asset amount and bond are in: the rail's asset when the settlement was recorded.
    asset: Mapped[str] = mapped_column(String(16))
    amount: Mapped[Decimal] = mapped_column(Money())
    bond: Mapped[Decimal] = mapped_column(Money())
    bond_locked: Mapped[Decimal] = mapped_column(Money())
    buyer: Mapped[str] = mapped_column(String(64))
    seller: Mapped[str] = mapped_column(String(64))
    settlement_mode: Mapped[str] = mapped_column(String(16))
    proof_type: Mapped[str] = mapped_column(String(16))
    challenge_window_ms: Mapped[int] = mapped_column(BigInteger)
    delivery_deadline_ms: Mapped[int] = mapped_column(BigInteger)
    delivery_deadline_at: Mapped[datetime] = mapped_column(UTCDateTime())
    quote_expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    accept_hash: Mapped[str] = mapped_column(String(64))
    request_fingerprint: Mapped[str] = mapped_column(String(64))
    failure_code: Mapped[str | None] = mapped_column(String(64))
    failure_detail: Mapped[str | None] = mapped_column(Text)
    # Delivery (hash_reveal): the seller's commitment, the digest of what was revealed (the
    # payload itself is not kept), and the clocks the sweeper and challenges are judged by.
    locked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # A locked settlement with no COMMIT by then is refunded without slashing.
    commit_by_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The promised delivery latency is measured from locked_at to committed_at.
    committed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    commit_hash_hex: Mapped[str | None] = mapped_column(String(64))
    reveal_hash_hex: Mapped[str | None] = mapped_column(String(64))
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    challenge_ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The signed RECEIPT envelope (canonical JSON), written by the terminal transition itself.
    receipt_json: Mapped[str | None] = mapped_column(Text)
    # Streaming (docs/protocol.md, "Streaming"): the highest buyer-signed voucher recorded
    # (its amount, ticks, seq and envelope hash; the envelope is in the transcript), how many
    # checkpoints raised it, and how the stream ended.
    stream_paid_amount: Mapped[Decimal | None] = mapped_column(Money(), nullable=True)
    stream_ticks: Mapped[int | None] = mapped_column(BigInteger)
    stream_voucher_seq: Mapped[int | None] = mapped_column(BigInteger)
    stream_voucher_hash: Mapped[str | None] = mapped_column(String(64))
    stream_checkpoints: Mapped[int | None] = mapped_column(Integer)
    stream_chunks: Mapped[int | None] = mapped_column(BigInteger)
    stream_stop_code: Mapped[str | None] = mapped_column(String(64))
    stream_stop_reason: Mapped[str | None] = mapped_column(Text)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

    events: Mapped[list[SettlementEvent]] = relationship(
        back_populates="settlement",
        order_by="SettlementEvent.seq",
        lazy="raise",
    )

    __table_args__ = (
        UniqueConstraint("buyer", "intent_id", name="uq_settlements_buyer_intent_id"),
        Index("ix_settlements_intent_id", "intent_id"),
        Index("ix_settlements_state_commit_by", "state", "commit_by_at"),
        Index("ix_settlements_state_deadline", "state", "delivery_deadline_at"),
        Index("ix_settlements_state_challenge", "state", "challenge_ends_at"),
        Index("ix_settlements_created", "created_at", "id"),
        # Filtered lists page newest first by (created_at, id) within the filter.
        Index("ix_settlements_state_created", "state", "created_at", "id"),
        Index("ix_settlements_buyer_created", "buyer", "created_at", "id"),
        Index("ix_settlements_seller_created", "seller", "created_at", "id"),
    )


class SettlementEvent(Base):
    """One row per transition, written in the transition's transaction. Append-only."""

    __tablename__ = "settlement_events"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    settlement_id: Mapped[str] = mapped_column(ForeignKey("settlements.id"))
    seq: Mapped[int] = mapped_column(Integer)
    event: Mapped[str] = mapped_column(String(64))
    from_state: Mapped[str | None] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    request_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())

    settlement: Mapped[Settlement] = relationship(back_populates="events", lazy="raise")

    __table_args__ = (UniqueConstraint("settlement_id", "seq"),)
