"""Stored transcripts: the signed envelopes that justified each settlement, as canonical JSON."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from pact_settlement.db.base import Base
from pact_settlement.kit.time import UTCDateTime

__all__ = ["Transcript"]


class Transcript(Base):
    __tablename__ = "transcripts"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    settlement_id: Mapped[str] = mapped_column(ForeignKey("settlements.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # ACCEPT | ASK | COMMIT | REVEAL | RECEIPT
    message_hash_hex: Mapped[str] = mapped_column(String(64))
    signer: Mapped[str] = mapped_column(String(64))
    # Canonical JSON of the whole envelope: re-verifiable byte for byte (JSONB would reorder
    # keys and re-render numbers).
    # The JSON text ``null`` when the envelope was not kept (a REVEAL over the size limit).
    envelope_json: Mapped[str] = mapped_column(Text)
    # Facts about the entry: a REVEAL's payload size and sha256, whether the envelope was kept,
    # a challenge's verdict.
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (UniqueConstraint("settlement_id", "message_hash_hex"),)
