"""OpenAPI documentation models of the reference adapter's shapes (its ``types.ts``).

The routes parse the raw body themselves (an amount must be read exactly as sent), so these
models describe the wire shapes in the OpenAPI document only.
"""

from __future__ import annotations

from typing import Any

from pact_schema.keys import PublicKeyB58
from pydantic import BaseModel, ConfigDict, Field

from pact_provider.negotiation.schemas import Envelope

__all__ = [
    "CommitRequest",
    "EnvelopeResponse",
    "HealthResponse",
    "ProviderQuoteRequest",
    "RevealRequest",
    "RevealResponse",
    "StreamChunkRequest",
]

_BUYER = Field(
    default=None,
    description="Ours, optional: whose trade is meant when several buyers used the intent id.",
)


class ProviderQuoteRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    intent_id: str = Field(description="The id the ASK (and an ACCEPT taking it) carries.")
    intent_type: str = Field(description="e.g. weather.data")
    max_price: float = Field(
        gt=0, description="Refused (PRICE_ABOVE_MAX) when the price is higher."
    )
    constraints: dict[str, Any] = Field(description="{latency_ms, freshness_sec}, integers.")
    urgent: bool | None = None
    scope: str | dict[str, Any] | None = Field(
        default=None, description="Ours, optional: the INTENT scope (what the delivery is about)."
    )
    settlement_mode: str | None = Field(
        default=None,
        description="Ours, optional: `hash_reveal` unless the provider offers only another mode.",
    )


class EnvelopeResponse(BaseModel):
    """`ProviderQuoteResponse`, `CommitResponse`, `StreamChunkResponse`."""

    envelope: Envelope


class CommitRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    intent_id: str
    payload_b64: str = Field(description="Ignored: the COMMIT is the one settlement recorded.")
    nonce_b64: str = Field(description="Ignored, as payload_b64.")
    buyer_public_key_b58: PublicKeyB58 | None = _BUYER


class RevealRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    intent_id: str
    payload_b64: str = Field(description="The delivery received in the ACCEPT acknowledgement.")
    nonce_b64: str = Field(
        description="Its nonce: sha256(payload_b64 + nonce_b64) must be the "
        "commitment settlement recorded."
    )
    commit_hash_hex: str = Field(description="The commitment the caller holds (64 hex).")
    buyer_public_key_b58: PublicKeyB58 | None = _BUYER


class RevealResponse(BaseModel):
    envelope: Envelope
    ok: bool = Field(description="The REVEAL hashes to the commit_hash_hex sent.")
    code: str | None = Field(default=None, examples=["FAILED_PROOF"])
    reason: str | None = None


class StreamChunkRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    intent_id: str
    seq: int
    sent_at_ms: int | None = None


class HealthResponse(BaseModel):
    ok: bool
    sellerId: PublicKeyB58 = Field(  # noqa: N815 (the reference wire name)
        description="The provider's public key, base58."
    )
    seller_pubkey_b58: PublicKeyB58
