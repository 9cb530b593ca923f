"""Streaming on the Stripe rail: the budget authorised once, the close a partial capture
(``amount_to_capture``) of exactly the highest voucher, the rest released to the card."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
import stripe
from fixtures.rails import STRIPE_KEY, CardFactory, put_profile
from pact_schema.streaming import amount_for_ticks, sign_voucher

pytestmark = [
    pytest.mark.stripe,
    pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning"),
]

BUDGET = Decimal("1.25")
PLANNED = 125  # one cent a tick
AUTH = {"Authorization": "Bearer test-provider-token-0123456789abcdef"}


@pytest.fixture
def settings_overrides(localstripe_url: str) -> dict[str, Any]:
    return {
        "enabled_rails": ["ledger", "stripe"],
        "stripe_api_key": STRIPE_KEY,
        "stripe_api_base": localstripe_url,
        "stripe_webhook_secret": "whsec_test_stripe_streaming",
        "workers_enabled": False,
    }


async def _stream(api: Any, pact: Any, saved_card: CardFactory) -> dict[str, Any]:
    card = await saved_card()
    await put_profile(
        api,
        pact.buyer.public_key_b58,
        "stripe",
        {"stripe_customer": card.customer, "stripe_payment_method": card.payment_method},
    )
    accept = pact.accept(price=BUDGET, bond=Decimal(0), settlement_mode="streaming")
    response = await api.create(accept, rail="stripe")
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    assert body["state"] == "streaming"
    return body


def _voucher(pact: Any, intent_id: str, ticks: int, amount: Decimal | None = None) -> Any:
    return sign_voucher(
        pact.buyer,
        intent_id=intent_id,
        seller=pact.provider.public_key_b58,
        ticks=ticks,
        paid_amount=amount if amount is not None else amount_for_ticks(BUDGET, PLANNED, ticks),
        seq=ticks,
        sent_at_ms=ticks,
    )


async def test_a_stream_on_stripe_captures_only_the_highest_voucher(
    api: Any, pact: Any, saved_card: CardFactory, stripe_raw: stripe.StripeClient
) -> None:
    body = await _stream(api, pact, saved_card)
    intent_id = body["intent_id"]
    [locked] = [e for e in body["events"] if e["event"] == "settlement.stream_opened"]
    pi_id = locked["data"]["rail_reference"]
    checkpoint = await api.client.post(
        f"/v1/settlements/{intent_id}/checkpoints",
        json={"voucher": _voucher(pact, intent_id, 40)},
        headers=AUTH,
    )
    assert checkpoint.status_code == 200, checkpoint.text
    closed = await api.client.post(
        f"/v1/settlements/{intent_id}/close",
        json={
            "voucher": _voucher(pact, intent_id, 50),
            "by": "buyer",
            "code": "BUYER_STOPPED",
            "reason": "enough",
            "chunks": 50,
        },
        headers={**AUTH, "Idempotency-Key": "close-1"},
    )
    assert closed.status_code == 200, closed.text
    assert closed.json()["state"] == "released"
    pi = await stripe_raw.v1.payment_intents.retrieve_async(pi_id)
    assert pi.status == "succeeded"
    refunds = await stripe_raw.v1.refunds.list_async({"payment_intent": pi_id})
    # 50 cents captured; the other 75 go back to the card (localstripe models the uncaptured
    # rest as a refund of the charge).
    assert pi.amount == 125
    assert sum(r.amount for r in refunds.data) == 75


async def test_a_voucher_that_is_not_whole_cents_is_never_captured_rounded(
    api: Any, pact: Any, saved_card: CardFactory, stripe_raw: stripe.StripeClient
) -> None:
    body = await _stream(api, pact, saved_card)
    intent_id = body["intent_id"]
    closed = await api.client.post(
        f"/v1/settlements/{intent_id}/close",
        json={
            "voucher": _voucher(pact, intent_id, 1, Decimal("0.015")),
            "by": "buyer",
            "code": "BUYER_STOPPED",
            "reason": "half a cent",
            "chunks": 1,
        },
        headers={**AUTH, "Idempotency-Key": "close-1"},
    )
    assert closed.status_code == 200, closed.text
    assert closed.json()["state"] == "streaming"  # the capture was refused, nothing moved
    [locked] = [e for e in body["events"] if e["event"] == "settlement.stream_opened"]
    pi = await stripe_raw.v1.payment_intents.retrieve_async(locked["data"]["rail_reference"])
    assert pi.status == "requires_capture"
