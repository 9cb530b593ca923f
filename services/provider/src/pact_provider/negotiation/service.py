"""Negotiation decisions: verify, check policy, price, and sign the reply. No HTTP, no memory.

:class:`Negotiator` takes the provider identity, the price book, the policy, a settlement gateway
and a clock, so every branch is unit-testable without a server. Each call returns a
:class:`Decision`: the signed reply envelope plus the transcript facts to log. What cannot be
answered with a signed message raises a :class:`~pact_provider.errors.ProviderError`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any, Protocol

from pact_schema import (
    PROTOCOL_VERSION,
    Accept,
    Bid,
    EnvelopeError,
    FailureCode,
    Intent,
    MessageValidationError,
    Reject,
    VerifiedEnvelope,
    parse_json,
    parse_message,
    sign_message,
    verify_envelope,
)
from pact_schema.money import format_amount
from pact_schema.quote import (
    QUOTE_FIELD,
    QuoteError,
    QuoteTerms,
    check_accept,
    quote_binding_fields,
    verify_carried_quote,
    with_quote,
)
from pact_schema.text import is_intent_id

from pact_provider.config import (
    MAX_QUOTE_VALID_FOR_MS,
    MIN_QUOTE_VALID_FOR_MS,
    ProviderSettings,
)
from pact_provider.errors import BadEnvelopeError, SettlementUnavailableError
from pact_provider.identity import ProviderIdentity
from pact_provider.negotiation.pricing import PriceBook, ask_numbers, concede
from pact_provider.observability import Logger
from pact_provider.quotes.store import QuoteStore
from pact_provider.settlement_client import (
    SettlementGateway,
    SettlementRecord,
    SettlementRefusedError,
)

__all__ = [
    "MESSAGE_TYPES",
    "UNFULFILLED_STATES",
    "AfterSettlement",
    "Clock",
    "Decision",
    "Delivery",
    "Negotiator",
    "Policy",
    "Record",
    "SettledAgreement",
    "parse_envelope",
]

Clock = Callable[[], int]
"""Returns the provider's current time in Unix milliseconds."""

Record = Callable[[str, dict[str, Any]], None]
"""Takes a transcript event: its name and its fields."""

MESSAGE_TYPES = frozenset(
    {"INTENT", "ASK", "BID", "ACCEPT", "REJECT", "COMMIT", "REVEAL", "RECEIPT"}
)
UNKNOWN_INTENT_ID = "unknown"
LENIENT_INTENT_TYPE = "unspecified"
MAX_REASON = 4096
UNIT = "request"


@dataclass(frozen=True, slots=True)
class Policy:
    """The negotiation limits of :class:`ProviderSettings` (defaults live there only)."""

    quote_valid_for_ms: int
    max_clock_skew_ms: int
    quote_grace_ms: int
    reply_ttl_ms: int
    max_rounds: int
    price_floor_ratio: Decimal
    settlement_modes: frozenset[str]
    lenient_accept: bool
    min_delivery_window_ms: int = 30_000
    settlement_rail: str | None = None
    max_negotiation_ms: int = 300_000

    @classmethod
    def defaults(cls, **overrides: Any) -> Policy:
        """The documented default policy (environment not read), with ``overrides``."""
        return replace(cls.from_settings(ProviderSettings.model_construct()), **overrides)

    @classmethod
    def from_settings(cls, settings: ProviderSettings) -> Policy:
        return cls(
            quote_valid_for_ms=settings.quote_valid_for_ms,
            max_clock_skew_ms=settings.max_clock_skew_ms,
            quote_grace_ms=settings.quote_grace_ms,
            reply_ttl_ms=settings.reply_ttl_ms,
            max_rounds=settings.max_rounds,
            price_floor_ratio=settings.price_floor_ratio,
            settlement_modes=frozenset(settings.settlement_modes),
            lenient_accept=settings.lenient_accept,
            min_delivery_window_ms=settings.min_delivery_window_ms,
            settlement_rail=settings.settlement_rail,
            max_negotiation_ms=settings.max_negotiation_ms,
        )


