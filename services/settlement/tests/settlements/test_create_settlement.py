"""POST /v1/settlements: verify, lock, replay, refuse — on SQLite and Postgres."""

from __future__ import annotations

import asyncio
import copy
from decimal import Decimal
from typing import Any

import pytest
from pact_schema import Keypair, sign_message


async def _fund(api: Any, pact: Any, buyer: str = "1", seller: str | None = None) -> None:
    await api.deposit(pact.buyer.public_key_b58, buyer)
    if seller is not None:
        await api.deposit(pact.provider.public_key_b58, seller)


async def test_accept_locks_buyer_funds_and_answers_201(api: Any, pact: Any) -> None:
    await _fund(api, pact, "1.00")
    accept = pact.accept(price=Decimal("0.00008"), bond=Decimal("0.00016"))
    response = await api.create(accept)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["id"].startswith("st_")
    assert body["intent_id"] == accept["message"]["intent_id"]
    assert body["state"] == "locked"
    assert body["rail"] == "ledger"
    assert body["amount"] == "0.00008"
    assert body["bond"] == "0.00016"
    assert body["bond_locked"] == "0"
    assert body["buyer"] == pact.buyer.public_key_b58
    assert body["seller"] == pact.provider.public_key_b58
    assert body["settlement_mode"] == "hash_reveal"
    assert body["challenge_window_ms"] == 5000
    assert body["delivery_deadline_ms"] == accept["message"]["delivery_deadline_ms"]
    assert [e["event"] for e in body["events"]] == ["settlement.created", "settlement.locked"]
    assert [e["to_state"] for e in body["events"]] == ["pending", "locked"]
    assert await api.balances(pact.buyer.public_key_b58) == (Decimal("0.99992"), Decimal("0.00008"))


async def test_second_identical_accept_returns_same_settlement(api: Any, pact: Any) -> None:
    await _fund(api, pact)
    accept = pact.accept()
    first = await api.create(accept)
    second = await api.create(accept)
    assert first.status_code == 201
    assert second.status_code == 200
    assert second.json()["id"] == first.json()["id"]
    assert await api.balances(pact.buyer.public_key_b58) == (Decimal("0.99992"), Decimal("0.00008"))


async def test_identical_replay_with_another_key_returns_same_settlement(
    api: Any, pact: Any
) -> None:
    await _fund(api, pact)
    accept = pact.accept()
    first = await api.create(accept, key="k-1")
    second = await api.create(accept, key="k-2")
    assert (first.status_code, second.status_code) == (201, 200)
    assert second.json()["id"] == first.json()["id"]


async def test_replay_after_quote_expired_returns_settlement(
    api: Any, pact: Any, clock: Any
) -> None:
    await _fund(api, pact)
    accept = pact.accept(valid_for_ms=20_000)
    assert (await api.create(accept)).status_code == 201
    clock.offset_ms = 10 * 60_000  # ten minutes later: the quote and the ACCEPT have expired
    replay = await api.create(accept)
    assert replay.status_code == 200, replay.text
    assert replay.json()["state"] == "locked"
    fresh = pact.accept(valid_for_ms=20_000)
    refused = await api.create(fresh)
    assert refused.status_code == 422
    assert refused.json()["code"] == "QUOTE_EXPIRED"


async def test_different_request_for_existing_intent_is_409(api: Any, pact: Any) -> None:
    await _fund(api, pact)
    accept = pact.accept()
    assert (await api.create(accept)).status_code == 201
    # Same ACCEPT message, signed again later: a different request for the same intent.
    resigned = sign_message(accept["message"], pact.buyer, signed_at_ms=accept["signed_at_ms"] + 1)
    response = await api.create(resigned, key="another-key")
    assert response.status_code == 409
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == "DUPLICATE_INTENT"
    # A different ACCEPT (new deadline) for the same intent and quote.
    other = pact.accept(intent_id=accept["message"]["intent_id"], ask=accept["message"]["quote"])
    response = await api.create(other)
    assert response.status_code == 409
    assert await api.balances(pact.buyer.public_key_b58) == (Decimal("0.99992"), Decimal("0.00008"))


