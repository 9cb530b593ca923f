"""Signed envelopes (``pact-envelope/1.0``): SHA-256 over canonical JSON, Ed25519, base58.

Verification always runs on the message dict exactly as received, never on a re-serialised
model, so a buyer's signature survives any field we do not model.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pact_schema.canonical import CanonicalJSONError, canonical_json, sha256_hex
from pact_schema.clock import now_ms
from pact_schema.keys import (
    KeyFormatError,
    Keypair,
    PublicKeyB58,
    SignatureB58,
    b58encode,
    verify_detached,
)
from pact_schema.messages import Message, message_to_wire, parse_message

__all__ = [
    "ENVELOPE_VERSION",
    "Envelope",
    "EnvelopeError",
    "EnvelopeFailure",
    "VerifiedEnvelope",
    "message_hash_hex",
    "now_ms",
    "sign_message",
    "verify_envelope",
]

ENVELOPE_VERSION = "pact-envelope/1.0"


class EnvelopeFailure(StrEnum):
    MALFORMED = "malformed"
    BAD_VERSION = "bad_version"
    BAD_HASH = "bad_hash"
    HASH_MISMATCH = "hash_mismatch"
    BAD_KEY = "bad_key"
    BAD_SIGNATURE = "bad_signature"


class EnvelopeError(ValueError):
    """An envelope failed verification; ``failure`` says precisely why."""

    def __init__(self, failure: EnvelopeFailure, detail: str) -> None:
        super().__init__(f"{failure.value}: {detail}")
        self.failure = failure
        self.detail = detail


class Envelope(BaseModel):
    """The envelope's shape. ``message`` stays the raw dict that was signed."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    envelope_version: str
    message: dict[str, Any]
    message_hash_hex: str = Field(
        description="SHA-256 of the canonical JSON of `message`, 64 hex chars"
    )
    signer_public_key_b58: PublicKeyB58 = Field(
        description="Ed25519 public key, base58 (Bitcoin): 32 bytes, canonical text"
    )
    signature_b58: SignatureB58 = Field(
        description="Ed25519 signature over the 32 raw hash bytes, base58: 64 bytes"
    )
    signed_at_ms: int = Field(ge=0)


#: A malformed key or signature text gets its own failure, not ``malformed``: the envelope's
#: shape is right, its key (or signature) is not one.
_FIELD_FAILURES = {
    "signer_public_key_b58": EnvelopeFailure.BAD_KEY,
    "signature_b58": EnvelopeFailure.BAD_SIGNATURE,
}
_SHAPE_ERRORS = frozenset({"missing", "string_type"})


@dataclass(frozen=True, slots=True)
class VerifiedEnvelope:
    envelope: Envelope
    raw: dict[str, Any]

    @property
    def signer(self) -> str:
        return self.envelope.signer_public_key_b58

    @property
    def message_raw(self) -> dict[str, Any]:
        return self.envelope.message

    def parse(self) -> Message:
        """The typed message (raises ``MessageValidationError``)."""
        return parse_message(self.envelope.message)


def message_hash_hex(message: dict[str, Any]) -> str:
    return sha256_hex(canonical_json(message))


def sign_message(
    message: BaseModel | dict[str, Any],
    keypair: Keypair,
    *,
    signed_at_ms: int | None = None,
) -> dict[str, Any]:
    """A signed envelope dict for ``message`` (a model or an already-wire dict)."""
    wire = message_to_wire(message) if isinstance(message, BaseModel) else message
    digest_hex = message_hash_hex(wire)
    signature = keypair.sign(bytes.fromhex(digest_hex))

    return {
        "envelope_version": ENVELOPE_VERSION,
        "message": wire,
        "message_hash_hex": digest_hex,
        "signer_public_key_b58": keypair.public_key_b58,
        "signature_b58": b58encode(signature),
        "signed_at_ms": now_ms() if signed_at_ms is None else signed_at_ms,
    }


def verify_envelope(raw: object) -> VerifiedEnvelope:
    """Check shape, version, hash and signature; raise :class:`EnvelopeError` on the first fault."""
    if not isinstance(raw, dict):
        raise EnvelopeError(EnvelopeFailure.MALFORMED, "envelope must be a JSON object")
    try:
        envelope = Envelope.model_validate(raw)
    except ValidationError as exc:
        errors = exc.errors()
        first = errors[0]
        for err in errors:
            failure = _FIELD_FAILURES.get(str(err["loc"][0])) if err["loc"] else None
            if failure is not None and err["type"] not in _SHAPE_ERRORS:
                first = err
                break
        else:
            failure = None
        where = ".".join(str(p) for p in first["loc"]) or "envelope"
        raise EnvelopeError(
            failure or EnvelopeFailure.MALFORMED, f"{where}: {first['msg']}"
        ) from exc
    if envelope.envelope_version != ENVELOPE_VERSION:
        raise EnvelopeError(
            EnvelopeFailure.BAD_VERSION,
            f"envelope_version must be {ENVELOPE_VERSION!r}, got {envelope.envelope_version!r}",
        )
    claimed = envelope.message_hash_hex.lower()
    if len(claimed) != 64 or any(c not in "0123456789abcdef" for c in claimed):
        raise EnvelopeError(EnvelopeFailure.BAD_HASH, "message_hash_hex must be 64 hex chars")
    try:
        actual = message_hash_hex(envelope.message)
    except CanonicalJSONError as exc:
        raise EnvelopeError(EnvelopeFailure.MALFORMED, f"message: {exc}") from exc
    if not hmac.compare_digest(actual, claimed):
        raise EnvelopeError(
            EnvelopeFailure.HASH_MISMATCH, "message_hash_hex does not match the message"
        )
    try:
        valid = verify_detached(
            envelope.signer_public_key_b58, envelope.signature_b58, bytes.fromhex(actual)
        )
    except KeyFormatError as exc:
        raise EnvelopeError(EnvelopeFailure.BAD_KEY, str(exc)) from exc
    if not valid:
        raise EnvelopeError(
            EnvelopeFailure.BAD_SIGNATURE, "signature does not verify with signer_public_key_b58"
        )
    return VerifiedEnvelope(envelope=envelope, raw=raw)
