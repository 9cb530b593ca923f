"""Builders for signed test messages (shared by the pact_schema tests)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from pact_schema.envelope import sign_message
from pact_schema.keys import Keypair
from pact_schema.messages import message_to_wire, parse_message
from pact_schema.quote import QUOTE_FIELD, quote_binding_fields

NOW = 1_800_000_000_000


def intent_dict(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "protocol_version": "pact/1.0",
        "type": "INTENT",
        "intent_id": "intent-1",
        "intent": "weather.data",
        "scope": "NYC",
        "constraints": {"latency_ms": 100, "freshness_sec": 30},
        "max_price": 0.0002,
        "settlement_mode": "hash_reveal",
        "sent_at_ms": NOW,
        "expires_at_ms": NOW + 60_000,
    }
    base.update(overrides)
    return base


def ask_envelope(
    provider: Keypair,
    buyer: Keypair,
    *,
    price: str = "0.00008",
    sent_at_ms: int = NOW,
    valid_for_ms: int = 20_000,
    intent_id: str = "intent-1",
    round_number: int = 1,
    **extra: Any,
) -> dict[str, Any]:
    ask = {
        "protocol_version": "pact/1.0",
        "type": "ASK",
        "intent_id": intent_id,
        "price": Decimal(price),
        "unit": "request",
        "latency_ms": 50,
        "valid_for_ms": valid_for_ms,
        "bond_required": Decimal(price) * 2,
        "sent_at_ms": sent_at_ms,
        "expires_at_ms": sent_at_ms + valid_for_ms,
        **quote_binding_fields(
            buyer_key=buyer.public_key_b58,
            round_number=round_number,
            intent_type="weather.data",
            settlement_mode="hash_reveal",
            list_price=Decimal(price),
        ),
        **extra,
    }
    return sign_message(message_to_wire(parse_message(ask)), provider)


def accept_envelope(
    buyer: Keypair,
    quote: dict[str, Any] | None,
    *,
    agreed_price: float | None = None,
    sent_at_ms: int = NOW + 1_000,
    intent_id: str | None = None,
) -> dict[str, Any]:
    message: dict[str, Any] = {
        "protocol_version": "pact/1.0",
        "type": "ACCEPT",
        "intent_id": intent_id or (quote["message"]["intent_id"] if quote else "intent-1"),
        "agreed_price": agreed_price
        if agreed_price is not None
        else (quote["message"]["price"] if quote else 0.00008),
        "settlement_mode": "hash_reveal",
        "proof_type": "hash_reveal",
        "challenge_window_ms": 1_000,
        "delivery_deadline_ms": sent_at_ms + 30_000,
        "sent_at_ms": sent_at_ms,
        "expires_at_ms": sent_at_ms + 10_000,
    }
    if quote is not None:
        message[QUOTE_FIELD] = quote
    return sign_message(message, buyer)
