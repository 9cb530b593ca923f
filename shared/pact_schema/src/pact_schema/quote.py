"""Stateless quote binding (docs/decisions.md, decision 1; docs/protocol.md, "Quote binding").

A provider's ASK carries, as extra signed fields, everything needed to honour it later: the
buyer's key it was made for, the negotiation round, the intent type and settlement mode, the
opening list price and when the negotiation started. A BID or ACCEPT must carry that ASK
envelope back in its ``quote`` field; any provider replica (and the settlement service) checks
it without shared memory.

An *open* quote (``open_quote: true``, no buyer key) answers an unsigned request (the reference
HTTP adapter's ``POST /quote``), so there is no key to bind it to: it is an offer at the list
price to whoever carries it, once per buyer and intent id (settlement keeps intent ids unique
per buyer). A BID against an open quote is answered with a quote bound to the BID's signer.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from pydantic import TypeAdapter, ValidationError

from pact_schema.codes import FailureCode
from pact_schema.envelope import EnvelopeError, VerifiedEnvelope, verify_envelope
from pact_schema.keys import PublicKeyB58
from pact_schema.messages import Accept, Ask, MessageValidationError, parse_message
from pact_schema.money import WireMoneyError, decimal_from_wire, decimal_to_wire

__all__ = [
    "QUOTE_FIELD",
    "QuoteError",
    "QuoteTerms",
    "check_accept",
    "quote_binding_fields",
    "verify_carried_quote",
    "with_quote",
]

QUOTE_FIELD = "quote"
BUYER_KEY_FIELD = "buyer_public_key_b58"
ROUND_FIELD = "round"
INTENT_TYPE_FIELD = "intent"
SETTLEMENT_MODE_FIELD = "settlement_mode"
LIST_PRICE_FIELD = "list_price"
SCOPE_FIELD = "scope"
OPEN_FIELD = "open_quote"
STARTED_FIELD = "negotiation_started_ms"


class QuoteError(ValueError):
    """The carried quote cannot be honoured; ``code`` is the REJECT failure code."""

    def __init__(self, code: FailureCode, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclass(frozen=True, slots=True)
class QuoteTerms:
    """What a verified provider ASK binds."""

    envelope: dict[str, Any]
    ask: Ask
    provider_key: str
    buyer_key: str
    round: int
    intent_type: str
    settlement_mode: str
    list_price: Decimal
    scope: str | dict[str, Any] | None = None
    open: bool = False
    """An open quote: made for no buyer key; ``buyer_key`` is then the carrier's signer."""
    started_ms: int | None = None
    """When the negotiation began (the provider's clock at the round-1 ASK); None on quotes
    made before the binding had it."""

    @property
    def intent_id(self) -> str:
        return self.ask.intent_id

    @property
    def price(self) -> Decimal:
        return self.ask.price

    @property
    def bond(self) -> Decimal:
        return self.ask.bond_required


def quote_binding_fields(
    *,
    buyer_key: str | None,
    round_number: int,
    intent_type: str,
    settlement_mode: str,
    list_price: Decimal,
    scope: str | dict[str, Any] | None = None,
    started_ms: int | None = None,
) -> dict[str, Any]:
    """Extra fields a provider puts into an ASK so it can be honoured statelessly.

    ``buyer_key`` None makes an open quote (round 1 only). ``scope`` (the INTENT's) lets the
    provider fulfil an ACCEPT without remembering the INTENT; ``started_ms`` (the round-1
    ASK's time, carried through every round) bounds the whole negotiation's duration.
    """
    if buyer_key is None and round_number != 1:
        raise ValueError("only a round-1 quote can be open")
    fields: dict[str, Any] = (
        {OPEN_FIELD: True} if buyer_key is None else {BUYER_KEY_FIELD: buyer_key}
    )
    fields |= {
        ROUND_FIELD: round_number,
        INTENT_TYPE_FIELD: intent_type,
        SETTLEMENT_MODE_FIELD: settlement_mode,
        LIST_PRICE_FIELD: decimal_to_wire(list_price),
    }
    if scope is not None:
        fields[SCOPE_FIELD] = scope
    if started_ms is not None:
        fields[STARTED_FIELD] = started_ms
    return fields


_PUBLIC_KEY: TypeAdapter[str] = TypeAdapter(PublicKeyB58)


def _is_open(ask: Ask) -> bool:
    """An open quote: ``open_quote: true``, no buyer key, round 1 (else QUOTE_INVALID)."""
    marker = ask.extras.get(OPEN_FIELD)
    if marker is None:
        return False
    if marker is not True or BUYER_KEY_FIELD in ask.extras or ask.extras.get(ROUND_FIELD) != 1:
        raise QuoteError(
            FailureCode.QUOTE_INVALID,
            f"an open quote has {OPEN_FIELD!r}: true, no {BUYER_KEY_FIELD!r} and round 1",
        )
    return True


def _started(ask: Ask) -> int | None:
    value = ask.extras.get(STARTED_FIELD)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= ask.sent_at_ms:
        raise QuoteError(FailureCode.QUOTE_INVALID, f"quote has an invalid {STARTED_FIELD!r}")
    return value


