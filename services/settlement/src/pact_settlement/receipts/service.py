"""Build and sign a settlement's RECEIPT (pact/1.0 RECEIPT + our documented extra fields).

The reference parser strips unknown fields, so the extras ride along under the signature
without breaking reference buyers:

* ``settlement_id``, ``outcome`` (the terminal state), ``rail``;
* ``amount_released`` / ``amount_refunded`` / ``bond_slashed``: decimal strings (exact), what
  the seller was paid, what went back to the buyer, and the seller bond paid to the buyer.

``fulfilled`` is true only for ``released``; ``failure_code`` is set whenever it is false;
``latency_ms`` (the delivery latency a quote promises, on this service's clock: the seller's
COMMIT recorded minus the funds locked) whenever there was a COMMIT.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

from pact_schema import PROTOCOL_VERSION, Keypair, canonical_json, sign_message
from pact_schema.codes import FailureCode
from pact_schema.money import decimal_to_wire

from pact_settlement.kit.money import decimal_text
from pact_settlement.kit.time import to_ms
from pact_settlement.settlements.models import Settlement
from pact_settlement.settlements.state_machine import SettlementState

__all__ = ["RECEIPT_EXTRA_FIELDS", "ReceiptIssuer"]

RECEIPT_EXTRA_FIELDS = (
    "settlement_id",
    "outcome",
    "rail",
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
        released = refunded = slashed = _ZERO
        if outcome is SettlementState.RELEASED:
            released = settlement.amount
        elif outcome is SettlementState.REFUNDED:
            refunded = settlement.amount
        elif outcome is SettlementState.SLASHED:
            refunded = settlement.amount
            slashed = settlement.bond_locked
        fulfilled = outcome is SettlementState.RELEASED
        message: dict[str, Any] = {
            "protocol_version": PROTOCOL_VERSION,
            "type": "RECEIPT",
            "intent_id": settlement.intent_id,
            "buyer_agent_id": settlement.buyer,
            "seller_agent_id": settlement.seller,
            "agreed_price": decimal_to_wire(settlement.amount),
            "fulfilled": fulfilled,
            "timestamp_ms": self.clock(),
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
            code = values.get("failure_code") or settlement.failure_code
            message["failure_code"] = str(code or FailureCode.SETTLEMENT_FAILED)
        return message

    def sign(self, message: dict[str, Any]) -> dict[str, Any]:
        return sign_message(message, self.keypair, signed_at_ms=int(message["timestamp_ms"]))

    @staticmethod
    def to_text(envelope: dict[str, Any]) -> str:
        return canonical_json(envelope).decode("utf-8")
