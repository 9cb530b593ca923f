"""pact_schema: the pact/1.0 wire format, byte-exact with the reference JavaScript SDK."""

from pact_schema.canonical import CanonicalJSONError, canonical_json, parse_json
from pact_schema.clock import Clock
from pact_schema.codes import FailureCode
from pact_schema.commit import commit_hash_hex, reveal_matches
from pact_schema.envelope import (
    ENVELOPE_VERSION,
    Envelope,
    EnvelopeError,
    EnvelopeFailure,
    VerifiedEnvelope,
    message_hash_hex,
    now_ms,
    sign_message,
    verify_envelope,
)
from pact_schema.keys import KeyFormatError, Keypair
from pact_schema.messages import (
    PROTOCOL_VERSION,
    Accept,
    Ask,
    Bid,
    Commit,
    Constraints,
    Intent,
    Message,
    MessageValidationError,
    Receipt,
    Reject,
    Reveal,
    StreamChunk,
    StreamStart,
    StreamStop,
    StreamVoucher,
    message_to_wire,
    parse_message,
)
from pact_schema.money import decimal_from_wire, decimal_to_wire, parse_decimal_text

__version__ = "0.1.0"

__all__ = [
    "ENVELOPE_VERSION",
    "PROTOCOL_VERSION",
    "Accept",
    "Ask",
    "Bid",
    "CanonicalJSONError",
    "Clock",
    "Commit",
    "Constraints",
    "Envelope",
    "EnvelopeError",
    "EnvelopeFailure",
    "FailureCode",
    "Intent",
    "KeyFormatError",
    "Keypair",
    "Message",
    "MessageValidationError",
    "Receipt",
    "Reject",
    "Reveal",
    "StreamChunk",
    "StreamStart",
    "StreamStop",
    "StreamVoucher",
    "VerifiedEnvelope",
    "canonical_json",
    "commit_hash_hex",
    "decimal_from_wire",
    "decimal_to_wire",
    "message_hash_hex",
    "message_to_wire",
    "now_ms",
    "parse_decimal_text",
    "parse_json",
    "parse_message",
    "reveal_matches",
    "sign_message",
    "verify_envelope",
]
