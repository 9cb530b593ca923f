"""Bodies of the delivery endpoints: one signed envelope each, exactly as signed."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["AbortBody", "ChallengeBody", "CommitBody", "RevealBody"]

_ENVELOPE: dict[str, Any] = {
    "envelope_version": "pact-envelope/1.0",
    "message_hash_hex": "<64 hex>",
    "signer_public_key_b58": "<base58 key>",
    "signature_b58": "<base58 signature>",
    "signed_at_ms": 1764158401000,
}
_TIMES: dict[str, Any] = {"protocol_version": "pact/1.0", "intent_id": "intent-4f0c…"}


class CommitBody(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "commit": {
                        **_ENVELOPE,
                        "message": {
                            **_TIMES,
                            "type": "COMMIT",
                            "commit_hash_hex": "<sha256 hex of payload_b64 + nonce_b64>",
                            "sent_at_ms": 1764158401000,
                            "expires_at_ms": 1764158431000,
                        },
                    }
                }
            ]
        },
    )

    commit: dict[str, Any] = Field(
        description="COMMIT envelope signed by the settlement's seller (the quote's provider "
        "key); `commit_hash_hex` = lowercase hex SHA-256 of the text payload_b64 + nonce_b64."
    )


class RevealBody(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "reveal": {
                        **_ENVELOPE,
                        "message": {
                            **_TIMES,
                            "type": "REVEAL",
                            "payload_b64": "eyJ0ZW1wX2MiOiAxMi41fQ==",
                            "nonce_b64": "3q2+7w==",
                            "sent_at_ms": 1764158402000,
                            "expires_at_ms": 1764158432000,
                        },
                    }
                }
            ]
        },
    )

    reveal: dict[str, Any] = Field(
        description="REVEAL envelope signed by the seller; `payload_b64` and `nonce_b64` in "
        "standard base64."
    )


class ChallengeBody(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "challenge": {
                        **_ENVELOPE,
                        "message": {
                            **_TIMES,
                            "type": "REJECT",
                            "code": "LATENCY_BREACH",
                            "reason": "delivered after the quoted latency",
                            "sent_at_ms": 1764158403000,
                            "expires_at_ms": 1764158433000,
                        },
                    }
                }
            ]
        },
    )

    challenge: dict[str, Any] = Field(
        description="REJECT envelope signed by the settlement's buyer, same intent_id, `code` "
        "one of FAILED_PROOF | DELIVERY_DEADLINE_MISSED | LATENCY_BREACH, and a `reason`."
    )


class AbortBody(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "abort": {
                        **_ENVELOPE,
                        "message": {
                            **_TIMES,
                            "type": "REJECT",
                            "code": "FULFILMENT_FAILED",
                            "reason": "the upstream weather API answered 503",
                            "sent_at_ms": 1764158401000,
                            "expires_at_ms": 1764158431000,
                        },
                    }
                }
            ]
        },
    )

    abort: dict[str, Any] = Field(
        description="REJECT envelope signed by the settlement's seller; `code` "
        "FULFILMENT_FAILED (default) or DELIVERY_WINDOW_TOO_SHORT."
    )
