"""The wire contract of identifiers, keys, text and amounts (root README, "Wire contract"):
one type for each, strict, and every length checked before any decoding."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import pytest
from fixtures.examples import examples
from fixtures.schema import NOW, intent_dict
from hypothesis import given, settings
from hypothesis import strategies as st
from pact_schema import keys
from pact_schema.client import PactClient
from pact_schema.envelope import EnvelopeError, EnvelopeFailure, sign_message, verify_envelope
from pact_schema.keys import (
    MAX_PUBLIC_KEY_CHARS,
    MAX_SIGNATURE_CHARS,
    KeyFormatError,
    Keypair,
    PublicKeyB58,
    check_public_key,
    verify_detached,
)
from pact_schema.messages import MessageValidationError, parse_message
from pact_schema.money import (
    MAX_AMOUNT,
    WireMoneyError,
    decimal_from_wire,
    format_amount,
    format_wire_amount,
    parse_decimal_text,
)
from pact_schema.text import INTENT_ID_MAX_LENGTH, UnsafeTextError, check_storable, is_intent_id
from pydantic import TypeAdapter, ValidationError

KEY = Keypair(bytes(range(7, 39)))

# --------------------------------------------------------------------------- intent ids

GOOD_IDS = [  # fixed values: every xdist worker must collect the same test ids
    "6a89a658-2e1a-4feb-87cd-7a59fa2ee4a8",  # str(uuid.uuid4())
    "intent-95b603eb-0c3b-4b13-8528-db8d6bb7894f",  # f"intent-{uuid.uuid4()}"
    "intent-1",
    "a",
    "A.b_c:d-e",
    "x" * INTENT_ID_MAX_LENGTH,
]
BAD_IDS = [
    "",
    "x" * (INTENT_ID_MAX_LENGTH + 1),
    "a/b",
    "..",
    "../x",
    ".hidden",
    "-x",
    "a b",
    " a",
    "a\n",
    "a\t",
    "a\x00",
    "a\x7f",
    "intent-ünïcode",
    "intent-🗽",
    "\uff41",  # fullwidth a
    "a\ud800",
    "a%2Fb",
    "a?b",
    "a#b",
]


@pytest.mark.parametrize("value", GOOD_IDS)
def test_every_id_the_reference_sdk_makes_is_an_intent_id(value: str) -> None:
    assert is_intent_id(value)
    assert parse_message(intent_dict(intent_id=value)).intent_id == value


@pytest.mark.parametrize("value", BAD_IDS)
def test_ids_outside_the_alphabet_are_refused_in_every_message(value: str) -> None:
    assert not is_intent_id(value)
    with pytest.raises(MessageValidationError) as caught:
        parse_message(intent_dict(intent_id=value))
    assert caught.value.code == "SCHEMA_VALIDATION_FAILED"


@settings(max_examples=examples(500), deadline=None)
@given(st.text(max_size=140))
def test_intent_id_is_exactly_the_documented_rule(value: str) -> None:
    rule = re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}", value, flags=re.ASCII)
    assert is_intent_id(value) is (rule is not None)


# --------------------------------------------------------------------------- public keys

_KEYS: TypeAdapter[str] = TypeAdapter(PublicKeyB58)


@pytest.mark.parametrize(
    "text",
    [
        KEY.public_key_b58 + "\n",  # the second, unspendable account of issue 12
        KEY.public_key_b58 + " ",
        " " + KEY.public_key_b58,
        "1" + KEY.public_key_b58,  # a leading zero byte: 33 bytes
        KEY.public_key_b58[:-5],  # too few bytes
        "0" + KEY.public_key_b58[1:],
        "z" * (MAX_PUBLIC_KEY_CHARS + 1),
    ],
)
def test_a_key_has_one_name_only(text: str) -> None:
    with pytest.raises(KeyFormatError):
        check_public_key(text)
    with pytest.raises(ValidationError):
        _KEYS.validate_python(text)


def test_keys_and_signatures_round_trip_only_in_canonical_form() -> None:
    assert _KEYS.validate_python(KEY.public_key_b58) == KEY.public_key_b58
    assert check_public_key("1" * 32) == "1" * 32  # 32 zero bytes: the shortest key text
    with pytest.raises(ValidationError):
        _KEYS.validate_python(b"bytes are not text")


@pytest.fixture
def decoder_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The length of every text the base58 decoder is asked to decode."""
    calls: list[int] = []
    real = keys.b58decode

    def spy(text: str, *, max_bytes: int) -> bytes:
        calls.append(len(text))
        return real(text, max_bytes=max_bytes)

    monkeypatch.setattr(keys, "b58decode", spy)
    keys._public_key_bytes.cache_clear()
    keys._verify_key.cache_clear()
    return calls