def _bound_key(ask: Ask) -> str:
    """The buyer key the quote was made for: exactly a base58 public key, or QUOTE_INVALID."""
    try:
        return _PUBLIC_KEY.validate_python(ask.extras.get(BUYER_KEY_FIELD))
    except ValidationError as exc:
        raise QuoteError(
            FailureCode.QUOTE_INVALID,
            f"quote lacks a valid {BUYER_KEY_FIELD!r} binding: {exc.errors()[0]['msg']}",
        ) from exc


def _bound_str(ask: Ask, name: str) -> str:
    value = ask.extras.get(name)
    if not isinstance(value, str) or not value:
        raise QuoteError(FailureCode.QUOTE_INVALID, f"quote lacks the {name!r} binding")
    return value


def verify_carried_quote(
    carrier: VerifiedEnvelope,
    *,
    trusted_provider_keys: Collection[str],
    now_ms: int,
    grace_ms: int = 0,
) -> QuoteTerms:
    """Verify the provider-signed ASK carried in ``carrier.message['quote']``.

    Checks: present; a valid envelope; signed by a trusted provider key; an ASK for the same
    intent id; made for the carrier's signer (or open); not expired at ``now_ms`` (the
    receiver's clock, allowing ``grace_ms`` for clock differences between replicas). The
    carrier's own
    ``sent_at_ms`` is deliberately not used, so backdating a message cannot extend a quote.
    """
    raw_quote = carrier.message_raw.get(QUOTE_FIELD)
    if raw_quote is None:
        raise QuoteError(
            FailureCode.QUOTE_MISSING,
            "the message must carry the provider-signed ASK envelope in its 'quote' field",
        )
    try:
        verified = verify_envelope(raw_quote)
    except EnvelopeError as exc:
        raise QuoteError(FailureCode.QUOTE_INVALID, f"quote envelope: {exc}") from exc
    if verified.signer not in trusted_provider_keys:
        raise QuoteError(FailureCode.UNTRUSTED_ISSUER, "quote is not signed by a trusted provider")
    try:
        ask = parse_message(verified.message_raw)
    except MessageValidationError as exc:
        raise QuoteError(FailureCode.QUOTE_INVALID, f"quote message: {exc.detail}") from exc
    if not isinstance(ask, Ask):
        raise QuoteError(FailureCode.QUOTE_INVALID, f"quote must be an ASK, got {ask.type}")
    if ask.intent_id != carrier.message_raw.get("intent_id"):
        raise QuoteError(FailureCode.QUOTE_INVALID, "quote is for a different intent_id")
    is_open = _is_open(ask)
    buyer_key = carrier.signer if is_open else _bound_key(ask)
    if buyer_key != carrier.signer:
        raise QuoteError(FailureCode.FAILED_IDENTITY, "quote was made for a different buyer key")
    round_number = ask.extras.get(ROUND_FIELD)
    if isinstance(round_number, bool) or not isinstance(round_number, int) or round_number < 1:
        raise QuoteError(FailureCode.QUOTE_INVALID, "quote lacks a valid 'round'")
    try:
        list_price = decimal_from_wire(ask.extras.get(LIST_PRICE_FIELD))
    except WireMoneyError as exc:
        raise QuoteError(FailureCode.QUOTE_INVALID, f"quote list_price: {exc}") from exc
    if now_ms > ask.expires_at_ms + grace_ms:
        raise QuoteError(
            FailureCode.QUOTE_EXPIRED,
            f"quote expired at {ask.expires_at_ms} (now {now_ms})",
        )
    return QuoteTerms(
        envelope=verified.raw,
        ask=ask,
        provider_key=verified.signer,
        buyer_key=buyer_key,
        round=round_number,
        intent_type=_bound_str(ask, INTENT_TYPE_FIELD),
        settlement_mode=_bound_str(ask, SETTLEMENT_MODE_FIELD),
        list_price=list_price,
        scope=_bound_scope(ask),
        open=is_open,
        started_ms=_started(ask),
    )


def with_quote(carrier: VerifiedEnvelope, quote_envelope: dict[str, Any]) -> VerifiedEnvelope:
    """``carrier`` as :func:`verify_carried_quote` sees it when its quote comes from elsewhere
    (a bare ACCEPT and the provider's stored quote). The carrier's signature was verified over
    the message exactly as signed; only the quote lookup changes."""
    message = {**carrier.message_raw, QUOTE_FIELD: quote_envelope}
    return VerifiedEnvelope(
        envelope=carrier.envelope.model_copy(update={"message": message}), raw=carrier.raw
    )


def _bound_scope(ask: Ask) -> str | dict[str, Any] | None:
    scope = ask.extras.get(SCOPE_FIELD)
    if scope is None or isinstance(scope, str | dict):
        return scope
    raise QuoteError(FailureCode.QUOTE_INVALID, "quote scope must be a string or an object")


def check_accept(accept: Accept, terms: QuoteTerms) -> None:
    """An ACCEPT must take the quote exactly as offered."""
    if accept.agreed_price != terms.price:
        raise QuoteError(
            FailureCode.PRICE_MISMATCH,
            f"agreed_price {accept.agreed_price} differs from the quoted price {terms.price}",
        )
    if accept.settlement_mode != terms.settlement_mode:
        raise QuoteError(
            FailureCode.SETTLEMENT_MODE_NOT_ALLOWED,
            f"settlement_mode {accept.settlement_mode!r} differs from the quote's "
            f"{terms.settlement_mode!r}",
        )
