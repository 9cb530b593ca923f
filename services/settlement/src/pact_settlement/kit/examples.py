"""One coherent, verifiable trade for the OpenAPI document's examples.

Every example the API documents is taken from here: real Ed25519 keys (documentation-only
seeds, never to be used for anything real), envelopes that verify, ids of the shapes the
service makes, amounts as decimal strings, times that agree with each other. A test validates
each example against the schema it illustrates (``tests/test_openapi.py``), so the examples
cannot drift into placeholders (``"string"``, ``"status": 0``) or shapes the service never
sends. Built once, when the routes are declared (a handful of signatures, cached).
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache
from typing import Any, Final

from pact_schema import PROTOCOL_VERSION, Keypair, commit_hash_hex, sign_message
from pact_schema.quote import QUOTE_FIELD, quote_binding_fields

__all__ = [
    "BUYER",
    "EXAMPLE_NOW",
    "INTENT_ID",
    "SCENARIOS",
    "SELLER",
    "SETTLEMENT_ID",
    "accept_envelope",
    "account",
    "deposit",
    "envelope_body",
    "iso",
    "rails",
    "settlement",
    "settlement_page",
    "top_up",
    "transcript",
    "well_known",
]

EXAMPLE_NOW: Final = 1_764_158_400_000  # 2025-11-26T12:00:00Z
# Documentation-only keys (public seeds): they sign the examples, nothing else.
BUYER: Final = Keypair(bytes(range(1, 33)))
SELLER: Final = Keypair(bytes(range(33, 65)))
SETTLEMENT_KEY: Final = Keypair(bytes(range(65, 97)))
INTENT_ID: Final = "intent-7f3c2a9e-5b1d-4c8e-9a2f-0d6b3e8c1f47"
SETTLEMENT_ID: Final = "st_01kb0ybq0g7m4n6p8r0s2t4v6w"
PRICE: Final = "0.00008"
BOND: Final = "0.00016"
PAYLOAD: Final = b'{"city":"NYC","temperature_c":7.5,"wind_kph":18}'
NONCE: Final = bytes(range(16))
PAYLOAD_B64: Final = base64.b64encode(PAYLOAD).decode()
NONCE_B64: Final = base64.b64encode(NONCE).decode()
COMMIT_HASH: Final = commit_hash_hex(PAYLOAD_B64, NONCE_B64)
_QUOTE_VALID_MS: Final = 20_000
_DEADLINE_MS: Final = EXAMPLE_NOW + 60_000
_CHALLENGE_WINDOW_MS: Final = 5_000
# The trade's timeline, ms after EXAMPLE_NOW.
_LOCKED, _COMMITTED, _DELIVERED = 150, 420, 460
_RELEASED = _DELIVERED + _CHALLENGE_WINDOW_MS + 300


def iso(ms: int) -> str:
    """An API timestamp (RFC 3339, UTC) of a Unix ms time."""
    text = datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat().replace("+00:00", "Z")
    return text


def _at(offset_ms: int) -> str:
    return iso(EXAMPLE_NOW + offset_ms)


def _timed(kind: str, sent: int, ttl_ms: int = 60_000, **fields: Any) -> dict[str, Any]:
    return {
        "protocol_version": PROTOCOL_VERSION,
        "type": kind,
        "intent_id": INTENT_ID,
        **fields,
        "sent_at_ms": sent,
        "expires_at_ms": sent + ttl_ms,
    }


@cache
def ask_envelope() -> dict[str, Any]:
    """The provider-signed ASK (round 1) the ACCEPT takes."""
    ask = _timed(
        "ASK",
        EXAMPLE_NOW - 2_000,
        _QUOTE_VALID_MS,
        price=float(PRICE),
        unit="request",
        latency_ms=5_000,
        valid_for_ms=_QUOTE_VALID_MS,
        bond_required=float(BOND),
        min_delivery_window_ms=30_000,
        **quote_binding_fields(
            buyer_key=BUYER.public_key_b58,
            round_number=1,
            intent_type="weather.data",
            settlement_mode="hash_reveal",
            list_price=Decimal(PRICE),
            scope="NYC",
        ),
    )
    return sign_message(ask, SELLER, signed_at_ms=EXAMPLE_NOW - 2_000)


@cache
def accept_envelope() -> dict[str, Any]:
    """The buyer-signed ACCEPT, carrying the ASK in ``quote``."""
    accept = _timed(
        "ACCEPT",
        EXAMPLE_NOW,
        _QUOTE_VALID_MS - 2_000,
        agreed_price=float(PRICE),
        settlement_mode="hash_reveal",
        proof_type="hash_reveal",
        challenge_window_ms=_CHALLENGE_WINDOW_MS,
        delivery_deadline_ms=_DEADLINE_MS,
        **{QUOTE_FIELD: ask_envelope()},
    )
    return sign_message(accept, BUYER, signed_at_ms=EXAMPLE_NOW)


@cache
def envelope_body(kind: str) -> dict[str, Any]:
    """The signed envelope of a delivery request: commit, reveal, abort or challenge."""
    if kind == "commit":
        message = _timed("COMMIT", EXAMPLE_NOW + _COMMITTED, commit_hash_hex=COMMIT_HASH)
        return sign_message(message, SELLER, signed_at_ms=EXAMPLE_NOW + _COMMITTED)
    if kind == "reveal":
        message = _timed(
            "REVEAL", EXAMPLE_NOW + _DELIVERED, payload_b64=PAYLOAD_B64, nonce_b64=NONCE_B64
        )
        return sign_message(message, SELLER, signed_at_ms=EXAMPLE_NOW + _DELIVERED)
    if kind == "abort":
        message = _timed(
            "REJECT",
            EXAMPLE_NOW + _COMMITTED,
            code="FULFILMENT_FAILED",
            reason="the upstream weather API answered 503",
        )
        return sign_message(message, SELLER, signed_at_ms=EXAMPLE_NOW + _COMMITTED)
    if kind == "challenge":
        message = _timed(
            "REJECT",
            EXAMPLE_NOW + _DELIVERED + 1_000,
            code="FAILED_PROOF",
            reason="the payload does not hash to the COMMIT",
        )
        return sign_message(message, BUYER, signed_at_ms=EXAMPLE_NOW + _DELIVERED + 1_000)
    raise ValueError(f"no example envelope of kind {kind!r}")


SCENARIOS: Final = (
    "pending",
    "locked",
    "committed",
    "delivered",
    "released",
    "aborted",
    "challenged",
    "failed",
)
"""The trade at each point the API shows it: ``aborted`` is the seller's abort before any
COMMIT, ``challenged`` an upheld FAILED_PROOF challenge (no bond held: a refund)."""
_OUTCOMES: Final = {
    # scenario: (state, failure code, detail, released, refunded, ended at ms)
    "released": ("released", None, None, PRICE, "0", _RELEASED),
    "aborted": (
        "refunded",
        "FULFILMENT_FAILED",
        "the upstream weather API answered 503",
        "0",
        PRICE,
        _COMMITTED,
    ),
    "challenged": (
        "refunded",
        "FAILED_PROOF",
        "the payload does not hash to the COMMIT",
        "0",
        PRICE,
        _DELIVERED + 1_000,
    ),
    "failed": ("failed", "INSUFFICIENT_ESCROW", "0.00008 needed, 0.00002 available", "0", "0", 40),
}


@cache
def receipt_envelope(scenario: str) -> dict[str, Any]:
    state, code, _, released, refunded, ended = _OUTCOMES[scenario]
    message: dict[str, Any] = {
        "protocol_version": PROTOCOL_VERSION,
        "type": "RECEIPT",
        "intent_id": INTENT_ID,
        "buyer_agent_id": BUYER.public_key_b58,
        "seller_agent_id": SELLER.public_key_b58,
        "agreed_price": float(PRICE),
        "fulfilled": state == "released",
        "timestamp_ms": EXAMPLE_NOW + ended,
        "settlement_id": SETTLEMENT_ID,
        "outcome": state,
        "rail": "ledger",
        "amount_released": released,
        "amount_refunded": refunded,
        "bond_slashed": "0",
    }
    if scenario in ("released", "challenged"):
        message["latency_ms"] = _COMMITTED - _LOCKED
    if code is not None:
        message["failure_code"] = code
    return sign_message(message, SETTLEMENT_KEY, signed_at_ms=EXAMPLE_NOW + ended)


def _event(
    seq: int,
    event: str,
    before: str | None,
    after: str,
    at: int,
    actor: str = "provider",
    **data: Any,
) -> dict[str, Any]:
    reason = data.pop("reason", None)
    return {
        "seq": seq,
        "event": event,
        "from_state": before,
        "to_state": after,
        "actor": actor,
        "reason": reason,
        "data": data,
        "created_at": _at(at),
    }


def _events(scenario: str) -> list[dict[str, Any]]:
    events = [
        _event(1, "settlement.created", None, "pending", 30, amount=PRICE, bond=BOND, rail="ledger")
    ]
    if scenario == "pending":
        return events
    if scenario == "failed":
        return [
            *events,
            _event(
                2,
                "settlement.lock_failed",
                "pending",
                "failed",
                40,
                reason="0.00008 needed, 0.00002 available",
                code="INSUFFICIENT_ESCROW",
            ),
        ]
    events.append(
        _event(
            2,
            "settlement.locked",
            "pending",
            "locked",
            _LOCKED,
            rail_step="lock",
            rail_reference="jtx_01kb0ybq0m3c8d2f6g9h1j4k7n",
        )
    )
    if scenario == "locked":
        return events
    if scenario == "aborted":  # the seller's abort before any COMMIT
        return [
            *events,
            _event(
                3,
                "settlement.refunded",
                "locked",
                "refunded",
                _COMMITTED,
                reason="the upstream weather API answered 503",
                code="FULFILMENT_FAILED",
                rail_step="refund",
                rail_reference="jtx_01kb0ybq1a5b7c9d2e4f6g8h0j",
            ),
        ]
    events.append(
        _event(
            3,
            "settlement.committed",
            "locked",
            "committed",
            _COMMITTED,
            commit_hash_hex=COMMIT_HASH,
            latency_ms=_COMMITTED - _LOCKED,
            quoted_latency_ms=5_000,
        )
    )
    if scenario == "committed":
        return events
    events.append(
        _event(
            4,
            "settlement.delivered",
            "committed",
            "delivered",
            _DELIVERED,
            reveal_hash_hex=COMMIT_HASH,
            payload_bytes=len(PAYLOAD),
        )
    )
    if scenario == "released":
        events.append(
            _event(
                5,
                "settlement.released",
                "delivered",
                "released",
                _RELEASED,
                actor="sweeper",
                reason="challenge window closed with no upheld challenge",
                rail_step="release",
                rail_reference="jtx_01kb0ybq9r2s4t6v8w0x2y4z6a",
            )
        )
    if scenario == "challenged":
        events.append(
            _event(
                5,
                "settlement.refunded",
                "delivered",
                "refunded",
                _DELIVERED + 1_000,
                actor="buyer",
                reason="the payload does not hash to the COMMIT",
                code="FAILED_PROOF",
                rail_step="refund",
                rail_reference="jtx_01kb0ybq2b4c6d8e0f2g4h6j8k",
            )
        )
    return events


@cache
def settlement(scenario: str, *, with_events: bool = True) -> dict[str, Any]:
    """A settlement (``SettlementRead``) of this trade at ``scenario`` (:data:`SCENARIOS`)."""
    events = _events(scenario)
    reached = {e["to_state"] for e in events}
    outcome = _OUTCOMES.get(scenario)
    state = outcome[0] if outcome else scenario
    return {
        "id": SETTLEMENT_ID,
        "intent_id": INTENT_ID,
        "state": state,
        "rail": "ledger",
        "asset": "USD",
        "amount": PRICE,
        "bond": BOND,
        "bond_locked": "0",
        "buyer": BUYER.public_key_b58,
        "seller": SELLER.public_key_b58,
        "settlement_mode": "hash_reveal",
        "proof_type": "hash_reveal",
        "delivery_deadline_at": iso(_DEADLINE_MS),
        "delivery_deadline_ms": _DEADLINE_MS,
        "challenge_window_ms": _CHALLENGE_WINDOW_MS,
        "quote_expires_at": iso(EXAMPLE_NOW - 2_000 + _QUOTE_VALID_MS),
        "failure_code": outcome[1] if outcome else None,
        "failure_detail": outcome[2] if outcome else None,
        "locked_at": _at(_LOCKED) if "locked" in reached else None,
        "commit_by_at": iso(min(_DEADLINE_MS, EXAMPLE_NOW - 2_000 + _QUOTE_VALID_MS + 30_000)),
        "committed_at": _at(_COMMITTED) if "committed" in reached else None,
        "commit_hash_hex": COMMIT_HASH if "committed" in reached else None,
        "reveal_hash_hex": COMMIT_HASH if "delivered" in reached else None,
        "delivered_at": _at(_DELIVERED) if "delivered" in reached else None,
        "challenge_ends_at": _at(_DELIVERED + _CHALLENGE_WINDOW_MS)
        if "delivered" in reached
        else None,
        "receipt": receipt_envelope(scenario) if outcome else None,
        "created_at": _at(30),
        "updated_at": events[-1]["created_at"],
        "closed_at": _at(outcome[5]) if outcome else None,
        **({"events": events} if with_events else {}),
    }


def settlement_page() -> dict[str, Any]:
    return {
        "items": [settlement("released")],
        "next_cursor": "WyIyMDI1LTExLTI2VDEyOjAwOjAwLjAzMCswMDowMCIsICJzdF8wMWtiMHlicTBnN20"
        "0bjZwOHIwczJ0NHY2dyJd",
    }


def account(
    agent_id: str | None = None, available: str = "0.99992", locked: str = "0"
) -> dict[str, Any]:
    balance = {"asset": "USD", "available": available, "locked": locked}
    return {
        "agent_id": agent_id or BUYER.public_key_b58,
        **balance,
        "updated_at": _at(_RELEASED),
        "balances": [{**balance, "updated_at": _at(_RELEASED)}],
    }


@cache
def transcript() -> dict[str, Any]:
    """``GET /v1/settlements/{ref}/transcript`` of the released trade."""

    def entry(kind: str, envelope: dict[str, Any], at: int, detail: Any = None) -> dict[str, Any]:
        return {
            "kind": kind,
            "recorded_at": _at(at),
            "message_hash_hex": envelope["message_hash_hex"],
            "signer": envelope["signer_public_key_b58"],
            "detail": detail,
            "envelope": envelope,
        }

    reveal = envelope_body("reveal")
    return {
        "format": "pact-settlement-transcript/1",
        "intent_id": INTENT_ID,
        "settlement": settlement("released", with_events=False),
        "envelopes": [
            entry("quote", ask_envelope(), 30),
            entry("accept", accept_envelope(), 30),
            entry(
                "commit",
                envelope_body("commit"),
                _COMMITTED,
                {"latency_ms": _COMMITTED - _LOCKED, "quoted_latency_ms": 5_000},
            ),
            entry(
                "reveal",
                reveal,
                _DELIVERED,
                {
                    "reveal_hash_hex": COMMIT_HASH,
                    "matches_commit": True,
                    "payload_bytes": len(PAYLOAD),
                    "nonce_bytes": len(NONCE),
                    "envelope_kept": True,
                },
            ),
            entry("receipt", receipt_envelope("released"), _RELEASED),
        ],
        "omitted": [],
        "events": _events("released"),
        "settlement_public_key_b58": SETTLEMENT_KEY.public_key_b58,
    }


def deposit() -> dict[str, Any]:
    return {
        "deposit_id": "jtx_01kb0yb7x2c4d6f8g0h2j4k6m8",
        "agent_id": BUYER.public_key_b58,
        "asset": "USD",
        "amount": "1.00",
        "account": account(available="1", locked="0"),
    }


def top_up() -> dict[str, Any]:
    return {
        "payment_intent": "pi_3QxY2zAbCdEfGhIj0a1b2c3d",
        "agent_id": BUYER.public_key_b58,
        "asset": "USD",
        "amount": "20.00",
        "currency": "usd",
        "amount_minor": 2000,
        "deposit_id": "jtx_01kb0yb9a1b3c5d7e9f1g3h5j7",
        "account": account(available="20.99992", locked="0"),
    }


def payout(status: str) -> dict[str, Any]:
    """A seller payout (``PayoutRead``) on the ledger rail."""
    paid = status == "paid"
    return {
        "id": "po_01kb0ybd3f5h7k9m1p3r5t7v9x",
        "agent_id": SELLER.public_key_b58,
        "rail": "ledger",
        "asset": "USD",
        "amount": "12.5",
        "destination": "system:payouts",
        "status": status,
        "external_ref": "jtx_01kb0ybd5g7j9l1n3q5s7u9w1y" if paid else None,
        "failure_code": None,
        "failure_detail": None,
        "created_at": _at(_RELEASED + 60_000),
        "updated_at": _at(_RELEASED + 60_000),
        "resolved_at": _at(_RELEASED + 60_000) if paid else None,
    }


def rails() -> dict[str, Any]:
    return {
        "default_rail": "ledger",
        "require_seller_bond": False,
        "rails": [
            {
                "name": "ledger",
                "default": True,
                "transactional": True,
                "currency": "ledger balance",
                "asset": "USD",
                "unit": "1 price unit (the agent's deposited balance)",
                "minimum_amount": "0.000000000000000001",
                "amount_quantum": "0.000000000000000001",
                "rounding": "none: NUMERIC(38, 18), exact (else AMOUNT_NOT_IN_RAIL_UNITS)",
                "supports_bond": True,
                "confirmations": None,
                "chain_id": None,
                "contract_address": None,
                "deadline_grace_s": None,
                "authorization_validity_s": None,
                "capture_margin_s": None,
                "webhook": None,
                "webhook_configured": None,
                "needs_profile": None,
            },
            {
                "name": "stripe",
                "default": False,
                "transactional": False,
                "currency": "usd",
                "asset": "USD",
                "unit": "USD (1 price unit = 1 USD)",
                "minimum_amount": "0.5",
                "amount_quantum": "0.01",
                "rounding": "none: amounts must be whole minor units (else "
                "AMOUNT_NOT_IN_RAIL_UNITS)",
                "supports_bond": False,
                "confirmations": None,
                "chain_id": None,
                "contract_address": None,
                "deadline_grace_s": None,
                "authorization_validity_s": 604800,
                "capture_margin_s": 86400,
                "webhook": "/v1/webhooks/stripe",
                "webhook_configured": True,
                "needs_profile": {"buyer": ["stripe_customer", "stripe_payment_method"]},
            },
        ],
    }


def well_known() -> dict[str, Any]:
    return {
        "public_key_b58": SETTLEMENT_KEY.public_key_b58,
        "protocol_versions": [PROTOCOL_VERSION],
        "envelope_versions": ["pact-envelope/1.0"],
        "settlement_modes": ["hash_reveal"],
        "rails": ["ledger"],
        "challenge_codes": ["FAILED_PROOF", "DELIVERY_DEADLINE_MISSED", "LATENCY_BREACH"],
        "receipt_format": {
            "message_type": "RECEIPT",
            "signed_by": "public_key_b58 (Ed25519 over the SHA-256 of the message's canonical "
            "JSON, as every pact-envelope/1.0)",
            "fields": [
                "intent_id",
                "buyer_agent_id",
                "seller_agent_id",
                "agreed_price",
                "fulfilled",
                "latency_ms",
                "failure_code",
                "timestamp_ms",
            ],
            "extra_fields": [
                "settlement_id",
                "outcome",
                "rail",
                "amount_released",
                "amount_refunded",
                "bond_slashed",
            ],
            "amounts": "amount_released, amount_refunded and bond_slashed are decimal strings",
            "outcomes": ["released", "refunded", "slashed", "failed"],
        },
        "transcript": "GET /v1/settlements/{settlement id or intent id}/transcript",
    }
