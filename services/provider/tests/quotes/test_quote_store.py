"""Bare ACCEPTs (no ``quote``, as reference-SDK buyers send) against the shared quote store on
the machine's real Redis: honoured exactly when they match a stored, unexpired quote (price,
buyer, mode), on any replica; nothing changes without a store."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from fixtures.provider import (
    BUYER,
    NOW,
    OTHER_BUYER,
    FakeClock,
    FakeSettlement,
    accept_message,
    bid_message,
    intent_message,
    running_provider,
    settings,
    signed,
)
from pact_schema import Keypair, sign_message
from redis import asyncio as aioredis


def _store_settings(store: tuple[str, str], **overrides: Any) -> Any:
    url, prefix = store
    return settings(quote_store_url=url, quote_store_prefix=prefix, **overrides)


def _bare(price: float, now: int = NOW + 100, **overrides: Any) -> dict[str, Any]:
    return accept_message(None, now=now, agreed_price=price, **overrides)


async def test_a_bare_accept_at_the_quoted_price_settles_on_another_replica(
    redis_store_url: tuple[str, str],
) -> None:
    clock, settlement = FakeClock(), FakeSettlement()
    config = _store_settings(redis_store_url)
    async with (
        running_provider(config, clock=clock, settlement=settlement) as quoting,
        running_provider(config, clock=clock, settlement=settlement) as settling,
    ):
        ask = await quoting.send(intent_message())
        clock.advance(100)
        ack = await settling.send(_bare(ask["price"]))
    assert ack["type"] == "ACCEPT", ack
    assert ack["settlement"]["state"] == "locked"
    forwarded = settlement.requests[0].body
    assert "quote" not in forwarded["accept"]["message"]  # the buyer's ACCEPT, untouched
    assert forwarded["provider_quote"]["message"]["price"] == ask["price"]
    assert forwarded["provider_quote"]["message"]["buyer_public_key_b58"] == BUYER.public_key_b58


async def test_the_latest_round_and_an_earlier_unexpired_one_are_both_honoured(
    redis_store_url: tuple[str, str],
) -> None:
    clock = FakeClock()
    async with running_provider(_store_settings(redis_store_url), clock=clock) as provider:
        first = await provider.send(intent_message())
        carried = (await provider.post(signed(intent_message(intent_id="intent-2")))).json()
        countered = await provider.send(bid_message(carried, 0.00007, intent_id="intent-2"))
        assert countered["round"] == 2
        clock.advance(100)
        on_round_two = await provider.send(_bare(countered["price"], intent_id="intent-2"))
        on_first = await provider.send(_bare(first["price"]))
    assert on_round_two["type"] == on_first["type"] == "ACCEPT"


@pytest.mark.parametrize(
    ("tamper", "code"),
    [
        ({"agreed_price": 0.00001}, "PRICE_MISMATCH"),
        (
            {"settlement_mode": "streaming", "proof_type": "streaming"},
            "SETTLEMENT_MODE_NOT_ALLOWED",
        ),
        ({"intent_id": "intent-never-quoted"}, "QUOTE_MISSING"),
    ],
)
async def test_a_bare_accept_that_matches_no_stored_quote_is_refused(
    redis_store_url: tuple[str, str], tamper: dict[str, Any], code: str
) -> None:
    clock, settlement = FakeClock(), FakeSettlement()
    async with running_provider(
        _store_settings(redis_store_url), clock=clock, settlement=settlement
    ) as provider:
        ask = await provider.send(intent_message())
        clock.advance(100)
        reply = await provider.send({**_bare(ask["price"]), **tamper})
    assert reply["type"] == "REJECT"
    assert reply["code"] == code
    assert settlement.requests == []  # nothing forwarded, nothing locked


async def test_another_buyers_quote_is_not_this_buyers(redis_store_url: tuple[str, str]) -> None:
    clock, settlement = FakeClock(), FakeSettlement()
    async with running_provider(
        _store_settings(redis_store_url), clock=clock, settlement=settlement
    ) as provider:
        ask = await provider.send(intent_message())  # BUYER's quote
        clock.advance(100)
        reply = await provider.send(_bare(ask["price"]), key=OTHER_BUYER)
    assert reply["code"] == "QUOTE_MISSING"
    assert settlement.requests == []


async def test_an_expired_stored_quote_is_not_honoured(redis_store_url: tuple[str, str]) -> None:
    clock, settlement = FakeClock(), FakeSettlement()
    config = _store_settings(redis_store_url)
    async with running_provider(config, clock=clock, settlement=settlement) as provider:
        ask = await provider.send(intent_message())
        clock.advance(config.quote_valid_for_ms + config.quote_grace_ms + 1)
        reply = await provider.send(_bare(ask["price"], now=clock()))
    assert reply["code"] == "QUOTE_EXPIRED"
    assert settlement.requests == []


async def test_every_ask_is_stored_with_its_validity_as_time_to_live(
    redis_store_url: tuple[str, str],
) -> None:
    url, prefix = redis_store_url
    config = _store_settings(redis_store_url)
    async with running_provider(config) as provider:
        ask = await provider.send(intent_message())
        quote = (
            await provider.http.post(
                "/quote",
                json={
                    "intent_id": "intent-open",
                    "intent_type": "weather.data",
                    "max_price": 0.0002,
                    "constraints": {"latency_ms": 100, "freshness_sec": 30},
                },
            )
        ).json()["envelope"]
    client = aioredis.Redis.from_url(url)
    try:
        stored = await client.get(f"{prefix}{BUYER.public_key_b58}:intent-1:1")
        ttl = await client.pttl(f"{prefix}{BUYER.public_key_b58}:intent-1:1")
        open_stored = await client.get(f"{prefix}*:intent-open:1")
    finally:
        await client.aclose()
    assert stored is not None
    assert orjson.loads(stored)["message"] == ask
    assert 0 < ttl <= config.quote_valid_for_ms + config.quote_grace_ms
    assert open_stored is not None
    assert orjson.loads(open_stored) == quote


async def test_an_open_quote_is_taken_by_a_bare_accept_from_any_buyer(
    redis_store_url: tuple[str, str],
) -> None:
    clock, settlement = FakeClock(), FakeSettlement()
    async with running_provider(
        _store_settings(redis_store_url), clock=clock, settlement=settlement
    ) as provider:
        quote = (
            await provider.http.post(
                "/quote",
                json={
                    "intent_id": "intent-1",
                    "intent_type": "weather.data",
                    "max_price": 0.0002,
                    "constraints": {"latency_ms": 100, "freshness_sec": 30},
                },
            )
        ).json()["envelope"]
        clock.advance(100)
        price = quote["message"]["price"]
        first = await provider.send(_bare(price))
        second = await provider.send(_bare(price), key=OTHER_BUYER)
    assert first["type"] == second["type"] == "ACCEPT"
    assert [r.body["provider_quote"] for r in settlement.requests] == [quote, quote]


async def test_a_forged_quote_in_the_store_is_refused(redis_store_url: tuple[str, str]) -> None:
    """The store is not trusted: what it returns is verified like a carried quote."""
    url, prefix = redis_store_url
    clock, settlement = FakeClock(), FakeSettlement()
    async with running_provider(
        _store_settings(redis_store_url), clock=clock, settlement=settlement
    ) as provider:
        ask = await provider.send(intent_message())
        forged = sign_message({**ask, "price": 0.00000001}, Keypair.generate(), signed_at_ms=NOW)
        client = aioredis.Redis.from_url(url)
        try:
            await client.set(f"{prefix}{BUYER.public_key_b58}:intent-1:1", orjson.dumps(forged))
            await client.set(f"{prefix}{BUYER.public_key_b58}:intent-1:2", b"not json")
        finally:
            await client.aclose()
        clock.advance(100)
        reply = await provider.send(_bare(0.00000001))
    assert reply["code"] == "UNTRUSTED_ISSUER"
    assert settlement.requests == []


async def test_without_a_store_a_bare_accept_is_refused_as_before() -> None:
    settlement = FakeSettlement()
    async with running_provider(settlement=settlement) as provider:
        ask = await provider.send(intent_message())
        reply = await provider.send(_bare(ask["price"]))
    assert reply["code"] == "QUOTE_MISSING"
    assert "quote" in reply["reason"]
    assert settlement.requests == []


async def test_lenient_mode_still_applies_when_the_store_has_no_match(
    redis_store_url: tuple[str, str],
) -> None:
    settlement = FakeSettlement()
    async with running_provider(
        _store_settings(redis_store_url, lenient_accept=True), settlement=settlement
    ) as provider:
        reply = await provider.send(_bare(0.01, intent_id="intent-unquoted"))
    assert reply["type"] == "ACCEPT"
    assert settlement.requests[0].body["provider_quote"]["message"]["intent"] == "unspecified"


async def test_a_store_that_does_not_answer_is_a_503_never_an_unstored_quote() -> None:
    config = settings(quote_store_url="redis://127.0.0.1:1/0", quote_store_timeout_s=0.2)
    async with running_provider(config) as provider:
        response = await provider.post(signed(intent_message()))
        ready = await provider.http.get("/readyz", params={"settlement": "optional"})
    assert response.status_code == 503
    assert response.json()["code"] == "QUOTE_STORE_UNAVAILABLE"
    assert response.headers["retry-after"] == "1"
    assert ready.status_code == 503
    assert ready.json()["checks"]["quote_store"] == "unreachable"


async def test_readiness_reports_a_working_store(redis_store_url: tuple[str, str]) -> None:
    async with running_provider(_store_settings(redis_store_url)) as provider:
        ready = await provider.http.get("/readyz", params={"settlement": "optional"})
    assert ready.status_code == 200
    assert ready.json()["checks"]["quote_store"] == "ok"
