"""API shapes of streaming settlement (docs/protocol.md, "Streaming")."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from pact_settlement.kit.money import decimal_text
from pact_settlement.settlements.models import Settlement

__all__ = ["CheckpointBody", "CheckpointRead", "CloseBody", "StopCode"]

#: How a stream may end (the reference's codes; ``COMPLETED``: it ran to its budget).
StopCode = Literal[
    "COMPLETED",
    "BUYER_STOPPED",
    "SELLER_STOPPED",
    "FAILED_POLICY",
    "PROVIDER_SIGNATURE_INVALID",
    "STREAMING_SPEND_CAP_EXCEEDED",
    "FAILED_NEGOTIATION_TIMEOUT",
    "HTTP_STREAMING_ERROR",
]


class CheckpointBody(BaseModel):
    """Body of ``POST /v1/settlements/{ref}/checkpoints``."""

    model_config = ConfigDict(extra="forbid")

    voucher: dict[str, Any] = Field(
        description="The buyer-signed STREAM_VOUCHER envelope exactly as signed."
    )


class CloseBody(BaseModel):
    """Body of ``POST /v1/settlements/{ref}/close``. There is no amount: the close releases
    the highest voucher recorded, whatever the caller would like."""

    model_config = ConfigDict(extra="forbid")

    voucher: dict[str, Any] | None = Field(
        default=None,
        description="The highest STREAM_VOUCHER the caller holds, recorded as a checkpoint "
        "first (a lower or equal one changes nothing).",
    )
    by: Literal["buyer", "seller"] = Field(description="Who stopped the stream.")
    code: StopCode = Field(
        description="Why: COMPLETED (the budget was used up: a fulfilled receipt), or the "
        "reference's failure code the stream ended with."
    )
    reason: str = Field(max_length=1024, description="A human reason, kept in the receipt.")
    chunks: int = Field(ge=0, description="STREAM_CHUNKs the seller sent (for the receipt).")
    stop: dict[str, Any] | None = Field(
        default=None,
        description="The signed STREAM_STOP envelope, when there is one (kept in the "
        "transcript; signed by the buyer or the seller).",
    )


class CheckpointRead(BaseModel):
    settlement_id: str
    intent_id: str
    state: str
    recorded: bool = Field(description="Whether this voucher raised the checkpoint.")
    paid_amount: str = Field(description="The highest voucher's amount, decimal string.")
    ticks: int
    voucher_seq: int | None
    voucher_hash_hex: str | None
    checkpoints: int

    @classmethod
    def of(cls, s: Settlement, *, recorded: bool) -> CheckpointRead:
        return cls(
            settlement_id=s.id,
            intent_id=s.intent_id,
            state=s.state,
            recorded=recorded,
            paid_amount=decimal_text(s.stream_paid_amount or Decimal(0)),
            ticks=s.stream_ticks or 0,
            voucher_seq=s.stream_voucher_seq,
            voucher_hash_hex=s.stream_voucher_hash,
            checkpoints=s.stream_checkpoints or 0,
        )
