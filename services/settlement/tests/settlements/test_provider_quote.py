"""A bare ACCEPT (reference-SDK buyer, no `quote`) settled with the provider's `provider_quote`."""

from __future__ import annotations

from decimal import Decimal
from typing import Any


def _body(accept: dict[str, Any], quote: dict[str, Any] | None) -> dict[str, Any]:
    return {"accept": accept, "rail": None, "provider_quote": quote}


async def test_bare_accept_with_provider_quote_is_settled(api: Any, pact: Any) -> None:
    await api.deposit(pact.buyer.public_key_b58, "1")
    accept = pact.accept(bare=True, price=Decimal("0.5"))
    intent_id = accept["message"]["intent_id"]
    quote = pact.ask(intent_id=intent_id, price=Decimal("0.5"))
    response = await api.create(accept, body=_body(accept, quote))
    assert response.status_code == 201, response.text
    assert response.json()["seller"] == pact.provider.public_key_b58
    # The provider mints a new ASK on a retry of the same bare ACCEPT: still the same request.
    again = pact.ask(intent_id=intent_id, price=Decimal("0.5"))
    replay = await api.create(accept, body=_body(accept, again))
    assert replay.status_code == 200, replay.text
    assert replay.json()["id"] == response.json()["id"]
    assert await api.balances(pact.buyer.public_key_b58) == (Decimal("0.5"), Decimal("0.5"))


async def test_bare_accept_without_any_quote_is_quote_missing(api: Any, pact: Any) -> None:
    accept = pact.accept(bare=True)
    response = await api.create(accept)
    assert response.status_code == 422
    assert response.json()["code"] == "QUOTE_MISSING"


async def test_provider_quote_must_be_trusted_and_match(api: Any, pact: Any) -> None:
    await api.deposit(pact.buyer.public_key_b58, "1")
    accept = pact.accept(bare=True, price=Decimal("0.5"))
    intent_id = accept["message"]["intent_id"]
    foreign = pact.ask(intent_id=intent_id, price=Decimal("0.5"), provider=pact.other_provider)
    response = await api.create(accept, body=_body(accept, foreign))
    assert response.json()["code"] == "UNTRUSTED_ISSUER"
    dearer = pact.ask(intent_id=intent_id, price=Decimal("0.6"))
    response = await api.create(accept, body=_body(accept, dearer))
    assert response.json()["code"] == "PRICE_MISMATCH"
    other_buyer = pact.ask(
        intent_id=intent_id, price=Decimal("0.5"), buyer_key=pact.other_provider.public_key_b58
    )
    response = await api.create(accept, body=_body(accept, other_buyer))
    assert response.json()["code"] == "FAILED_IDENTITY"
    assert await api.balances(pact.buyer.public_key_b58) == (Decimal(1), Decimal(0))


async def test_provider_quote_cannot_replace_a_carried_quote(api: Any, pact: Any) -> None:
    await api.deposit(pact.buyer.public_key_b58, "1")
    accept = pact.accept(price=Decimal("0.5"))
    cheaper = pact.ask(intent_id=accept["message"]["intent_id"], price=Decimal("0.1"))
    response = await api.create(accept, body=_body(accept, cheaper))
    assert response.status_code == 422
    assert response.json()["code"] == "SCHEMA_VALIDATION_FAILED"
