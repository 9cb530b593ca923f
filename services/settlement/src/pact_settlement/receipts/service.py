"""Build and sign a settlement's RECEIPT: the reference v1 receipt, plus our extra fields.

The reference v1 fields (the reference protocol §11.3, see docs/protocol.md): ``receipt_id``
(``receipt-{intent_id}-{timestamp_ms}``), ``intent_id``, ``buyer_agent_id``,
``seller_agent_id``, ``agreed_price``, ``fulfilled`` (true only for ``released``),
``failure_code`` whenever it is false (the reference's code where one fits, see
:func:`pact_schema.taxonomy.reference_failure_code`), ``latency_ms`` whenever there was a COMMIT
(the delivery latency a quote promises, on this service's clock: the seller's COMMIT recorded
minus the funds locked), ``paid_amount`` (what the seller was paid: the price when released,
else 0) and ``timestamp_ms``. A streaming settlement's receipt (docs/protocol.md, "Streaming") has
``paid_amount`` = the highest buyer-signed voucher released, ``ticks`` (that voucher's),
``chunks`` (the seller's count at the close), ``fulfilled`` true only when the stream ran to
its budget, else ``failure_code`` = the stop code (``BUYER_STOPPED``, ``SELLER_STOPPED``, …),
plus ours: ``stream_stop_reason``, ``voucher_hash_hex`` and ``checkpoints``. Amounts are JSON
numbers, as the reference writes them.

The reference parser ignores unknown fields, so ours ride along under the signature:

* ``settlement_id``, ``outcome`` (the terminal state), ``rail``, and
  ``settlement_failure_code`` (our own code, whenever ``failure_code`` is set);
* ``amount_released`` / ``amount_refunded`` / ``bond_slashed``: decimal strings (exact), what
  the seller was paid, what went back to the buyer, and the seller bond paid to the buyer.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

from pact_schema import PROTOCOL_VERSION, Keypair, canonical_json, sign_message
from pact_schema.codes import FailureCode
from pact_schema.money import decimal_to_wire
from pact_schema.taxonomy import reference_failure_code

from pact_settlement.kit.money import add, decimal_text, neg
from pact_settlement.kit.time import to_ms
from pact_settlement.settlements.models import Settlement
from pact_settlement.settlements.state_machine import SettlementState

__all__ = ["RECEIPT_EXTRA_FIELDS", "RECEIPT_FIELDS", "ReceiptIssuer", "receipt_id"]

RECEIPT_FIELDS = (
    "receipt_id",
    "intent_id",
    "buyer_agent_id",
    "seller_agent_id",
    "agreed_price",
    "fulfilled",
    "failure_code",
    "latency_ms",
    "paid_amount",
    "timestamp_ms",
)
RECEIPT_EXTRA_FIELDS = (
    "settlement_id",
    "outcome",
    "rail",
    "settlement_failure_code",
    "amount_released",
    "amount_refunded",
    "bond_slashed",
)
_ZERO = Decimal(0)


def delivery_latency_ms(locked_at: datetime | None, committed_at: datetime | None) -> int | None:
    """Milliseconds from the lock to the seller's COMMIT, on this service's clock: the
    measure a quote's ``latency_ms`` promise (and a ``LATENCY_BREACH`` challenge) is judged by."""
    if locked_at is None or committed_at is None:
        return None
    return max(0, to_ms(committed_at) - to_ms(locked_at))


def receipt_id(intent_id: str, timestamp_ms: int) -> str:
    """The reference's receipt id: ``receipt-{intent_id}-{timestamp_ms}``."""
    return f"receipt-{intent_id}-{timestamp_ms}"