@pytest.mark.parametrize("field", ["signer_public_key_b58", "signature_b58"])
def test_over_long_key_or_signature_is_refused_without_decoding_it(
    decoder_calls: list[int], field: str
) -> None:
    envelope = sign_message(intent_dict(), KEY)
    huge = "z" * 1_000_000
    with pytest.raises(EnvelopeError) as caught:
        verify_envelope({**envelope, field: huge})
    expected = (
        EnvelopeFailure.BAD_KEY if field.startswith("signer") else EnvelopeFailure.BAD_SIGNATURE
    )
    assert caught.value.failure is expected
    with pytest.raises(KeyFormatError):
        verify_detached(
            huge if field.startswith("signer") else KEY.public_key_b58,
            huge if field == "signature_b58" else envelope["signature_b58"],
            b"x",
        )
    assert all(n <= MAX_SIGNATURE_CHARS for n in decoder_calls), decoder_calls
    assert verify_envelope(envelope).signer == KEY.public_key_b58
    assert decoder_calls  # the good envelope was decoded: the spy sees the real calls


def test_the_decoder_refuses_over_long_text_before_reading_it() -> None:
    with pytest.raises(KeyFormatError, match="at most 44"):
        keys.b58decode("0" * 45, max_bytes=32)  # "0" is foreign, but the length goes first
    with pytest.raises(KeyFormatError, match="at most 88"):
        Keypair.from_secret_b58("z" * 10_000)


def test_a_key_with_a_newline_does_not_verify_as_the_key() -> None:
    envelope = sign_message(intent_dict(), KEY)
    with pytest.raises(EnvelopeError) as caught:
        verify_envelope({**envelope, "signer_public_key_b58": KEY.public_key_b58 + "\n"})
    assert caught.value.failure is EnvelopeFailure.BAD_KEY


def test_receipts_name_agents_by_exact_keys() -> None:
    receipt = {
        "protocol_version": "pact/1.0",
        "type": "RECEIPT",
        "intent_id": "intent-1",
        "buyer_agent_id": KEY.public_key_b58 + "\n",
        "seller_agent_id": KEY.public_key_b58,
        "agreed_price": 0.00008,
        "fulfilled": True,
        "timestamp_ms": NOW,
    }
    with pytest.raises(MessageValidationError):
        parse_message(receipt)


# --------------------------------------------------------------------------- storable text


@pytest.mark.parametrize(
    "overrides",
    [
        {"scope": "NYC\x00"},
        {"scope": "x\ud800y"},
        {"scope": {"city": "a\udfff"}},
        {"scope": {"a\x00": "key with NUL"}},
        {"scope": {"list": ["ok", ["deep\x00"]]}},
        {"x_note": "\udc00"},  # an unknown field: kept and signed, so checked too
        {"intent": "weather\x00data"},
    ],
)
def test_nul_and_lone_surrogates_are_refused_anywhere_in_a_message(
    overrides: dict[str, Any],
) -> None:
    with pytest.raises(MessageValidationError) as caught:
        parse_message(intent_dict(**overrides))
    assert caught.value.code == "SCHEMA_VALIDATION_FAILED"
    assert "NUL" in caught.value.detail or "surrogate" in caught.value.detail


def test_other_unicode_and_control_characters_are_storable() -> None:
    scope = {"city": "Zürich 🏔️", "note": "tab\there\u2028", "\uff61": "halfwidth key"}
    assert parse_message(intent_dict(scope=scope)).scope == scope
    with pytest.raises(UnsafeTextError, match=r"a\.b\[1\]"):
        check_storable({"a": {"b": ["x", "\x00"]}})


# --------------------------------------------------------------------------- wire amounts


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_price", 1e308),
        ("max_price", 1e20),
        ("max_price", -1e300),
        ("max_price", 2**80),
        ("max_price", 0.0),  # what 1e-400 becomes in JSON
        ("max_price", -0.0),
    ],
)
def test_huge_tiny_and_negative_zero_amounts_are_schema_failures(field: str, value: Any) -> None:
    with pytest.raises(MessageValidationError) as caught:
        parse_message(intent_dict(**{field: value}))
    assert caught.value.code == "SCHEMA_VALIDATION_FAILED"


