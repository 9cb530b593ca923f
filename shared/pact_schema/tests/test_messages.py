from __future__ import annotations

from decimal import Decimal

import pytest
from fixtures.schema import NOW, intent_dict
from pact_schema.codes import FailureCode
from pact_schema.keys import Keypair
from pact_schema.messages import Ask, Intent, MessageValidationError, message_to_wire, parse_message


def test_intent_money_is_decimal_from_the_shortest_wire_text() -> None:
    intent = parse_message(intent_dict(max_price=0.00008))
    assert isinstance(intent, Intent)
    assert intent.max_price == Decimal("0.00008")


def test_unknown_fields_are_kept_because_they_are_signed() -> None:
    intent = parse_message(intent_dict(x_custom={"a": 1}))
    assert intent.extras == {"x_custom": {"a": 1}}
    assert message_to_wire(intent)["x_custom"] == {"a": 1}


def test_integer_valued_doubles_count_as_integers_as_in_javascript() -> None:
    intent = parse_message(intent_dict(sent_at_ms=float(NOW)))
    assert intent.sent_at_ms == NOW


def test_missing_expires_at_has_its_own_failure_code() -> None:
    raw = intent_dict()
    del raw["expires_at_ms"]
    with pytest.raises(MessageValidationError) as caught:
        parse_message(raw)
    assert caught.value.code == FailureCode.MISSING_EXPIRES_AT


@pytest.mark.parametrize(
    "overrides",
    [
        {"protocol_version": "pact/2.0"},
        {"type": "HELLO"},
        {"max_price": 0},
        {"max_price": -1},
        {"max_price": "0.0002"},
        {"max_price": True},
        {"sent_at_ms": NOW + 60_000},
        {"sent_at_ms": -1},
        {"sent_at_ms": 1.5},
        {"settlement_mode": "cash"},
        {"intent_id": ""},
        {"constraints": {"latency_ms": -1, "freshness_sec": 1}},
        {"constraints": {"latency_ms": 1}},
    ],
)
def test_schema_violations_are_refused_with_schema_validation_failed(
    overrides: dict[str, object],
) -> None:
    with pytest.raises(MessageValidationError) as caught:
        parse_message(intent_dict(**overrides))
    assert caught.value.code == FailureCode.SCHEMA_VALIDATION_FAILED


@pytest.mark.parametrize(
    ("overrides", "detail"),
    [
        ({"sent_at_ms": True}, "INTENT.sent_at_ms: Value error, expected an integer number"),
        ({"sent_at_ms": "5"}, "INTENT.sent_at_ms: Value error, expected an integer number"),
        ({"sent_at_ms": 1.5}, "INTENT.sent_at_ms: Value error, expected an integer number"),
        (
            {"sent_at_ms": float("inf")},
            "INTENT.sent_at_ms: Value error, expected an integer number",
        ),
        ({"sent_at_ms": -1}, "INTENT.sent_at_ms: Input should be greater than or equal to 0"),
        ({"max_price": float("inf")}, "INTENT.max_price: Value error, amount must be finite"),
        ({"max_price": float("nan")}, "INTENT.max_price: Value error, amount must be finite"),
        ({"max_price": -0.5}, "INTENT.max_price: Input should be greater than 0"),
        ({"max_price": False}, "INTENT.max_price: Value error, expected a number, got a boolean"),
        ({"max_price": "0.0002"}, "INTENT.max_price: Value error, expected a number, got str"),
    ],
)
def test_wire_number_refusals_name_the_field_and_the_reason(
    overrides: dict[str, object], detail: str
) -> None:
    # The validators check plain ints and finite floats first; everything else must still
    # take the general path and be refused exactly as before.
    with pytest.raises(MessageValidationError) as caught:
        parse_message(intent_dict(**overrides))
    assert caught.value.detail == detail


def test_wire_numbers_of_every_json_kind_parse_as_javascript_reads_them() -> None:
    intent = parse_message(
        intent_dict(max_price=2**60, constraints={"latency_ms": 20.0, "freshness_sec": 0})
    )
    assert isinstance(intent, Intent)
    assert intent.max_price == Decimal(repr(float(2**60)))  # beyond 2**53: the double JS reads
    assert intent.constraints.latency_ms == 20
    assert type(intent.constraints.latency_ms) is int
    assert parse_message(intent_dict(max_price=0.1)).max_price == Decimal("0.1")  # type: ignore[union-attr]


def test_ask_must_expire_exactly_valid_for_after_sending() -> None:
    ask = {
        "protocol_version": "pact/1.0",
        "type": "ASK",
        "intent_id": "i",
        "price": 0.00008,
        "unit": "request",
        "latency_ms": 10,
        "valid_for_ms": 20_000,
        "bond_required": 0.00016,
        "sent_at_ms": NOW,
        "expires_at_ms": NOW + 20_000,
    }
    assert isinstance(parse_message(ask), Ask)
    with pytest.raises(MessageValidationError):
        parse_message({**ask, "expires_at_ms": NOW + 20_001})


@pytest.mark.parametrize(
    "message",
    [
        {"type": "REJECT", "reason": "no", "code": "INTENT_EXPIRED"},
        {"type": "COMMIT", "commit_hash_hex": "ab" * 32},
        {"type": "REVEAL", "payload_b64": "aGk=", "nonce_b64": "bm9uY2U="},
        {
            "type": "BID",
            "price": 0.00007,
            "unit": "request",
            "latency_ms": 1,
            "valid_for_ms": 1000,
            "bond_required": 0,
            "bond_offered": 0.0001,
            "expires_at_ms": NOW + 1000,
        },
        {
            "type": "ACCEPT",
            "agreed_price": 0.00008,
            "settlement_mode": "hash_reveal",
            "proof_type": "hash_reveal",
            "challenge_window_ms": 0,
            "delivery_deadline_ms": NOW + 5000,
        },
    ],
)
def test_every_timed_message_type_parses_and_round_trips(message: dict[str, object]) -> None:
    raw = {
        "protocol_version": "pact/1.0",
        "intent_id": "i",
        "sent_at_ms": NOW,
        "expires_at_ms": NOW + 5000,
        **message,
    }
    parsed = parse_message(raw)
    assert parsed.type == message["type"]
    assert message_to_wire(parsed) == raw


def test_receipt_has_no_expiry_and_round_trips() -> None:
    raw = {
        "protocol_version": "pact/1.0",
        "type": "RECEIPT",
        "intent_id": "i",
        "buyer_agent_id": Keypair(bytes(range(32))).public_key_b58,
        "seller_agent_id": Keypair(bytes(range(1, 33))).public_key_b58,
        "agreed_price": 0.00008,
        "fulfilled": True,
        "latency_ms": 12,
        "timestamp_ms": NOW,
    }
    assert message_to_wire(parse_message(raw)) == raw


def test_commit_hash_must_be_64_hex_chars() -> None:
    raw = {
        "protocol_version": "pact/1.0",
        "type": "COMMIT",
        "intent_id": "i",
        "commit_hash_hex": "xyz",
        "sent_at_ms": NOW,
        "expires_at_ms": NOW + 1,
    }
    with pytest.raises(MessageValidationError):
        parse_message(raw)


@pytest.mark.parametrize("value", ["yes", 1, "true"])
def test_urgent_must_be_a_real_boolean_as_in_the_js_schema(value: object) -> None:
    with pytest.raises(MessageValidationError):
        parse_message(intent_dict(urgent=value))
