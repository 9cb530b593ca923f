"""Streaming settlement rules every party applies alike (docs/protocol.md, "Streaming").

* :func:`sign_voucher` / :func:`verify_voucher`: the buyer's signed, cumulative
  ``STREAM_VOUCHER`` ("I owe up to N ticks, amount A, for this intent, to this seller"). A
  voucher is checked against the stream's :class:`StreamTerms` (its intent, its two parties,
  its budget): settlement does it before recording a checkpoint, the provider before sending
  more chunks.
* :func:`amount_for_ticks`: what ``ticks`` ticks cost, the reference's rate
  (``budget / planned_ticks``) applied exactly, rounded down to ``quantum`` and never above
  the budget.
* :class:`ChunkChecker`: the buyer's check of every ``STREAM_CHUNK`` (the seller's signature,
  the intent, ``seq`` without gaps, expiry), failing with the reference's codes.
* :class:`SpendCap`: the reference's per-minute spend cap over a rolling 60 s window.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal
from typing import Any

from pact_schema.codes import FailureCode
from pact_schema.envelope import EnvelopeError, sign_message, verify_envelope
from pact_schema.keys import Keypair
from pact_schema.messages import (
    PROTOCOL_VERSION,
    MessageValidationError,
    StreamChunk,
    StreamVoucher,
    parse_message,
)
from pact_schema.money import decimal_to_wire

__all__ = [
    "ChunkChecker",
    "SpendCap",
    "StreamFailureError",
    "StreamTerms",
    "VerifiedVoucher",
    "amount_for_ticks",
    "sign_voucher",
    "verify_voucher",
]

#: Smallest amount a voucher counts in by default: the reference rounds ``paid_amount`` to
#: 8 decimals, and such amounts stay exact as JSON numbers.
DEFAULT_QUANTUM = Decimal("1e-8")
_WINDOW_MS = 60_000


class StreamFailureError(ValueError):
    """A stream (or a voucher) fails a rule; ``code`` is the failure code to end it with."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


@dataclass(frozen=True, slots=True)
class StreamTerms:
    """What every voucher of one stream must agree with."""

    intent_id: str
    buyer: str
    seller: str
    budget: Decimal


@dataclass(frozen=True, slots=True)
class VerifiedVoucher:
    raw: dict[str, Any]
    voucher: StreamVoucher

    @property
    def message_hash_hex(self) -> str:
        return str(self.raw["message_hash_hex"]).lower()

    @property
    def paid_amount(self) -> Decimal:
        return self.voucher.paid_amount


def amount_for_ticks(
    budget: Decimal, planned_ticks: int, ticks: int, *, quantum: Decimal = DEFAULT_QUANTUM
) -> Decimal:
    """The cumulative price of ``ticks`` ticks: ``budget * ticks / planned_ticks``, rounded
    down to ``quantum``, at most ``budget`` (the reference's ``rate_per_tick``, exactly)."""
    if planned_ticks <= 0 or ticks < 0:
        raise ValueError("planned_ticks must be positive and ticks non-negative")
    exact = (budget * ticks / planned_ticks).quantize(quantum, rounding=ROUND_DOWN)
    return min(budget, exact)


def sign_voucher(
    keypair: Keypair,
    *,
    intent_id: str,
    seller: str,
    ticks: int,
    paid_amount: Decimal,
    seq: int,
    sent_at_ms: int,
) -> dict[str, Any]:
    """The buyer's signed ``STREAM_VOUCHER`` envelope."""
    message = {
        "protocol_version": PROTOCOL_VERSION,
        "type": "STREAM_VOUCHER",
        "intent_id": intent_id,
        "buyer_agent_id": keypair.public_key_b58,
        "seller_agent_id": seller,
        "ticks": ticks,
        "paid_amount": decimal_to_wire(paid_amount),
        "seq": seq,
        "sent_at_ms": sent_at_ms,
    }
    return sign_message(message, keypair, signed_at_ms=sent_at_ms)


