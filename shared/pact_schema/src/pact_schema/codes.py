"""Failure codes carried in REJECT messages (the reference SDK's set, plus ours)."""

from __future__ import annotations

from enum import StrEnum


class FailureCode(StrEnum):
    # Reference SDK codes (pact/1.0).
    MISSING_EXPIRES_AT = "MISSING_EXPIRES_AT"
    INTENT_EXPIRED = "INTENT_EXPIRED"
    VALID_FOR_TOO_SHORT = "VALID_FOR_TOO_SHORT"
    VALID_FOR_TOO_LONG = "VALID_FOR_TOO_LONG"
    CLOCK_SKEW_TOO_LARGE = "CLOCK_SKEW_TOO_LARGE"
    INTENT_NOT_ALLOWED = "INTENT_NOT_ALLOWED"
    SESSION_SPEND_CAP_EXCEEDED = "SESSION_SPEND_CAP_EXCEEDED"
    UNTRUSTED_ISSUER = "UNTRUSTED_ISSUER"
    ONE_OF_ADMISSION_FAILED = "ONE_OF_ADMISSION_FAILED"
    ROUND_EXCEEDED = "ROUND_EXCEEDED"
    DURATION_EXCEEDED = "DURATION_EXCEEDED"
    FIRM_QUOTE_MISSING_VALID_FOR = "FIRM_QUOTE_MISSING_VALID_FOR"
    FIRM_QUOTE_OUT_OF_RANGE = "FIRM_QUOTE_OUT_OF_RANGE"
    NEW_AGENT_EXCLUDED = "NEW_AGENT_EXCLUDED"
    REGION_NOT_ALLOWED = "REGION_NOT_ALLOWED"
    FAILURE_RATE_TOO_HIGH = "FAILURE_RATE_TOO_HIGH"
    TIMEOUT_RATE_TOO_HIGH = "TIMEOUT_RATE_TOO_HIGH"
    MISSING_REQUIRED_CREDENTIALS = "MISSING_REQUIRED_CREDENTIALS"
    QUOTE_OUT_OF_BAND = "QUOTE_OUT_OF_BAND"
    FAILED_REFERENCE_BAND = "FAILED_REFERENCE_BAND"
    SETTLEMENT_MODE_NOT_ALLOWED = "SETTLEMENT_MODE_NOT_ALLOWED"
    PRE_SETTLEMENT_LOCK_REQUIRED = "PRE_SETTLEMENT_LOCK_REQUIRED"
    BOND_INSUFFICIENT = "BOND_INSUFFICIENT"
    SETTLEMENT_FAILED = "SETTLEMENT_FAILED"
    SCHEMA_VALIDATION_FAILED = "SCHEMA_VALIDATION_FAILED"
    STREAMING_SPEND_CAP_EXCEEDED = "STREAMING_SPEND_CAP_EXCEEDED"
    LATENCY_BREACH = "LATENCY_BREACH"
    FRESHNESS_BREACH = "FRESHNESS_BREACH"
    TRANSCRIPT_STORAGE_FORBIDDEN = "TRANSCRIPT_STORAGE_FORBIDDEN"
    INVALID_POLICY = "INVALID_POLICY"

    # Negotiation outcomes of the spec, used as codes where a REJECT reports them.
    FAILED_IDENTITY = "FAILED_IDENTITY"
    FAILED_ESCROW = "FAILED_ESCROW"
    FAILED_PROOF = "FAILED_PROOF"
    INSUFFICIENT_ESCROW = "INSUFFICIENT_ESCROW"

    # Streaming (docs/protocol.md, "Streaming"; the reference SDK's exchange/streaming.ts).
    BUYER_STOPPED = "BUYER_STOPPED"
    SELLER_STOPPED = "SELLER_STOPPED"
    FAILED_POLICY = "FAILED_POLICY"
    FAILED_NEGOTIATION_TIMEOUT = "FAILED_NEGOTIATION_TIMEOUT"
    PROVIDER_SIGNATURE_INVALID = "PROVIDER_SIGNATURE_INVALID"
    HTTP_STREAMING_ERROR = "HTTP_STREAMING_ERROR"

    # Ours, where no reference code fits (documented in the README).
    VOUCHER_INVALID = "VOUCHER_INVALID"
    """A streaming voucher is not the buyer's, names another intent or seller, or claims more
    than the locked budget (docs/protocol.md, "Streaming")."""
    STREAM_DEADLINE_PASSED = "STREAM_DEADLINE_PASSED"
    """A silent stream reached its delivery deadline: settlement closed it at the last
    checkpointed voucher."""
    QUOTE_MISSING = "QUOTE_MISSING"
    """An ACCEPT or BID did not carry the provider-signed ASK it answers."""
    QUOTE_INVALID = "QUOTE_INVALID"
    """The carried quote is not this provider's, is for another intent/buyer, or was altered."""
    QUOTE_EXPIRED = "QUOTE_EXPIRED"
    """The carried quote's validity window has passed."""
    PRICE_MISMATCH = "PRICE_MISMATCH"
    """ACCEPT's agreed_price differs from the quoted price."""
    PRICE_ABOVE_MAX = "PRICE_ABOVE_MAX"
    """The provider's price for the intent exceeds the buyer's max_price."""
    UNEXPECTED_MESSAGE = "UNEXPECTED_MESSAGE"
    """A message type the receiving endpoint does not handle."""
    AMOUNT_BELOW_RAIL_MINIMUM = "AMOUNT_BELOW_RAIL_MINIMUM"
    """The amount cannot be charged on the chosen rail (e.g. below Stripe's minimum)."""
    AMOUNT_NOT_IN_RAIL_UNITS = "AMOUNT_NOT_IN_RAIL_UNITS"
    """The amount is not a whole number of the rail's smallest unit (a fraction of a cent on
    Stripe, of a wei on the evm rail): charging it would round it into a different amount."""
    DELIVERY_DEADLINE_MISSED = "DELIVERY_DEADLINE_MISSED"
    """The seller did not deliver (reveal) before the ACCEPT's delivery_deadline_ms."""
    CHALLENGE_WINDOW_CLOSED = "CHALLENGE_WINDOW_CLOSED"
    """A buyer challenge arrived after the challenge window ended."""
    CHALLENGE_REJECTED = "CHALLENGE_REJECTED"
    """A buyer challenge named no objective ground that the records support."""
    DELIVERY_WINDOW_TOO_SHORT = "DELIVERY_WINDOW_TOO_SHORT"
    """The ACCEPT's delivery_deadline_ms leaves the provider less time than it needs to deliver
    (its signed ASK states the minimum); refused before any funds lock."""
    FULFILMENT_FAILED = "FULFILMENT_FAILED"
    """The seller could not produce the goods after the funds locked; the buyer is refunded in
    full at once and no bond is slashed (the seller's signed abort)."""
    COMMIT_WINDOW_MISSED = "COMMIT_WINDOW_MISSED"
    """No COMMIT arrived while the settlement could still be delivered (quote expiry + the
    settlement's commit grace); the buyer is refunded in full and no bond is slashed."""