@dataclass(frozen=True, slots=True)
class Decision:
    """A signed reply and what the transcript records about it."""

    envelope: dict[str, Any]
    event: str
    message_type: str
    """Type of the incoming message (``INVALID`` when it was not a known type)."""
    outcome: str
    """Type of the reply: ASK, REJECT or ACCEPT."""
    intent_id: str
    code: str | None = None
    price: Decimal | None = None
    round: int | None = None
    buyer: str | None = None
    settlement_id: str | None = None

    def transcript(self) -> dict[str, Any]:
        """The transcript fields, in this order, those that are None left out."""
        fields: dict[str, Any] = {
            "intent_id": self.intent_id,
            "message_type": self.message_type,
            "outcome": self.outcome,
        }
        if self.code is not None:
            fields["code"] = self.code
        if self.price is not None:
            fields["price"] = format_amount(self.price)
        if self.round is not None:
            fields["round"] = self.round
        if self.buyer is not None:
            fields["buyer"] = self.buyer
        if self.settlement_id is not None:
            fields["settlement_id"] = self.settlement_id
        fields["reply_hash"] = self.envelope["message_hash_hex"]
        return fields


@dataclass(frozen=True, slots=True)
class SettledAgreement:
    """An ACCEPT that settlement has taken (funds locked or pending), or a resent one."""

    accept: Accept
    accept_envelope: dict[str, Any]
    terms: QuoteTerms | None
    """The quote the ACCEPT takes (carried, or found in the quote store); None for a bare
    ACCEPT taken in lenient mode."""
    settlement: SettlementRecord
    time_to_deliver: bool = True
    """False when the delivery deadline is too near to start delivering now (a resent ACCEPT
    found its settlement locked with less than MIN_DELIVERY_WINDOW_MS left)."""

    @property
    def buyer_key(self) -> str:
        return str(self.accept_envelope["signer_public_key_b58"])


@dataclass(frozen=True, slots=True)
class Delivery:
    """What the fulfilment hook did: the settlement as it ended up, the ``delivery`` report
    for the ACCEPT ack, or a refusal (code, reason) to answer with a signed REJECT instead."""

    settlement: SettlementRecord
    report: Mapping[str, Any] | None = None
    refusal: tuple[str, str] | None = None


class AfterSettlement(Protocol):
    """Hook run after settlement took an ACCEPT: delivers (commit/reveal) and says how it went.

    The payload may leave the provider (in ``report``) only once settlement has recorded the
    REVEAL as delivered.
    """

    def __call__(self, agreement: SettledAgreement) -> Awaitable[Delivery]: ...


async def no_fulfilment(agreement: SettledAgreement) -> Delivery:
    """Delivery is left to another process using the settlement API."""
    return Delivery(agreement.settlement)


#: Settlement states in which the buyer paid nothing and got nothing: the answer is a REJECT.
UNFULFILLED_STATES = frozenset({"refunded", "slashed", "failed"})


class _RefusalError(Exception):
    """Control flow: the message is refused with a signed REJECT."""

    def __init__(
        self,
        code: str,
        reason: str,
        *,
        price: Decimal | None = None,
        round: int | None = None,
        extra: Mapping[str, Any] | None = None,
        settlement_id: str | None = None,
    ) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.price = price
        self.round = round
        self.extra = dict(extra or {})
        self.settlement_id = settlement_id


def parse_envelope(body: bytes) -> VerifiedEnvelope:
    """Parse the raw body (numbers as received) and verify hash and signature.

    Raises :class:`BadEnvelope` (HTTP 400) with ``ENVELOPE_<failure>`` as its code.
    """
    try:
        raw = parse_json(body)
    except (ValueError, RecursionError) as exc:
        raise BadEnvelopeError(f"body is not JSON: {exc}"[:MAX_REASON]) from exc
    try:
        return verify_envelope(raw)
    except EnvelopeError as exc:
        raise BadEnvelopeError(
            exc.detail[:MAX_REASON], code=f"ENVELOPE_{exc.failure.name}"
        ) from exc
    except RecursionError as exc:
        raise BadEnvelopeError("message is nested too deeply") from exc