async def test_same_idempotency_key_with_different_body_is_409(api: Any, pact: Any) -> None:
    await _fund(api, pact)
    first = pact.accept()
    assert (await api.create(first, key="shared")).status_code == 201
    second = pact.accept()
    response = await api.create(second, key="shared")
    assert response.status_code == 409
    assert response.json()["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert await api.balances(pact.buyer.public_key_b58) == (Decimal("0.99992"), Decimal("0.00008"))


async def test_missing_idempotency_key_is_400(api: Any, pact: Any, client: Any) -> None:
    response = await client.post(
        "/v1/settlements", json={"accept": pact.accept()}, headers=api.provider_auth
    )
    assert response.status_code == 400
    assert response.json()["code"] == "BAD_REQUEST"


async def test_insufficient_funds_is_402_failed_and_moves_nothing(api: Any, pact: Any) -> None:
    await _fund(api, pact, "0.00005")
    accept = pact.accept(price=Decimal("0.00008"))
    response = await api.create(accept)
    assert response.status_code == 402, response.text
    problem = response.json()
    assert problem["code"] == "INSUFFICIENT_ESCROW"
    assert problem["status"] == 402
    assert problem["state"] == "failed"
    assert await api.balances(pact.buyer.public_key_b58) == (Decimal("0.00005"), Decimal(0))
    record = await api.settlement(accept["message"]["intent_id"])
    assert record["state"] == "failed"
    assert record["failure_code"] == "INSUFFICIENT_ESCROW"
    assert record["closed_at"] is not None
    assert [e["to_state"] for e in record["events"]] == ["pending", "failed"]
    # The same request replays the same refusal, even after a deposit.
    await api.deposit(pact.buyer.public_key_b58, "1")
    again = await api.create(accept)
    assert again.status_code == 402
    assert again.json()["settlement_id"] == problem["settlement_id"]
    assert await api.balances(pact.buyer.public_key_b58) == (Decimal("1.00005"), Decimal(0))


async def test_buyer_without_account_gets_402(api: Any, pact: Any) -> None:
    response = await api.create(pact.accept())
    assert response.status_code == 402
    assert response.json()["code"] == "INSUFFICIENT_ESCROW"


@pytest.mark.parametrize("settings_overrides", [{"require_seller_bond": True}])
async def test_required_seller_bond_is_locked_too(api: Any, pact: Any) -> None:
    await _fund(api, pact, "1", seller="1")
    response = await api.create(pact.accept(price=Decimal("0.1"), bond=Decimal("0.2")))
    assert response.status_code == 201, response.text
    assert response.json()["bond_locked"] == "0.2"
    assert await api.balances(pact.provider.public_key_b58) == (Decimal("0.8"), Decimal("0.2"))
    assert await api.balances(pact.buyer.public_key_b58) == (Decimal("0.9"), Decimal("0.1"))


@pytest.mark.parametrize("settings_overrides", [{"require_seller_bond": True}])
async def test_missing_seller_bond_refuses_and_locks_nothing(api: Any, pact: Any) -> None:
    await _fund(api, pact, "1", seller="0.1")
    response = await api.create(pact.accept(price=Decimal("0.1"), bond=Decimal("0.2")))
    assert response.status_code == 402
    assert response.json()["code"] == "BOND_INSUFFICIENT"
    assert await api.balances(pact.buyer.public_key_b58) == (Decimal("1"), Decimal(0))
    assert await api.balances(pact.provider.public_key_b58) == (Decimal("0.1"), Decimal(0))


def _tamper_price(accept: dict[str, Any]) -> dict[str, Any]:
    bad = copy.deepcopy(accept)
    bad["message"]["agreed_price"] = 0.00001
    return bad


def _unsigned(accept: dict[str, Any]) -> dict[str, Any]:
    bad = copy.deepcopy(accept)
    del bad["signature_b58"]
    return bad


def _wrong_signature(accept: dict[str, Any]) -> dict[str, Any]:
    bad = copy.deepcopy(accept)
    other = sign_message(accept["message"], Keypair(bytes(32 * [7])))
    bad["signature_b58"] = other["signature_b58"]
    return bad


def _tampered_quote(accept: dict[str, Any]) -> dict[str, Any]:
    # The buyer edits the provider's ASK (price) and re-signs its own ACCEPT.
    message = copy.deepcopy(accept["message"])
    message["quote"]["message"]["price"] = 0.00001
    message["agreed_price"] = 0.00001
    return sign_message(message, _BUYER_HOLDER[0])


_BUYER_HOLDER: list[Keypair] = []

REFUSALS = [
    pytest.param(_tamper_price, 422, "FAILED_IDENTITY", id="tampered-accept"),
    pytest.param(_unsigned, 422, "SCHEMA_VALIDATION_FAILED", id="unsigned"),
    pytest.param(_wrong_signature, 422, "FAILED_IDENTITY", id="wrong-signature"),
    pytest.param(_tampered_quote, 422, "QUOTE_INVALID", id="tampered-quote"),
]


@pytest.mark.parametrize(("mutate", "status", "code"), REFUSALS)
async def test_bad_accepts_are_refused_with_no_money_moved(
    api: Any, pact: Any, mutate: Any, status: int, code: str
) -> None:
    _BUYER_HOLDER[:] = [pact.buyer]
    await _fund(api, pact)
    bad = mutate(pact.accept())
    response = await api.create(bad)
    assert response.status_code == status, response.text
    assert response.json()["code"] == code
    assert response.headers["content-type"].startswith("application/problem+json")
    assert await api.balances(pact.buyer.public_key_b58) == (Decimal(1), Decimal(0))
    listing = await api.client.get("/v1/settlements", headers=api.provider_auth)
    assert listing.json()["items"] == []


async def test_foreign_provider_quote_is_untrusted(api: Any, pact: Any) -> None:
    await _fund(api, pact)
    response = await api.create(pact.accept(provider=pact.other_provider))
    assert response.status_code == 422
    assert response.json()["code"] == "UNTRUSTED_ISSUER"
    assert await api.balances(pact.buyer.public_key_b58) == (Decimal(1), Decimal(0))


async def test_lowered_price_is_price_mismatch(api: Any, pact: Any) -> None:
    await _fund(api, pact)
    accept = pact.accept(price=Decimal("0.00008"), agreed_price=Decimal("0.00001"))
    response = await api.create(accept)
    assert response.status_code == 422
    assert response.json()["code"] == "PRICE_MISMATCH"
    assert await api.balances(pact.buyer.public_key_b58) == (Decimal(1), Decimal(0))


async def test_quote_for_another_buyer_is_failed_identity(api: Any, pact: Any) -> None:
    await _fund(api, pact)
    thief = Keypair(bytes(32 * [9]))
    accept = pact.accept()
    stolen = sign_message(accept["message"], thief)
    response = await api.create(stolen)
    assert response.status_code == 422
    assert response.json()["code"] == "FAILED_IDENTITY"


async def test_expired_quote_is_refused(api: Any, pact: Any, clock: Any) -> None:
    await _fund(api, pact)
    accept = pact.accept(valid_for_ms=20_000)
    clock.offset_ms = 26_000  # beyond the quote's window plus the 5 s skew allowance
    response = await api.create(accept)
    assert response.status_code == 422
    assert response.json()["code"] == "QUOTE_EXPIRED"


async def test_quote_within_clock_skew_grace_is_accepted(api: Any, pact: Any, clock: Any) -> None:
    await _fund(api, pact)
    accept = pact.accept(valid_for_ms=20_000, delivery_in_ms=60_000)
    clock.offset_ms = 23_000  # 3 s past expiry, inside the 5 s grace
    response = await api.create(accept)
    assert response.status_code == 201, response.text


async def test_deadline_in_the_past_is_refused(api: Any, pact: Any) -> None:
    await _fund(api, pact)
    response = await api.create(pact.accept(delivery_in_ms=-1))
    assert response.status_code == 422
    assert response.json()["code"] == "SCHEMA_VALIDATION_FAILED"


async def test_too_precise_price_is_refused(api: Any, pact: Any) -> None:
    await _fund(api, pact)
    response = await api.create(pact.accept(price=Decimal("1e-20"), bond=Decimal(0)))
    assert response.status_code == 422
    assert response.json()["code"] == "AMOUNT_NOT_IN_RAIL_UNITS"


async def test_ask_instead_of_accept_is_refused(api: Any, pact: Any) -> None:
    ask = pact.ask(intent_id="intent-x")
    response = await api.create(ask)
    assert response.status_code == 422
    assert response.json()["code"] == "UNEXPECTED_MESSAGE"


async def test_unknown_rail_is_refused(api: Any, pact: Any) -> None:
    await _fund(api, pact)
    response = await api.create(pact.accept(), rail="carrier-pigeon")
    assert response.status_code == 422
    assert response.json()["code"] == "RAIL_NOT_AVAILABLE"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"accept": "not an object"},
        {"accept": {}, "unexpected": 1},
        {"accept": {"message": {"intent_id": 5}}},
        {"accept": {"envelope_version": "pact-envelope/1.0", "message": []}},
    ],
)
async def test_malformed_bodies_are_4xx_never_500(api: Any, body: dict[str, Any]) -> None:
    response = await api.create({}, key="k", body=body)
    assert 400 <= response.status_code < 500, response.text
    assert response.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize(
    "raw",
    [b"{not json", b'{"accept": {"message": {"x": NaN}}}', b'{"accept": {"x": Infinity}}', b"[]"],
)
async def test_non_json_bodies_are_422(api: Any, client: Any, raw: bytes) -> None:
    response = await client.post(
        "/v1/settlements",
        content=raw,
        headers={**api.provider_auth, "Idempotency-Key": "k", "content-type": "application/json"},
    )
    assert response.status_code == 422, response.text


async def test_twenty_identical_concurrent_accepts_lock_exactly_once(
    api: Any, pact: Any, backend: str
) -> None:
    await _fund(api, pact)
    accept = pact.accept()
    responses = await asyncio.gather(*(api.create(accept) for _ in range(20)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 19 + [201], [r.text for r in responses if r.status_code >= 300]
    assert len({r.json()["id"] for r in responses}) == 1
    assert await api.balances(pact.buyer.public_key_b58) == (Decimal("0.99992"), Decimal("0.00008"))


async def test_concurrent_different_accepts_for_one_intent_lock_once(api: Any, pact: Any) -> None:
    await _fund(api, pact)
    first = pact.accept()
    variants = [first] + [
        sign_message(first["message"], pact.buyer, signed_at_ms=first["signed_at_ms"] + i)
        for i in range(1, 8)
    ]
    responses = await asyncio.gather(*(api.create(v) for v in variants))
    statuses = [r.status_code for r in responses]
    assert statuses.count(201) == 1
    assert statuses.count(409) == 7
    assert await api.balances(pact.buyer.public_key_b58) == (Decimal("0.99992"), Decimal("0.00008"))
