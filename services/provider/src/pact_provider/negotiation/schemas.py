"""OpenAPI documentation models for ``POST /pact``.

The endpoint parses the raw body itself (numbers must be hashed exactly as received), so these
models only describe the wire shapes in the OpenAPI document; they never parse a request.
"""

from __future__ import annotations

from typing import Any

from pact_schema.keys import PublicKeyB58, SignatureB58
from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Envelope"]


class Envelope(BaseModel):
    """A signed `pact-envelope/1.0`."""

    model_config = ConfigDict(extra="allow")

    envelope_version: str = Field(
        description='Always "pact-envelope/1.0".', examples=["pact-envelope/1.0"]
    )
    message: dict[str, Any] = Field(
        description="One pact/1.0 message (INTENT, BID, ACCEPT, REJECT; replies ASK, REJECT, "
        "ACCEPT). Extra fields are allowed and covered by the signature."
    )
    message_hash_hex: str = Field(
        description="SHA-256 (64 hex chars) of the JS-canonical JSON of `message`.",
        pattern="^[0-9a-fA-F]{64}$",
    )
    signer_public_key_b58: PublicKeyB58 = Field(
        description="Ed25519 public key of the signer, base58."
    )
    signature_b58: SignatureB58 = Field(
        description="Ed25519 signature over the 32 raw bytes of the hash, base58."
    )
    signed_at_ms: int = Field(ge=0, description="Signer's clock, Unix ms.")