def test_amounts_just_inside_the_range_are_read() -> None:
    assert parse_message(intent_dict(max_price=9.99e19)).max_price == Decimal("9.99E+19")
    assert parse_message(intent_dict(max_price=5e-324)).max_price == Decimal("5E-324")
    assert decimal_from_wire(-0.0) == 0
    with pytest.raises(WireMoneyError):
        decimal_from_wire(MAX_AMOUNT)


# --------------------------------------------------------------------------- amount text


@pytest.mark.parametrize(
    "text",
    [
        "1_000",
        "١٢٣",  # Arabic-Indic digits
        "۱۲",  # Extended Arabic-Indic
        "\uff11\uff12",  # fullwidth
        "१२",  # Devanagari
        "+1",
        " 1",
        "1 ",
        "1\n",
        "NaN",
        "nan",
        "sNaN",
        "Infinity",
        "-Infinity",
        "inf",
        "1e3",
        "1E-5",
        ".5",
        "5.",
        "",
        "-",
        "0x10",
        "1.2.3",
        "1,5",
        "1" * 65,
        "100000000000000000000",  # 1e20
        "-100000000000000000000.5",
    ],
)
def test_only_plain_ascii_decimal_text_is_an_amount(text: str) -> None:
    with pytest.raises(WireMoneyError):
        parse_decimal_text(text)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0", Decimal(0)),
        ("1.25", Decimal("1.25")),
        ("0.00008", Decimal("0.00008")),
        ("-3", Decimal(-3)),
        ("007.50", Decimal("7.5")),
        (
            "99999999999999999999.999999999999999999",
            Decimal("99999999999999999999.999999999999999999"),
        ),
    ],
)
def test_plain_decimal_text_is_read_exactly(text: str, value: Decimal) -> None:
    assert parse_decimal_text(text) == value


@settings(max_examples=examples(1000), deadline=None)
@given(st.text(max_size=30) | st.from_regex(r"-?[0-9]{1,25}(\.[0-9]{1,20})?", fullmatch=True))
def test_amount_text_is_read_iff_it_is_plain_ascii_decimal(text: str) -> None:
    plain = re.fullmatch(r"-?[0-9]+(\.[0-9]+)?", text, flags=re.ASCII) is not None
    try:
        value = parse_decimal_text(text)
    except WireMoneyError:
        assert not plain or abs(Decimal(text)) >= MAX_AMOUNT
    else:
        assert plain
        assert value == Decimal(text)


# --------------------------------------------------------------------------- formatting


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Decimal("0E-18"), "0"),
        (Decimal("-0"), "0"),
        (Decimal("0.000080000000000000"), "0.00008"),
        (Decimal("8E-5"), "0.00008"),
        (Decimal("1E+3"), "1000"),
        (Decimal("-2.50"), "-2.5"),
        (Decimal("20.00"), "20"),
    ],
)
def test_amounts_are_written_in_plain_shortest_decimal(value: Decimal, text: str) -> None:
    assert format_amount(value) == text


@settings(max_examples=examples(500), deadline=None)
@given(st.decimals(allow_nan=False, allow_infinity=False, places=None))
def test_formatted_amounts_read_back_exactly_without_exponents_or_trailing_zeros(
    value: Decimal,
) -> None:
    text = format_amount(value)
    assert "E" not in text
    assert "e" not in text
    assert Decimal(text) == value
    if "." in text:
        assert not text.endswith("0")
    if abs(value) < MAX_AMOUNT and len(text) <= 64:
        assert parse_decimal_text(text) == value  # what we write, we read back


def test_wire_amounts_are_formatted_by_the_same_helper() -> None:
    assert format_wire_amount(8e-05) == "0.00008"
    assert format_wire_amount("not a number") == "not a number"


@pytest.mark.parametrize("pinned", [KEY.public_key_b58 + "\n", "z" * 1_000_000])
def test_the_client_pins_only_an_exact_provider_key(pinned: str) -> None:
    with pytest.raises(KeyFormatError):
        PactClient("http://127.0.0.1:9", KEY, provider_key=pinned)
    assert PactClient("http://x", KEY, provider_key=KEY.public_key_b58).provider_key == (
        KEY.public_key_b58
    )