def _intent_id_of(message: Mapping[str, Any]) -> str:
    """The intent id to answer an invalid message with: its own when that is a valid intent
    id (the buyer can match the REJECT), else ``unknown`` — an id outside the wire alphabet is
    never echoed into a signed reply, a log line or a settlement request."""
    value = message.get("intent_id")
    return value if is_intent_id(value) else UNKNOWN_INTENT_ID


def _type_of(message: Mapping[str, Any]) -> str:
    value = message.get("type")
    return value if isinstance(value, str) and value in MESSAGE_TYPES else "INVALID"


class Negotiator:
    """The provider's decisions for one message at a time, with no state between messages."""

    def __init__(
        self,
        *,
        identity: ProviderIdentity,
        price_book: PriceBook,
        policy: Policy,
        clock: Clock,
        settlement: SettlementGateway | None,
        log: Logger,
        after_settlement: AfterSettlement = no_fulfilment,
        can_fulfil: Callable[[str], bool] | None = None,
        quote_store: QuoteStore | None = None,
    ) -> None:
        self.identity = identity
        self.quote_store = quote_store
        self.can_fulfil = can_fulfil
        self.price_book = price_book
        self.policy = policy
        self.clock = clock
        self.settlement = settlement
        self.after_settlement = after_settlement
        self.log = log
        self._keypair = identity.keypair

    async def handle(self, body: bytes, record: Record | None = None) -> Decision:
        """Answer one raw ``POST /pact`` body; the decision is a transcript event, logged on a
        line of its own or handed to ``record`` (the HTTP layer folds it into the request's
        access line)."""
        write = record if record is not None else self._log_event
        try:
            verified = parse_envelope(body)
        except BadEnvelopeError as exc:
            write("pact.envelope.refused", {"code": exc.code, "detail": exc.detail})
            raise
        decision = await self.handle_verified(verified)
        write(decision.event, decision.transcript())
        return decision

    def _log_event(self, event: str, fields: dict[str, Any]) -> None:
        self.log.info(event, **fields)

    async def handle_verified(self, verified: VerifiedEnvelope) -> Decision:
        """The decision for a verified envelope (not logged)."""
        raw = verified.message_raw
        message_type = _type_of(raw)
        try:
            message = parse_message(raw)
        except MessageValidationError as exc:
            return self._reject(
                message_type,
                _intent_id_of(raw),
                _RefusalError(exc.code.value, exc.detail),
                event="pact.message.invalid",
                buyer=verified.signer,
            )
        try:
            if isinstance(message, Intent):
                return await self._on_intent(verified, message)
            if isinstance(message, Bid):
                return await self._on_bid(verified, message)
            if isinstance(message, Accept):
                return await self._on_accept(verified, message)
            if isinstance(message, Reject):
                return self._on_reject(verified, message)
            raise _RefusalError(
                FailureCode.UNEXPECTED_MESSAGE.value,
                f"a provider does not take {message.type} messages at /pact",
            )
        except _RefusalError as refusal:
            return self._reject(
                message.type,
                message.intent_id,
                refusal,
                event=f"pact.{message.type.lower()}.rejected",
                buyer=verified.signer,
            )

    # --- message handlers -----------------------------------------------------------------

    async def _on_intent(self, verified: VerifiedEnvelope, intent: Intent) -> Decision:
        now = self.clock()
        self._check_clock(intent, now)
        return await self._quote(intent, buyer=verified.signer, now=now)

    async def quote(self, request: Intent) -> Decision:
        """The reference HTTP adapter's ``POST /quote``: the same pricing and checks as an
        INTENT, but the request is unsigned, so the ASK is an *open* quote bound to its intent
        id and to no buyer (see :mod:`pact_schema.quote`). ``request`` is the quote request as
        an INTENT (its times are the provider's)."""
        try:
            return await self._quote(request, buyer=None, now=self.clock())
        except _RefusalError as refusal:
            return self._reject(
                "QUOTE", request.intent_id, refusal, event="pact.quote.rejected", buyer=None
            )

    def refuse(self, message_type: str, intent_id: str, code: str, reason: str) -> Decision:
        """A signed REJECT for a request the reference adapter could not take (its intent id
        only when valid: what is refused is never echoed)."""
        return self._reject(
            message_type,
            intent_id if is_intent_id(intent_id) else UNKNOWN_INTENT_ID,
            _RefusalError(code, reason),
            event=f"pact.{message_type.lower()}.rejected",
            buyer=None,
        )

    async def _quote(self, intent: Intent, *, buyer: str | None, now: int) -> Decision:
        """A round-1 ASK for ``intent`` (bound to ``buyer``; None: an open quote), stored in
        the quote store when there is one."""
        if intent.settlement_mode not in self.policy.settlement_modes:
            raise _RefusalError(
                FailureCode.SETTLEMENT_MODE_NOT_ALLOWED.value,
                f"settlement_mode {intent.settlement_mode!r} is not offered",
            )
        offer = self.price_book.offer(intent.intent)
        if offer is None:
            raise _RefusalError(
                FailureCode.INTENT_NOT_ALLOWED.value,
                f"intent type {intent.intent!r} is not offered by this provider",
            )
        if self.can_fulfil is not None and not self.can_fulfil(intent.intent):
            raise _RefusalError(
                FailureCode.INTENT_NOT_ALLOWED.value,
                f"intent type {intent.intent!r} has a price but nothing here delivers it",
            )
        if (
            offer.freshness_sec is not None
            and intent.constraints.freshness_sec < offer.freshness_sec
        ):
            raise _RefusalError(
                FailureCode.FRESHNESS_BREACH.value,
                f"{intent.intent!r} data here may be up to {offer.freshness_sec} s old; the "
                f"INTENT asks for at most {intent.constraints.freshness_sec} s",
            )
        price = self.price_book.price_for(intent, offer)
        if price > intent.max_price:
            raise _RefusalError(
                FailureCode.PRICE_ABOVE_MAX.value,
                f"the price {format_amount(price)} exceeds max_price "
                f"{format_amount(intent.max_price)}",
                price=price,
            )
        # The promised latency is the provider's own figure, whatever the INTENT asks for: a
        # buyer must not be able to dictate a promise the provider would then break.
        envelope = self._sign_ask(
            intent_id=intent.intent_id,
            price=price,
            latency_ms=offer.latency_ms,
            now=now,
            binding=quote_binding_fields(
                buyer_key=buyer,
                round_number=1,
                intent_type=intent.intent,
                settlement_mode=intent.settlement_mode,
                list_price=price,
                scope=intent.scope,
                started_ms=now,
            ),
        )
        await self._keep(envelope, buyer=buyer, intent_id=intent.intent_id, round_number=1)
        return Decision(
            envelope=envelope,
            event="pact.intent.quoted" if buyer is not None else "pact.quote.quoted",
            message_type="INTENT" if buyer is not None else "QUOTE",
            outcome="ASK",
            intent_id=intent.intent_id,
            price=price,
            round=1,
            buyer=buyer,
        )

    async def _keep(
        self, envelope: dict[str, Any], *, buyer: str | None, intent_id: str, round_number: int
    ) -> None:
        """Store a signed ASK (when a quote store is configured) before it is handed out."""
        if self.quote_store is None:
            return
        await self.quote_store.put(
            buyer=buyer,
            intent_id=intent_id,
            round_number=round_number,
            envelope=envelope,
            ttl_ms=self.policy.quote_valid_for_ms + self.policy.quote_grace_ms,
        )

    def _rail_for(self, accept: Accept) -> str | None:
        """The buyer's signed choice (ACCEPT field ``rail``), else the configured default."""
        requested = accept.extras.get("rail")
        if isinstance(requested, str) and requested:
            return requested
        return self.policy.settlement_rail

    async def _on_bid(self, verified: VerifiedEnvelope, bid: Bid) -> Decision:
        now = self.clock()
        self._check_clock(bid, now)
        if not MIN_QUOTE_VALID_FOR_MS <= bid.valid_for_ms <= MAX_QUOTE_VALID_FOR_MS:
            raise _RefusalError(
                FailureCode.FIRM_QUOTE_OUT_OF_RANGE.value,
                f"a BID's valid_for_ms must be {MIN_QUOTE_VALID_FOR_MS} to "
                f"{MAX_QUOTE_VALID_FOR_MS} (the reference's firm-quote range), not "
                f"{bid.valid_for_ms}",
            )
        terms = self._carried_quote(verified, now)
        self._check_duration(terms, now, "BID")
        if terms.round >= self.policy.max_rounds:
            raise _RefusalError(
                FailureCode.ROUND_EXCEEDED.value,
                f"at most {self.policy.max_rounds} rounds; the carried quote is round "
                f"{terms.round} and can still be accepted as it is",
                price=terms.price,
                round=terms.round + 1,
            )
        price = concede(
            previous_ask=terms.price,
            bid=bid.price,
            list_price=terms.list_price,
            floor_ratio=self.policy.price_floor_ratio,
        )
        envelope = self._sign_ask(
            intent_id=bid.intent_id,
            price=price,
            latency_ms=terms.ask.latency_ms,
            now=now,
            binding=quote_binding_fields(
                buyer_key=terms.buyer_key,
                round_number=terms.round + 1,
                intent_type=terms.intent_type,
                settlement_mode=terms.settlement_mode,
                list_price=terms.list_price,
                scope=terms.scope,
                started_ms=terms.started_ms,
            ),
        )
        await self._keep(
            envelope, buyer=terms.buyer_key, intent_id=bid.intent_id, round_number=terms.round + 1
        )
        return Decision(
            envelope=envelope,
            event="pact.bid.countered",
            message_type="BID",
            outcome="ASK",
            intent_id=bid.intent_id,
            price=price,
            round=terms.round + 1,
            buyer=verified.signer,
        )

    async def _on_accept(self, verified: VerifiedEnvelope, accept: Accept) -> Decision:
        now = self.clock()
        self._check_accept_clock(accept, now)
        terms: QuoteTerms | None = None
        provider_quote: dict[str, Any] | None = None
        bare = verified.message_raw.get(QUOTE_FIELD) is None
        if bare and self.quote_store is not None:
            stored = await self._stored_quote(verified, accept, now)
            if stored is not None:
                terms, provider_quote = stored
        if terms is None and bare and self.policy.lenient_accept:
            provider_quote = self._lenient_quote(verified, accept, now)
        elif terms is None:
            if bare and self.quote_store is not None:
                raise _RefusalError(
                    FailureCode.QUOTE_MISSING.value,
                    "no quote for this buyer and intent id is on record (never made, or "
                    "expired): send an INTENT (or POST /quote) first, or carry the signed ASK "
                    "in the ACCEPT's 'quote' field",
                    price=accept.agreed_price,
                )
            terms = self._carried_quote(verified, now)
            try:
                check_accept(accept, terms)
            except QuoteError as exc:
                raise _RefusalError(exc.code.value, exc.detail, price=accept.agreed_price) from exc
        if terms is not None:
            # The ACCEPT's own signed time: a resend keeps it, so it is answered alike.
            self._check_duration(terms, accept.sent_at_ms, "ACCEPT")
        if self.settlement is None:
            raise _RefusalError(
                FailureCode.SETTLEMENT_FAILED.value,
                "no settlement service is configured for this provider",
                price=accept.agreed_price,
            )
        accept_hash = verified.envelope.message_hash_hex.lower()
        window = accept.delivery_deadline_ms - now
        time_to_deliver = window >= self.policy.min_delivery_window_ms
        if time_to_deliver:
            record = await self._settle(self.settlement, verified, accept, provider_quote)
        else:
            # Too late to start a delivery: take no new ACCEPT, but a resent one whose trade
            # settlement already holds is answered with that trade (delivered, or called off).
            found = await self.settlement.find(verified.signer, accept.intent_id)
            if found is None:
                raise _RefusalError(
                    FailureCode.DELIVERY_WINDOW_TOO_SHORT.value,
                    f"delivery_deadline_ms is {window} ms away; this provider needs at least "
                    f"{self.policy.min_delivery_window_ms} ms to deliver (its ASK says so "
                    "in min_delivery_window_ms) and takes no ACCEPT it cannot meet",
                    price=accept.agreed_price,
                )
            record = found
        agreement = SettledAgreement(
            accept=accept,
            accept_envelope=verified.raw,
            terms=terms,
            settlement=record,
            time_to_deliver=time_to_deliver,
        )
        if accept.settlement_mode == "streaming":
            # Delivered by the stream the buyer opens (POST /pact/stream), never committed.
            delivery = await no_fulfilment(agreement)
        else:
            delivery = await self.after_settlement(agreement)
        record = delivery.settlement
        if delivery.refusal is not None or record.state in UNFULFILLED_STATES:
            code, reason = delivery.refusal or (
                record.failure_code or FailureCode.SETTLEMENT_FAILED.value,
                f"settlement {record.id} ended {record.state}: nothing is delivered and the "
                "buyer keeps its money",
            )
            raise _RefusalError(
                code,
                reason,
                price=accept.agreed_price,
                extra={"accept_hash_hex": accept_hash, "settlement": record.summary()},
                settlement_id=record.id,
            )
        sent = self.clock()
        ack = {
            "protocol_version": PROTOCOL_VERSION,
            "type": "ACCEPT",
            "intent_id": accept.intent_id,
            "agreed_price": verified.message_raw["agreed_price"],
            "settlement_mode": accept.settlement_mode,
            "proof_type": accept.proof_type,
            "challenge_window_ms": accept.challenge_window_ms,
            "delivery_deadline_ms": accept.delivery_deadline_ms,
            "sent_at_ms": sent,
            "expires_at_ms": sent + self.policy.reply_ttl_ms,
            "accept_hash_hex": accept_hash,
            "settlement": record.summary(),
        }
        if delivery.report is not None:
            ack["delivery"] = dict(delivery.report)
        return Decision(
            envelope=sign_message(ack, self._keypair, signed_at_ms=sent),
            event="pact.accept.settled",
            message_type="ACCEPT",
            outcome="ACCEPT",
            intent_id=accept.intent_id,
            price=accept.agreed_price,
            round=None if terms is None else terms.round,
            buyer=verified.signer,
            settlement_id=record.id,
        )

    async def _settle(
        self,
        settlement: SettlementGateway,
        verified: VerifiedEnvelope,
        accept: Accept,
        provider_quote: dict[str, Any] | None,
    ) -> SettlementRecord:
        """Forward the ACCEPT (a resend is replayed by settlement: same key, same answer)."""
        idempotency_key = f"accept-{verified.envelope.message_hash_hex.lower()}"
        self.log.info(
            "pact.accept.forwarded",
            intent_id=accept.intent_id,
            idempotency_key=idempotency_key,
            price=format_amount(accept.agreed_price),
            lenient=provider_quote is not None,
        )
        try:
            return await settlement.settle(
                verified.raw,
                idempotency_key=idempotency_key,
                provider_quote=provider_quote,
                rail=self._rail_for(accept),
            )
        except SettlementRefusedError as exc:
            raise _RefusalError(exc.code, exc.detail, price=accept.agreed_price) from exc
        except SettlementUnavailableError as exc:
            self.log.warning(
                "pact.accept.unavailable",
                intent_id=accept.intent_id,
                idempotency_key=idempotency_key,
                code=exc.code,
                detail=exc.detail,
            )
            raise

    def _on_reject(self, verified: VerifiedEnvelope, reject: Reject) -> Decision:
        return Decision(
            envelope=self._sign_reject(
                reject.intent_id,
                f"acknowledged: {reject.reason}",
                reject.code,
                acknowledges=verified.envelope.message_hash_hex.lower(),
            ),
            event="pact.reject.acknowledged",
            message_type="REJECT",
            outcome="REJECT",
            intent_id=reject.intent_id,
            buyer=verified.signer,
        )

    # --- helpers ----------------------------------------------------------------------------

    def _check_accept_clock(self, accept: Accept, now: int) -> None:
        """An ACCEPT may be old: the buyer resends the same signed ACCEPT after a 503, and it
        is answered with the settlement's outcome for as long as its quote is valid (checked
        with the quote). It must not be expired, nor dated ahead of this clock."""
        if accept.expires_at_ms <= now:
            raise _RefusalError(
                FailureCode.INTENT_EXPIRED.value,
                f"the ACCEPT expired at {accept.expires_at_ms} (provider clock {now})",
            )
        ahead = accept.sent_at_ms - now
        if ahead > self.policy.max_clock_skew_ms:
            raise _RefusalError(
                FailureCode.CLOCK_SKEW_TOO_LARGE.value,
                f"sent_at_ms is {ahead:+d} ms ahead of the provider clock "
                f"(allowed +{self.policy.max_clock_skew_ms} ms)",
            )

    def _check_clock(self, message: Intent | Bid | Accept, now: int) -> None:
        if message.expires_at_ms <= now:
            raise _RefusalError(
                FailureCode.INTENT_EXPIRED.value,
                f"the {message.type} expired at {message.expires_at_ms} (provider clock {now})",
            )
        skew = message.sent_at_ms - now
        if abs(skew) > self.policy.max_clock_skew_ms:
            raise _RefusalError(
                FailureCode.CLOCK_SKEW_TOO_LARGE.value,
                f"sent_at_ms is {skew:+d} ms from the provider clock "
                f"(allowed ±{self.policy.max_clock_skew_ms} ms)",
            )

    def _check_duration(self, terms: QuoteTerms, at_ms: int, what: str) -> None:
        """The whole negotiation, from its round-1 ASK, lasts at most MAX_NEGOTIATION_MS."""
        if terms.started_ms is None:
            return
        elapsed = at_ms - terms.started_ms
        if elapsed > self.policy.max_negotiation_ms:
            raise _RefusalError(
                FailureCode.DURATION_EXCEEDED.value,
                f"this {what} comes {elapsed} ms into a negotiation that may last "
                f"{self.policy.max_negotiation_ms} ms; start again with an INTENT",
            )

    async def _stored_quote(
        self, verified: VerifiedEnvelope, accept: Accept, now: int
    ) -> tuple[QuoteTerms, dict[str, Any]] | None:
        """The stored quote a bare ACCEPT takes: one made for its signer (or open) for its
        intent id, unexpired, at exactly its price and mode. None when nothing is stored;
        a refusal naming the first mismatch when quotes are stored but none matches."""
        assert self.quote_store is not None
        stored = await self.quote_store.candidates(verified.signer, accept.intent_id)
        first_error: QuoteError | None = None
        for envelope in stored:
            try:
                terms = verify_carried_quote(
                    with_quote(verified, envelope),
                    trusted_provider_keys=self.identity.trusted_keys,
                    now_ms=now,
                    grace_ms=self.policy.quote_grace_ms,
                )
                check_accept(accept, terms)
            except QuoteError as exc:
                first_error = first_error or exc
                continue
            return terms, envelope
        if first_error is not None:
            raise _RefusalError(
                first_error.code.value,
                f"no stored quote matches this bare ACCEPT: {first_error.detail}",
                price=accept.agreed_price,
            )
        return None

    def _carried_quote(self, verified: VerifiedEnvelope, now: int) -> QuoteTerms:
        try:
            return verify_carried_quote(
                verified,
                trusted_provider_keys=self.identity.trusted_keys,
                now_ms=now,
                grace_ms=self.policy.quote_grace_ms,
            )
        except QuoteError as exc:
            raise _RefusalError(exc.code.value, exc.detail) from exc

    def _lenient_quote(
        self, verified: VerifiedEnvelope, accept: Accept, now: int
    ) -> dict[str, Any]:
        """Lenient mode: a bare ACCEPT is taken only at or above the highest possible price.

        The provider then signs the ASK the buyer did not carry, so settlement can still
        check a provider-signed quote bound to this buyer, intent id and price.
        """
        floor = self.price_book.highest_price
        if accept.agreed_price < floor:
            raise _RefusalError(
                FailureCode.QUOTE_MISSING.value,
                f"a bare ACCEPT (no quote) is taken only at agreed_price ≥ "
                f"{format_amount(floor)}; "
                "send an INTENT and carry the signed ASK in the ACCEPT's 'quote' field",
                price=accept.agreed_price,
            )
        if accept.settlement_mode not in self.policy.settlement_modes:
            raise _RefusalError(
                FailureCode.SETTLEMENT_MODE_NOT_ALLOWED.value,
                f"settlement_mode {accept.settlement_mode!r} is not offered",
            )
        return self._sign_ask(
            intent_id=accept.intent_id,
            price=accept.agreed_price,
            latency_ms=0,
            now=now,
            binding=quote_binding_fields(
                buyer_key=verified.signer,
                round_number=1,
                intent_type=LENIENT_INTENT_TYPE,
                settlement_mode=accept.settlement_mode,
                list_price=accept.agreed_price,
            ),
        )

    def _sign_ask(
        self,
        *,
        intent_id: str,
        price: Decimal,
        latency_ms: int,
        now: int,
        binding: dict[str, Any],
    ) -> dict[str, Any]:
        valid_for = self.policy.quote_valid_for_ms
        numbers = ask_numbers(price)
        # The wire dict is built directly, in the field order ``message_to_wire(Ask(...))``
        # writes: every value is already checked (or made here), so an ``Ask`` model and its
        # ``model_dump`` would only cost time on every INTENT and BID.
        ask: dict[str, Any] = {
            "protocol_version": PROTOCOL_VERSION,
            "intent_id": intent_id,
            "sent_at_ms": now,
            "expires_at_ms": now + valid_for,
            "price": numbers.wire_price,
            "unit": UNIT,
            "latency_ms": latency_ms,
            "valid_for_ms": valid_for,
            "bond_required": numbers.wire_bond,
            "type": "ASK",
            "min_delivery_window_ms": self.policy.min_delivery_window_ms,
            **binding,
        }
        return sign_message(ask, self._keypair, signed_at_ms=now)

    def _sign_reject(
        self, intent_id: str, reason: str, code: str | None, **extra: Any
    ) -> dict[str, Any]:
        now = self.clock()
        message: dict[str, Any] = {
            "protocol_version": PROTOCOL_VERSION,
            "type": "REJECT",
            "intent_id": intent_id,
            "reason": reason[:MAX_REASON],
            "sent_at_ms": now,
            "expires_at_ms": now + self.policy.reply_ttl_ms,
            **extra,
        }
        if code is not None:
            message["code"] = code
        return sign_message(message, self._keypair, signed_at_ms=now)

    def _reject(
        self,
        message_type: str,
        intent_id: str,
        refusal: _RefusalError,
        *,
        event: str,
        buyer: str | None,
    ) -> Decision:
        return Decision(
            envelope=self._sign_reject(intent_id, refusal.reason, refusal.code, **refusal.extra),
            event=event,
            message_type=message_type,
            outcome="REJECT",
            intent_id=intent_id,
            code=refusal.code,
            price=refusal.price,
            round=refusal.round,
            buyer=buyer,
            settlement_id=refusal.settlement_id,
        )
