"""Negotiation bounds of the reference policy: the whole negotiation's duration
(MAX_NEGOTIATION_MS, carried in the signed quote) and a BID's firm-quote range."""

from __future__ import annotations

from typing import Any

import pytest
from fixtures.provider import (
    NOW,
    FakeClock,
    FakeSettlement,
    accept_message,
    bid_message,
    intent_message,
    running_provider,
    settings,
    signed,
)


async def _opening(provider: Any) -> dict[str, Any]:
    envelope = (await provider.post(signed(intent_message()))).json()
    assert envelope["message"]["negotiation_started_ms"] == NOW
    return dict(envelope)


@pytest.mark.parametrize(
    ("valid_for", "ok"), [(19_999, False), (20_000, True), (200_000, True), (200_001, False)]
)
async def test_a_bids_valid_for_must_be_a_firm_quote(valid_for: int, ok: bool) -> None:
    async with running_provider() as provider:
        opening = await _opening(provider)
        bid = bid_message(opening, 0.00007, valid_for_ms=valid_for, expires_at_ms=NOW + valid_for)
        reply = await provider.send(bid)
    if ok:
        assert reply["type"] == "ASK"
    else:
        assert reply["code"] == "FIRM_QUOTE_OUT_OF_RANGE"


async def test_a_bid_past_the_negotiation_bound_is_refused_and_the_round_is_carried() -> None:
    clock = FakeClock()
    config = settings(max_negotiation_ms=30_000, quote_valid_for_ms=200_000)
    async with running_provider(config, clock=clock) as provider:
        opening = await _opening(provider)
        clock.advance(15_000)
        second = (
            await provider.post(signed(bid_message(opening, 0.00007, now=clock()), at=clock()))
        ).json()
        assert second["message"]["round"] == 2
        assert second["message"]["negotiation_started_ms"] == NOW  # carried, not restarted
        clock.advance(15_001)
        late = await provider.send(bid_message(second, 0.00007, now=clock()))
    assert late["code"] == "DURATION_EXCEEDED"


async def test_an_accept_signed_past_the_bound_is_refused_and_its_resend_too() -> None:
    clock = FakeClock()
    settlement = FakeSettlement()
    config = settings(max_negotiation_ms=30_000, quote_valid_for_ms=200_000)
    async with running_provider(config, clock=clock, settlement=settlement) as provider:
        opening = await _opening(provider)
        clock.advance(30_001)
        accept = signed(accept_message(opening, now=clock()), at=clock())
        first = await provider.post(accept)
        clock.advance(1_000)
        resent = await provider.post(accept)
    for response in (first, resent):
        assert response.json()["message"]["code"] == "DURATION_EXCEEDED"
    assert settlement.requests == []


async def test_an_accept_within_the_bound_settles_even_when_resent_later() -> None:
    clock = FakeClock()
    settlement = FakeSettlement()
    config = settings(max_negotiation_ms=30_000, quote_valid_for_ms=200_000)
    async with running_provider(config, clock=clock, settlement=settlement) as provider:
        opening = await _opening(provider)
        clock.advance(29_000)
        accept = signed(
            accept_message(opening, now=clock(), delivery_deadline_ms=clock() + 120_000), at=clock()
        )
        first = (await provider.post(accept)).json()["message"]
        clock.advance(5_000)  # past the bound, but the ACCEPT was signed within it
        resent = (await provider.post(accept)).json()["message"]
    assert first["type"] == resent["type"] == "ACCEPT"
