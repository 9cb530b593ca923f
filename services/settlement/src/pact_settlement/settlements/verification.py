"""Re-verify what the service is asked to settle (docs/decisions.md, decision 2).

Pure functions over the request: the buyer's signature on the ACCEPT, the provider's
signature on the carried ASK (an allow-listed key), that both are for the same intent and
buyer, that the ACCEPT takes the quote's price and mode, and that the validity windows hold
at this service's clock (allowing ``grace_ms`` of clock skew).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from pact_schema import (
    Accept,
    EnvelopeError,
    EnvelopeFailure,
    FailureCode,
    MessageValidationError,
    VerifiedEnvelope,
    verify_envelope,
)
from pact_schema.quote import (
    QUOTE_FIELD,
    QuoteError,
    QuoteTerms,
    check_accept,
    verify_carried_quote,
)

from pact_settlement.kit.money import MoneyError, to_money

__all__ = [
    "STREAMING_REFUSAL",
    "AcceptRefusedError",
    "VerifiedAccept",
    "VerifyPolicy",
    "is_streaming",
    "verify_accept",
]

#: Streaming needs a rail that can pay part of the lock and refund the rest in one operation
#: (``rails.base.PartialReleaseRail``); on any other rail it is refused, never silently
#: settled as hash_reveal (docs/protocol.md, "Streaming").
STREAMING_REFUSAL = (
    "settlement_mode 'streaming' is not offered on rail {rail!r}: a stream is settled by "
    "releasing the highest buyer-signed voucher and refunding the rest in one operation, which "
    "this rail cannot do; use a rail that can (the ledger), or ask for a hash_reveal quote"
)


def is_streaming(accept: Accept) -> bool:
    return accept.settlement_mode == "streaming"


class AcceptRefusedError(ValueError):
    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclass(frozen=True, slots=True)
class VerifyPolicy:
    trusted_provider_keys: frozenset[str]
    grace_ms: int
    max_delivery_window_ms: int
    max_challenge_window_ms: int


@dataclass(frozen=True, slots=True)
class VerifiedAccept:
    envelope: VerifiedEnvelope
    accept: Accept
    terms: QuoteTerms
    amount: Decimal
    bond: Decimal

    @property
    def buyer(self) -> str:
        return self.envelope.signer

    @property
    def seller(self) -> str:
        return self.terms.provider_key


_IDENTITY_FAILURES = {
    EnvelopeFailure.BAD_HASH,
    EnvelopeFailure.HASH_MISMATCH,
    EnvelopeFailure.BAD_KEY,
    EnvelopeFailure.BAD_SIGNATURE,
}


def _money(value: Decimal, what: str) -> Decimal:
    try:
        return to_money(value)
    except MoneyError as exc:
        raise AcceptRefusedError(
            FailureCode.AMOUNT_NOT_IN_RAIL_UNITS, f"{what} cannot be held exactly: {exc}"
        ) from exc


def _with_provider_quote(envelope: VerifiedEnvelope, provider_quote: Any) -> VerifiedEnvelope:
    """The ACCEPT as the quote check sees it when the provider supplied the quote separately.

    A reference-SDK buyer may send a bare ACCEPT (no ``quote``); the provider then signs the
    ASK it would have carried and forwards it as ``provider_quote``. The buyer's signature has
    already been verified over the message exactly as signed; only the quote lookup changes.
    """
    carried = envelope.message_raw.get(QUOTE_FIELD)
    if provider_quote is None:
        return envelope
    if carried is not None:
        if carried != provider_quote:
            raise AcceptRefusedError(
                FailureCode.SCHEMA_VALIDATION_FAILED,
                "provider_quote must be omitted when the ACCEPT carries its own quote",
            )
        return envelope
    message = {**envelope.message_raw, QUOTE_FIELD: provider_quote}
    return VerifiedEnvelope(
        envelope=envelope.envelope.model_copy(update={"message": message}), raw=envelope.raw
    )


def verify_accept(
    raw: Any, *, policy: VerifyPolicy, now_ms: int, provider_quote: Any = None
) -> VerifiedAccept:
    """Raise :class:`AcceptRefused` (with a FailureCode) on the first fault."""
    try:
        envelope = verify_envelope(raw)
    except EnvelopeError as exc:
        code = (
            FailureCode.FAILED_IDENTITY
            if exc.failure in _IDENTITY_FAILURES
            else FailureCode.SCHEMA_VALIDATION_FAILED
        )
        raise AcceptRefusedError(code, f"accept envelope: {exc}") from exc
    try:
        message = envelope.parse()
    except MessageValidationError as exc:
        raise AcceptRefusedError(exc.code, f"accept message: {exc.detail}") from exc
    if not isinstance(message, Accept):
        raise AcceptRefusedError(
            FailureCode.UNEXPECTED_MESSAGE, f"expected an ACCEPT message, got {message.type}"
        )
    minted_after_accept = provider_quote is not None and QUOTE_FIELD not in envelope.message_raw
    quoted = _with_provider_quote(envelope, provider_quote)
    try:
        terms = verify_carried_quote(
            quoted,
            trusted_provider_keys=policy.trusted_provider_keys,
            now_ms=now_ms,
            grace_ms=policy.grace_ms,
        )
        check_accept(message, terms)
    except QuoteError as exc:
        raise AcceptRefusedError(exc.code, exc.detail) from exc

    grace = policy.grace_ms
    ask = terms.ask
    if message.proof_type != message.settlement_mode:
        raise AcceptRefusedError(
            FailureCode.SETTLEMENT_MODE_NOT_ALLOWED,
            f"proof_type {message.proof_type!r} differs from settlement_mode "
            f"{message.settlement_mode!r}",
        )
    if message.sent_at_ms > now_ms + grace:
        raise AcceptRefusedError(
            FailureCode.CLOCK_SKEW_TOO_LARGE,
            f"ACCEPT sent_at_ms {message.sent_at_ms} is ahead of this service's clock {now_ms}",
        )
    if now_ms > message.expires_at_ms + grace:
        raise AcceptRefusedError(
            FailureCode.INTENT_EXPIRED,
            f"the ACCEPT expired at {message.expires_at_ms} (now {now_ms})",
        )
    if message.sent_at_ms + grace < ask.sent_at_ms and not minted_after_accept:
        raise AcceptRefusedError(
            FailureCode.QUOTE_INVALID, "the ACCEPT is dated before the quote it accepts"
        )
    if message.sent_at_ms > ask.expires_at_ms + grace:
        raise AcceptRefusedError(
            FailureCode.QUOTE_EXPIRED,
            f"the ACCEPT was sent at {message.sent_at_ms}, after the quote expired at "
            f"{ask.expires_at_ms}",
        )
    if message.delivery_deadline_ms <= now_ms:
        raise AcceptRefusedError(
            FailureCode.SCHEMA_VALIDATION_FAILED,
            f"delivery_deadline_ms {message.delivery_deadline_ms} has already passed (now "
            f"{now_ms}); it is an absolute Unix time in ms",
        )
    if message.delivery_deadline_ms > now_ms + policy.max_delivery_window_ms:
        raise AcceptRefusedError(
            FailureCode.DURATION_EXCEEDED,
            f"delivery_deadline_ms is more than {policy.max_delivery_window_ms} ms away",
        )
    if message.challenge_window_ms > policy.max_challenge_window_ms:
        raise AcceptRefusedError(
            FailureCode.DURATION_EXCEEDED,
            f"challenge_window_ms exceeds {policy.max_challenge_window_ms}",
        )
    amount = _money(message.agreed_price, "agreed_price")
    bond = _money(terms.bond, "bond_required")
    return VerifiedAccept(envelope=envelope, accept=message, terms=terms, amount=amount, bond=bond)
