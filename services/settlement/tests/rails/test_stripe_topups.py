"""Micropayment aggregation: top a ledger balance up with one Stripe charge, settle on the
ledger rail against it (POST /v1/accounts/{agent_id}/topups, and its webhook safety net)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from decimal import Decimal
from typing import Any

import pytest
import stripe
from fixtures.rails import STRIPE_KEY, CardFactory, put_profile
from pact_settlement.rails.stripe.topups import TOPUP_PURPOSE

pytestmark = [
    pytest.mark.stripe,
    pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning"),
]

SECRET = "whsec_test_topups"


@pytest.fixture
def settings_overrides(localstripe_url: str) -> dict[str, Any]:
    return {
        "enabled_rails": ["ledger", "stripe"],
        "stripe_api_key": STRIPE_KEY,
        "stripe_api_base": localstripe_url,
        "stripe_webhook_secret": SECRET,
        "workers_enabled": False,
    }


async def with_card(api: Any, agent: str, saved_card: CardFactory, number: str = "") -> None:
    card = await (saved_card(number) if number else saved_card())
    await put_profile(
        api,
        agent,
        "stripe",
        {"stripe_customer": card.customer, "stripe_payment_method": card.payment_method},
    )


KEY = f"topup-{uuid.uuid4()}"  # localstripe outlives a test: a fresh key per run


async def top_up(api: Any, agent: str, amount: str, key: str | None = "") -> Any:
    headers = dict(api.admin_auth)
    if key is not None:
        headers["Idempotency-Key"] = key or f"{KEY}-{amount}-{uuid.uuid4()}"
    return await api.client.post(
        f"/v1/accounts/{agent}/topups", json={"amount": amount}, headers=headers
    )


async def test_a_top_up_charges_once_credits_once_and_funds_micropayments(
    api: Any,
    pact: Any,
    saved_card: CardFactory,
    stripe_raw: stripe.StripeClient,
    localstripe_url: str,
) -> None:
    buyer = pact.buyer.public_key_b58
    await with_card(api, buyer, saved_card)
    key = f"{KEY}-{uuid.uuid4()}"
    first = await top_up(api, buyer, "20.00", key)
    assert first.status_code == 201, first.text
    body = first.json()
    assert (body["amount"], body["currency"], body["amount_minor"]) == ("20", "usd", 2000)
    assert body["account"]["available"] == "20"
    pi = await stripe_raw.v1.payment_intents.retrieve_async(body["payment_intent"])
    assert (pi.status, pi.capture_method, pi.amount) == ("succeeded", "automatic", 2000)
    again = await top_up(api, buyer, "20.00", key)
    other = await top_up(api, buyer, "25.00", key)
    assert (other.status_code, other.json()["code"]) == (409, "IDEMPOTENCY_KEY_REUSED")
    assert again.status_code == 200
    assert again.json()["payment_intent"] == body["payment_intent"]
    assert await api.balances(buyer) == (Decimal(20), Decimal(0))
    customer = pi.customer
    page = await stripe_raw.v1.payment_intents.list_async({"limit": 100})
    assert [p.id for p in page.data if p.customer == customer] == [body["payment_intent"]]
    # A micropayment far below Stripe's minimum settles on the ledger against the balance.
    settled = await api.create(pact.accept(price=Decimal("0.00008")), rail="ledger")
    assert settled.status_code == 201, settled.text
    assert await api.balances(buyer) == (Decimal("19.99992"), Decimal("0.00008"))


@pytest.mark.parametrize(
    ("amount", "code"),
    [("0.40", "AMOUNT_BELOW_RAIL_MINIMUM"), ("20.005", "AMOUNT_NOT_IN_RAIL_UNITS")],
)
async def test_top_ups_below_the_minimum_or_in_fractions_of_a_cent_are_refused(
    api: Any, pact: Any, saved_card: CardFactory, amount: str, code: str
) -> None:
    await with_card(api, pact.buyer.public_key_b58, saved_card)
    response = await top_up(api, pact.buyer.public_key_b58, amount)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == code


async def test_top_up_needs_a_card_a_key_and_an_operator(
    api: Any, pact: Any, saved_card: CardFactory
) -> None:
    agent = pact.buyer.public_key_b58
    no_card = await top_up(api, agent, "5")
    assert (no_card.status_code, no_card.json()["code"]) == (422, "MISSING_REQUIRED_CREDENTIALS")
    await with_card(api, agent, saved_card)
    assert (await top_up(api, agent, "5", key=None)).status_code == 400
    as_provider = await api.client.post(
        f"/v1/accounts/{agent}/topups",
        json={"amount": "5"},
        headers={**api.provider_auth, "Idempotency-Key": "k"},
    )
    assert as_provider.status_code == 403


async def test_a_declined_top_up_credits_nothing(
    api: Any, pact: Any, saved_card: CardFactory
) -> None:
    agent = pact.buyer.public_key_b58
    await with_card(api, agent, saved_card, "4000000000000341")
    response = await top_up(api, agent, "5")
    assert response.status_code == 402, response.text
    assert await api.balances(agent) == (Decimal(0), Decimal(0))


async def test_a_charge_whose_request_died_is_credited_by_the_webhook_once(
    api: Any, pact: Any, saved_card: CardFactory, app: Any, stripe_raw: stripe.StripeClient
) -> None:
    agent = pact.buyer.public_key_b58
    card = await saved_card()
    await put_profile(
        api,
        agent,
        "stripe",
        {"stripe_customer": card.customer, "stripe_payment_method": card.payment_method},
    )
    # The charge went through; the process died before the credit.
    charged = await app.state.settlement.rail_clients.stripe().charge(
        Decimal("7.50"),
        card.customer,
        card.payment_method,
        {"pact_purpose": TOPUP_PURPOSE, "agent_id": agent},
        idempotency_key=f"topup-lost-{uuid.uuid4().hex}",
    )
    pi = (await stripe_raw.v1.payment_intents.retrieve_async(charged.payment_intent_id)).to_dict()
    for expected in ("credited", "no_change"):
        payload = json.dumps(
            {
                "id": f"evt_{uuid.uuid4().hex[:16]}",
                "object": "event",
                "type": "payment_intent.succeeded",
                "data": {"object": pi},
            }
        ).encode()
        ts = int(time.time())
        mac = hmac.new(SECRET.encode(), f"{ts}.".encode() + payload, hashlib.sha256).hexdigest()
        response = await api.client.post(
            "/v1/webhooks/stripe",
            content=payload,
            headers={"Stripe-Signature": f"t={ts},v1={mac}", "Content-Type": "application/json"},
        )
        assert response.status_code == 200, response.text
        assert response.json()["outcome"] == expected
    assert await api.balances(agent) == (Decimal("7.5"), Decimal(0))
