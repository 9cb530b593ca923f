"""The Stripe rail through the API and the two-phase executor, on SQLite and Postgres.

Real SDK against localstripe: ACCEPT → settlement → a manual-capture PaymentIntent in
``requires_capture``; release = capture, refund = cancel; crashes between "recorded pending"
and "rail answered" are resolved by the reconciler with exactly one PaymentIntent.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
import stripe
from fixtures.rails import (
    STRIPE_KEY,
    CardFactory,
    SavedCard,
    localstripe_requests,
    put_profile,
)
from pact_settlement.rails.stripe.rail import StripeRail
from pact_settlement.workers.reconciler import Reconciler

from . import lifecycle
from .flow import (
    RELEASE,
    Crash,
    after_grace,
    deliver,
    refund_plan,
    run_step,
    state_of,
)

pytestmark = [
    pytest.mark.stripe,
    pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning"),
]

PRICE = Decimal("1.25")
WEBHOOK_SECRET = "whsec_test_stripe_flow"


@pytest.fixture
def extra_settings() -> dict[str, Any]:
    return {}


@pytest.fixture
def settings_overrides(localstripe_url: str, extra_settings: dict[str, Any]) -> dict[str, Any]:
    return {
        "enabled_rails": ["ledger", "stripe"],
        "stripe_api_key": STRIPE_KEY,
        "stripe_api_base": localstripe_url,
        "stripe_webhook_secret": WEBHOOK_SECRET,
        "workers_enabled": False,
        **extra_settings,
    }


async def buyer_card(api: Any, pact: Any, saved_card: CardFactory, number: str = "") -> SavedCard:
    card = await (saved_card(number) if number else saved_card())
    await put_profile(
        api,
        pact.buyer.public_key_b58,
        "stripe",
        {"stripe_customer": card.customer, "stripe_payment_method": card.payment_method},
    )
    return card


async def locked(api: Any, pact: Any, saved_card: CardFactory) -> dict[str, Any]:
    await buyer_card(api, pact, saved_card)
    response = await api.create(pact.accept(price=PRICE), rail="stripe")
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    assert body["state"] == "locked"
    return body


def payment_intent_of(body: dict[str, Any]) -> str:
    [event] = [e for e in body["events"] if e["event"] == "settlement.locked"]
    return str(event["data"]["rail_reference"])


async def test_accept_on_stripe_holds_the_price_on_the_buyers_card(
    api: Any, pact: Any, saved_card: CardFactory, stripe_raw: stripe.StripeClient
) -> None:
    body = await locked(api, pact, saved_card)
    pi = await stripe_raw.v1.payment_intents.retrieve_async(payment_intent_of(body))
    assert (pi.status, pi.capture_method, pi.amount, pi.currency) == (
        "requires_capture",
        "manual",
        125,
        "usd",
    )
    assert pi.metadata["settlement_id"] == body["id"]
    assert body["rail"] == "stripe"


async def test_an_identical_replay_does_not_charge_twice(
    api: Any, pact: Any, saved_card: CardFactory, stripe_gateway: Any
) -> None:
    await buyer_card(api, pact, saved_card)
    accept = pact.accept(price=PRICE)
    first = await api.create(accept, rail="stripe")
    again = await api.create(accept, rail="stripe")
    assert (first.status_code, again.status_code) == (201, 200)
    assert len(await stripe_gateway.find_by_settlement(first.json()["id"])) == 1


async def test_below_the_stripe_minimum_is_refused_and_nothing_is_recorded_or_sent(
    api: Any, pact: Any, saved_card: CardFactory, localstripe_url: str
) -> None:
    await buyer_card(api, pact, saved_card)
    sent_before = len(await localstripe_requests(localstripe_url))
    accept = pact.accept(price=Decimal("0.40"))
    response = await api.create(accept, rail="stripe")
    assert response.status_code == 422
    assert response.json()["code"] == "AMOUNT_BELOW_RAIL_MINIMUM"
    assert "0.50 USD" in response.json()["detail"]
    assert len(await localstripe_requests(localstripe_url)) == sent_before
    missing = await api.client.get(
        f"/v1/settlements/{accept['message']['intent_id']}", headers=api.provider_auth
    )
    assert missing.status_code == 404


async def test_a_buyer_without_a_saved_card_is_refused(api: Any, pact: Any) -> None:
    response = await api.create(pact.accept(price=PRICE), rail="stripe")
    assert response.status_code == 422
    assert response.json()["code"] == "MISSING_REQUIRED_CREDENTIALS"


@pytest.mark.parametrize("extra_settings", [{"require_seller_bond": True}])
async def test_stripe_settles_without_a_seller_bond_even_when_bonds_are_required(
    api: Any, pact: Any, saved_card: CardFactory
) -> None:
    """A card authorisation holds only the buyer's money: REQUIRE_SELLER_BOND (the default)
    holds the bond on the rails that can, and a stripe settlement carries none."""
    await buyer_card(api, pact, saved_card)
    accept = pact.accept(price=PRICE)
    response = await api.create(accept, rail="stripe")
    assert response.status_code == 201, response.text
    assert response.json()["state"] == "locked"
    assert Decimal(response.json()["bond"]) > 0
    assert Decimal(response.json()["bond_locked"]) == 0


async def test_a_declined_card_ends_the_settlement_failed(
    api: Any, pact: Any, saved_card: CardFactory
) -> None:
    await buyer_card(api, pact, saved_card, "4000000000000341")
    accept = pact.accept(price=PRICE)
    response = await api.create(accept, rail="stripe")
    assert response.status_code == 402, response.text
    assert response.json()["code"] == "FAILED_ESCROW"
    body = await api.settlement(accept["message"]["intent_id"])
    assert body["state"] == "failed"
    replay = await api.create(accept, rail="stripe")
    assert replay.status_code == 402


async def test_release_captures_the_payment_intent(
    api: Any, pact: Any, saved_card: CardFactory, app: Any, stripe_raw: stripe.StripeClient
) -> None:
    body = await locked(api, pact, saved_card)
    maker = app.state.settlement.sessionmaker
    await deliver(maker, body["intent_id"])
    outcome = await run_step(
        maker,
        app.state.settlement.settings,
        body["intent_id"],
        RELEASE,
        clients=app.state.settlement.rail_clients,
    )
    assert outcome.status == "succeeded"
    assert await state_of(maker, body["intent_id"]) == (
        "released",
        ["lock:succeeded", "release:succeeded"],
    )
    pi = await stripe_raw.v1.payment_intents.retrieve_async(payment_intent_of(body))
    assert (pi.status, pi.amount) == ("succeeded", 125)


async def test_refund_cancels_the_authorisation(
    api: Any, pact: Any, saved_card: CardFactory, app: Any, stripe_raw: stripe.StripeClient
) -> None:
    body = await locked(api, pact, saved_card)
    maker = app.state.settlement.sessionmaker
    outcome = await run_step(
        maker,
        app.state.settlement.settings,
        body["intent_id"],
        refund_plan(),
        clients=app.state.settlement.rail_clients,
    )
    assert outcome.status == "succeeded"
    assert (await state_of(maker, body["intent_id"]))[0] == "refunded"
    pi = await stripe_raw.v1.payment_intents.retrieve_async(payment_intent_of(body))
    assert pi.status == "canceled"


@pytest.mark.parametrize("when", ["after", "before"])
async def test_a_crash_around_the_lock_call_is_resolved_by_the_reconciler_with_one_payment(
    api: Any,
    pact: Any,
    saved_card: CardFactory,
    app: Any,
    stripe_gateway: Any,
    stripe_raw: stripe.StripeClient,
    monkeypatch: pytest.MonkeyPatch,
    when: str,
) -> None:
    """The process dies after the pending lock was committed: before the call reached Stripe,
    or after Stripe authorised but before the answer was recorded."""
    await buyer_card(api, pact, saved_card)
    real_lock = StripeRail.lock
    crashes = [when]

    async def dying_lock(self: StripeRail, settlement: Any, *, idempotency_key: str) -> Any:
        if crashes and crashes[0] == "before":
            crashes.clear()
            raise Crash
        result = await real_lock(self, settlement, idempotency_key=idempotency_key)
        if crashes:
            crashes.clear()
            raise Crash
        return result

    monkeypatch.setattr(StripeRail, "lock", dying_lock)
    accept = pact.accept(price=PRICE)
    intent_id = accept["message"]["intent_id"]
    with pytest.raises(Crash):
        await api.create(accept, rail="stripe")
    maker = app.state.settlement.sessionmaker
    assert await state_of(maker, intent_id) == ("pending", ["lock:pending"])
    settlement_id = (await api.settlement(intent_id))["id"]
    expected_before = 1 if when == "after" else 0
    assert len(await stripe_gateway.find_by_settlement(settlement_id)) == expected_before

    reconciler = Reconciler(
        maker,
        settings=app.state.settlement.settings,
        metrics=app.state.settlement.metrics,
        clients=app.state.settlement.rail_clients,
    )
    assert await reconciler.run_once(now=after_grace(app.state.settlement.settings)) == 1
    assert await state_of(maker, intent_id) == ("locked", ["lock:succeeded"])
    [pi] = await stripe_gateway.find_by_settlement(settlement_id)
    assert pi.stripe_status == "requires_capture"
    body = await api.settlement(intent_id)
    assert payment_intent_of(body) == pi.payment_intent_id
    # The provider's retry of the same request now sees the locked settlement.
    replay = await api.create(accept, rail="stripe")
    assert replay.status_code == 200
    assert replay.json()["state"] == "locked"


# ---------------------------------------------------------------- through the delivery API


async def test_commit_reveal_then_the_sweeper_captures_when_the_window_closes(
    api: Any,
    pact: Any,
    saved_card: CardFactory,
    app: Any,
    clock: Any,
    stripe_raw: stripe.StripeClient,
) -> None:
    body = await locked(api, pact, saved_card)
    intent_id = body["intent_id"]
    assert (await lifecycle.commit(api, pact, intent_id))["state"] == "committed"
    revealed = await lifecycle.reveal(api, pact, intent_id)
    assert revealed.status_code == 200, revealed.text
    assert revealed.json()["state"] == "delivered"
    pi_id = payment_intent_of(body)
    assert (await stripe_raw.v1.payment_intents.retrieve_async(pi_id)).status == "requires_capture"
    clock.offset_ms = 6_000  # past the 5 s challenge window
    report = await lifecycle.sweeper(app).run_once()
    assert report.ended == {intent_id: "released"}
    final = await api.settlement(intent_id)
    assert final["state"] == "released"
    assert final["receipt"] is not None
    pi = await stripe_raw.v1.payment_intents.retrieve_async(pi_id)
    assert (pi.status, pi.amount) == ("succeeded", 125)


async def test_a_reveal_that_breaks_the_commitment_cancels_the_hold(
    api: Any, pact: Any, saved_card: CardFactory, stripe_raw: stripe.StripeClient
) -> None:
    body = await locked(api, pact, saved_card)
    intent_id = body["intent_id"]
    await lifecycle.commit(api, pact, intent_id)
    bad = await lifecycle.reveal(api, pact, intent_id, payload=b"something else")
    assert bad.status_code in (200, 422), bad.text
    final = await api.settlement(intent_id)
    assert (final["state"], final["failure_code"]) == ("refunded", "FAILED_PROOF")
    pi = await stripe_raw.v1.payment_intents.retrieve_async(payment_intent_of(body))
    assert pi.status == "canceled"