class ReceiptIssuer:
    """Signs RECEIPTs with the settlement service's key."""

    def __init__(self, keypair: Keypair, *, clock: Callable[[], int]) -> None:
        self.keypair = keypair
        self.clock = clock

    @property
    def public_key_b58(self) -> str:
        return self.keypair.public_key_b58

    def message(
        self, settlement: Settlement, outcome: SettlementState, values: dict[str, Any]
    ) -> dict[str, Any]:
        """The RECEIPT message for ``settlement`` ending in ``outcome``; ``values`` are the
        columns the terminal transition sets (failure code, reveal digest, …)."""
        if settlement.settlement_mode == "streaming":
            return self._stream_message(settlement, outcome, values)
        released = refunded = slashed = _ZERO
        if outcome is SettlementState.RELEASED:
            released = settlement.amount
        elif outcome is SettlementState.REFUNDED:
            refunded = settlement.amount
        elif outcome is SettlementState.SLASHED:
            refunded = settlement.amount
            slashed = settlement.bond_locked
        fulfilled = outcome is SettlementState.RELEASED
        timestamp = self.clock()
        message: dict[str, Any] = {
            "protocol_version": PROTOCOL_VERSION,
            "type": "RECEIPT",
            "receipt_id": receipt_id(settlement.intent_id, timestamp),
            "intent_id": settlement.intent_id,
            "buyer_agent_id": settlement.buyer,
            "seller_agent_id": settlement.seller,
            "agreed_price": decimal_to_wire(settlement.amount),
            "fulfilled": fulfilled,
            "paid_amount": decimal_to_wire(released),
            "timestamp_ms": timestamp,
            "settlement_id": settlement.id,
            "outcome": outcome.value,
            "rail": settlement.rail,
            "amount_released": decimal_text(released),
            "amount_refunded": decimal_text(refunded),
            "bond_slashed": decimal_text(slashed),
        }
        latency = delivery_latency_ms(
            values.get("locked_at", settlement.locked_at),
            values.get("committed_at", settlement.committed_at),
        )
        if latency is not None:
            message["latency_ms"] = latency
        if not fulfilled:
            recorded = values.get("failure_code") or settlement.failure_code
            code = str(recorded or FailureCode.SETTLEMENT_FAILED)
            message["failure_code"] = reference_failure_code(code)
            message["settlement_failure_code"] = code
        return message

    def _stream_message(
        self, settlement: Settlement, outcome: SettlementState, values: dict[str, Any]
    ) -> dict[str, Any]:
        def value(name: str) -> Any:
            return values.get(name, getattr(settlement, name))

        paid = _ZERO
        if outcome is SettlementState.RELEASED:
            paid = value("stream_paid_amount") or _ZERO
        stop_code = value("stream_stop_code")
        fulfilled = outcome is SettlementState.RELEASED and stop_code is None
        timestamp = self.clock()
        message: dict[str, Any] = {
            "protocol_version": PROTOCOL_VERSION,
            "type": "RECEIPT",
            "receipt_id": receipt_id(settlement.intent_id, timestamp),
            "intent_id": settlement.intent_id,
            "buyer_agent_id": settlement.buyer,
            "seller_agent_id": settlement.seller,
            "agreed_price": decimal_to_wire(settlement.amount),
            "fulfilled": fulfilled,
            "paid_amount": decimal_to_wire(paid),
            "ticks": value("stream_ticks") or 0,
            "chunks": value("stream_chunks") or 0,
            "timestamp_ms": timestamp,
            "settlement_id": settlement.id,
            "outcome": outcome.value,
            "rail": settlement.rail,
            "amount_released": decimal_text(paid),
            "amount_refunded": decimal_text(add(settlement.amount, neg(paid))),
            "bond_slashed": decimal_text(_ZERO),
            "checkpoints": value("stream_checkpoints") or 0,
        }
        if value("stream_voucher_hash"):
            message["voucher_hash_hex"] = value("stream_voucher_hash")
        if value("stream_stop_reason"):
            message["stream_stop_reason"] = value("stream_stop_reason")
        if not fulfilled:
            code = str(stop_code or values.get("failure_code") or FailureCode.SETTLEMENT_FAILED)
            message["failure_code"] = reference_failure_code(code)
            message["settlement_failure_code"] = code
        return message

    def sign(self, message: dict[str, Any]) -> dict[str, Any]:
        return sign_message(message, self.keypair, signed_at_ms=int(message["timestamp_ms"]))

    @staticmethod
    def to_text(envelope: dict[str, Any]) -> str:
        return canonical_json(envelope).decode("utf-8")