def verify_voucher(raw: object, terms: StreamTerms) -> VerifiedVoucher:
    """The voucher, or :class:`StreamFailureError` (``VOUCHER_INVALID``) when it is not the
    buyer's signed promise for this stream within its budget."""
    invalid = FailureCode.VOUCHER_INVALID
    try:
        envelope = verify_envelope(raw)
    except EnvelopeError as exc:
        raise StreamFailureError(invalid, f"voucher envelope: {exc}") from exc
    try:
        message = parse_message(envelope.message_raw)
    except MessageValidationError as exc:
        raise StreamFailureError(invalid, f"voucher message: {exc.detail}") from exc
    if not isinstance(message, StreamVoucher):
        raise StreamFailureError(invalid, f"expected a STREAM_VOUCHER, got {message.type}")
    if envelope.signer != terms.buyer or message.buyer_agent_id != terms.buyer:
        raise StreamFailureError(invalid, "the voucher is not signed by this stream's buyer")
    if message.intent_id != terms.intent_id:
        raise StreamFailureError(invalid, "the voucher is for another intent")
    if message.seller_agent_id != terms.seller:
        raise StreamFailureError(invalid, "the voucher names another seller")
    if message.paid_amount > terms.budget:
        raise StreamFailureError(
            invalid,
            f"the voucher's paid_amount {decimal_to_wire(message.paid_amount)} is above the "
            f"budget {decimal_to_wire(terms.budget)}",
        )
    return VerifiedVoucher(raw=envelope.raw, voucher=message)


class ChunkChecker:
    """The buyer's check of each chunk, in order (the reference's ``onChunk``)."""

    def __init__(self, *, intent_id: str, seller: str) -> None:
        self.intent_id = intent_id
        self.seller = seller
        self.expected_seq = 0

    def check(self, raw: object, *, now_ms: int) -> StreamChunk:
        try:
            envelope = verify_envelope(raw)
        except EnvelopeError as exc:
            raise StreamFailureError(
                FailureCode.PROVIDER_SIGNATURE_INVALID, f"chunk envelope: {exc}"
            ) from exc
        if envelope.signer != self.seller:
            raise StreamFailureError(
                FailureCode.PROVIDER_SIGNATURE_INVALID, "the chunk is not signed by the seller"
            )
        try:
            message = parse_message(envelope.message_raw)
        except MessageValidationError as exc:
            raise StreamFailureError(FailureCode.FAILED_POLICY, exc.detail) from exc
        if not isinstance(message, StreamChunk):
            raise StreamFailureError(
                FailureCode.FAILED_POLICY, f"expected a STREAM_CHUNK, got {message.type}"
            )
        if message.intent_id != self.intent_id:
            raise StreamFailureError(FailureCode.FAILED_POLICY, "Intent ID mismatch")
        if message.seq != self.expected_seq:
            raise StreamFailureError(
                FailureCode.FAILED_POLICY,
                f"Invalid sequence: expected {self.expected_seq}, got {message.seq}",
            )
        if now_ms > message.expires_at_ms:
            raise StreamFailureError(FailureCode.FAILED_NEGOTIATION_TIMEOUT, "Chunk expired")
        self.expected_seq += 1
        return message


class SpendCap:
    """At most ``per_minute`` spent in any 60 s window (``None``: no cap)."""

    def __init__(self, per_minute: Decimal | None) -> None:
        self.per_minute = per_minute
        self._spent: deque[tuple[int, Decimal]] = deque()
        self._total = Decimal(0)

    def _trim(self, now_ms: int) -> None:
        while self._spent and self._spent[0][0] < now_ms - _WINDOW_MS:
            self._total -= self._spent.popleft()[1]

    def check(self, amount: Decimal, now_ms: int) -> None:
        """Raise ``STREAMING_SPEND_CAP_EXCEEDED`` if spending ``amount`` now would pass the cap."""
        if self.per_minute is None:
            return
        self._trim(now_ms)
        if self._total + amount > self.per_minute:
            raise StreamFailureError(
                FailureCode.STREAMING_SPEND_CAP_EXCEEDED,
                f"Spend cap exceeded: {decimal_to_wire(self._total + amount)} in a minute, "
                f"cap {decimal_to_wire(self.per_minute)}",
            )

    def record(self, amount: Decimal, now_ms: int) -> None:
        self._spent.append((now_ms, amount))
        self._total += amount
