from __future__ import annotations

from typing import Any

import pytest
from fixtures.schema import NOW, accept_envelope, ask_envelope
from pact_schema.codes import FailureCode
from pact_schema.envelope import sign_message, verify_envelope
from pact_schema.keys import Keypair
from pact_schema.messages import Accept
from pact_schema.quote import QuoteError, check_accept, verify_carried_quote

PROVIDER = Keypair(bytes([7] * 32))
BUYER = Keypair(bytes([9] * 32))


def _verify(accept: dict[str, Any], now: int = NOW + 1_000, **kw: Any) -> Any:
    carrier = verify_envelope(accept)
    terms = verify_carried_quote(
        carrier, trusted_provider_keys={PROVIDER.public_key_b58}, now_ms=now, **kw
    )
    parsed = carrier.parse()
    assert isinstance(parsed, Accept)
    check_accept(parsed, terms)
    return terms


def _code(accept: dict[str, Any], **kw: Any) -> FailureCode:
    with pytest.raises(QuoteError) as caught:
        _verify(accept, **kw)
    return caught.value.code


def test_a_faithful_accept_yields_the_bound_terms() -> None:
    terms = _verify(accept_envelope(BUYER, ask_envelope(PROVIDER, BUYER)))
    assert terms.buyer_key == BUYER.public_key_b58
    assert terms.provider_key == PROVIDER.public_key_b58
    assert str(terms.price) == "0.00008"
    assert terms.round == 1


def test_bare_accept_is_missing_its_quote() -> None:
    assert _code(accept_envelope(BUYER, None)) == FailureCode.QUOTE_MISSING


def test_quote_from_an_untrusted_provider_is_refused() -> None:
    stranger = Keypair.generate()
    assert _code(accept_envelope(BUYER, ask_envelope(stranger, BUYER))) == (
        FailureCode.UNTRUSTED_ISSUER
    )


def test_quote_made_for_another_buyer_is_refused() -> None:
    other = Keypair.generate()
    accept = accept_envelope(BUYER, ask_envelope(PROVIDER, other))
    assert _code(accept) == FailureCode.FAILED_IDENTITY


def test_lowered_price_is_a_price_mismatch() -> None:
    accept = accept_envelope(BUYER, ask_envelope(PROVIDER, BUYER), agreed_price=0.00001)
    assert _code(accept) == FailureCode.PRICE_MISMATCH


def test_altered_quote_no_longer_verifies() -> None:
    quote = ask_envelope(PROVIDER, BUYER)
    quote["message"]["price"] = 0.00001
    accept = accept_envelope(BUYER, quote, agreed_price=0.00001)
    assert _code(accept) == FailureCode.QUOTE_INVALID


def test_quote_for_another_intent_is_refused() -> None:
    accept = accept_envelope(BUYER, ask_envelope(PROVIDER, BUYER), intent_id="intent-2")
    assert _code(accept) == FailureCode.QUOTE_INVALID


def test_expired_quote_is_refused_even_if_the_accept_is_backdated() -> None:
    quote = ask_envelope(PROVIDER, BUYER, valid_for_ms=20_000)
    backdated = accept_envelope(BUYER, quote, sent_at_ms=NOW + 1)
    assert _code(backdated, now=NOW + 20_001) == FailureCode.QUOTE_EXPIRED
    assert _verify(backdated, now=NOW + 20_001, grace_ms=5).round == 1


def test_a_quote_that_is_not_an_ask_is_refused() -> None:
    reject = sign_message(
        {
            "protocol_version": "pact/1.0",
            "type": "REJECT",
            "intent_id": "intent-1",
            "reason": "x",
            "sent_at_ms": NOW,
            "expires_at_ms": NOW + 1,
        },
        PROVIDER,
    )
    assert _code(accept_envelope(BUYER, reject, agreed_price=0.00008)) == (
        FailureCode.QUOTE_INVALID
    )


def test_quote_without_binding_fields_is_refused() -> None:
    quote = ask_envelope(PROVIDER, BUYER)
    message = dict(quote["message"])
    del message["buyer_public_key_b58"]
    assert _code(accept_envelope(BUYER, sign_message(message, PROVIDER))) == (
        FailureCode.QUOTE_INVALID
    )


def test_the_intent_scope_travels_inside_the_signed_quote() -> None:
    scope = {"city": "Zürich", "fields": ["temp_c"]}
    quote = ask_envelope(PROVIDER, BUYER, scope=scope)
    assert _verify(accept_envelope(BUYER, quote)).scope == scope


def test_a_quote_whose_scope_is_not_text_or_object_is_refused() -> None:
    quote = ask_envelope(PROVIDER, BUYER, scope=[1, 2])
    assert _code(accept_envelope(BUYER, quote)) == FailureCode.QUOTE_INVALID
