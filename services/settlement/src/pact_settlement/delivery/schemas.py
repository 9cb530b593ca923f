"""Bodies of the delivery endpoints: one signed envelope each, exactly as signed."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from pact_settlement.kit import examples

__all__ = ["AbortBody", "ChallengeBody", "CommitBody", "RevealBody"]


def _example(field: str, kind: str) -> ConfigDict:
    return ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{field: examples.envelope_body(kind)}]},
    )


class CommitBody(BaseModel):
    model_config = _example("commit", "commit")

    commit: dict[str, Any] = Field(
        description="COMMIT envelope signed by the settlement's seller (the quote's provider "
        "key); `commit_hash_hex` = lowercase hex SHA-256 of the text payload_b64 + nonce_b64."
    )


class RevealBody(BaseModel):
    model_config = _example("reveal", "reveal")

    reveal: dict[str, Any] = Field(
        description="REVEAL envelope signed by the seller; `payload_b64` and `nonce_b64` in "
        "standard base64."
    )


class ChallengeBody(BaseModel):
    model_config = _example("challenge", "challenge")

    challenge: dict[str, Any] = Field(
        description="REJECT envelope signed by the settlement's buyer, same intent_id, `code` "
        "one of FAILED_PROOF | DELIVERY_DEADLINE_MISSED | LATENCY_BREACH, and a `reason`."
    )


class AbortBody(BaseModel):
    model_config = _example("abort", "abort")

    abort: dict[str, Any] = Field(
        description="REJECT envelope signed by the settlement's seller; `code` "
        "FULFILMENT_FAILED (default) or DELIVERY_WINDOW_TOO_SHORT."
    )
