"""Card authorisations never lapse silently: the expiry sweep captures or cancels in time."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
import stripe
from fixtures.rails import STRIPE_KEY, CardFactory, put_profile
from pact_schema.clock import utcnow
from pact_settlement.rails.bindings import RailBinding
from pact_settlement.workers.authorization_expiry import AuthorizationExpirySweeper

from .flow import RELEASE, deliver, refund_plan, run_step, state_of

pytestmark = [
    pytest.mark.stripe,
    pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning"),
]

PRICE = Decimal("1.25")


@pytest.fixture
def settings_overrides(localstripe_url: str) -> dict[str, Any]:
    return {
        "enabled_rails": ["ledger", "stripe"],
        "stripe_api_key": STRIPE_KEY,
        "stripe_api_base": localstripe_url,
        "stripe_capture_margin_s": 86_400,
        "workers_enabled": False,
    }


@pytest.fixture
def sweeper(app: Any) -> AuthorizationExpirySweeper:
    return AuthorizationExpirySweeper(
        app.state.settlement.sessionmaker,
        settings=app.state.settlement.settings,
        metrics=app.state.settlement.metrics,
        clients=app.state.settlement.rail_clients,
        applier=app.state.settlement.applier,
    )


async def locked(api: Any, pact: Any, saved_card: CardFactory) -> tuple[dict[str, Any], str]:
    card = await saved_card()
    await put_profile(
        api,
        pact.buyer.public_key_b58,
        "stripe",
        {"stripe_customer": card.customer, "stripe_payment_method": card.payment_method},
    )
    response = await api.create(pact.accept(price=PRICE), rail="stripe")
    assert response.status_code == 201, response.text
    body = response.json()
    [event] = [e for e in body["events"] if e["event"] == "settlement.locked"]
    return body, str(event["data"]["rail_reference"])


def days(n: float) -> Any:
    return utcnow() + timedelta(days=n)


async def test_a_hold_is_left_alone_until_the_margin_before_it_lapses(
    api: Any, pact: Any, saved_card: CardFactory, sweeper: AuthorizationExpirySweeper, app: Any
) -> None:
    body, _ = await locked(api, pact, saved_card)
    report = await sweeper.run_once(now=days(5.9))  # lapses in ~1.1 days: margin is 1 day
    assert (report.canceled, report.captured) == ([], [])
    assert (await state_of(app.state.settlement.sessionmaker, body["intent_id"]))[0] == "locked"


async def test_an_undelivered_settlement_is_cancelled_before_its_hold_lapses(
    api: Any,
    pact: Any,
    saved_card: CardFactory,
    sweeper: AuthorizationExpirySweeper,
    stripe_raw: stripe.StripeClient,
    app: Any,
) -> None:
    body, pi_id = await locked(api, pact, saved_card)
    report = await sweeper.run_once(now=days(6.1))
    assert report.canceled == [body["intent_id"]]
    after = await api.settlement(body["intent_id"])
    assert (after["state"], after["failure_code"]) == ("refunded", "DURATION_EXCEEDED")
    assert "lapses" in after["failure_detail"]
    assert (await stripe_raw.v1.payment_intents.retrieve_async(pi_id)).status == "canceled"
    again = await sweeper.run_once(now=days(6.1))
    assert (again.canceled, again.errors) == ([], 0)


async def test_a_delivered_settlement_is_captured_in_time_and_released_later(
    api: Any,
    pact: Any,
    saved_card: CardFactory,
    sweeper: AuthorizationExpirySweeper,
    stripe_raw: stripe.StripeClient,
    app: Any,
) -> None:
    body, pi_id = await locked(api, pact, saved_card)
    maker = app.state.settlement.sessionmaker
    await deliver(maker, body["intent_id"])
    report = await sweeper.run_once(now=days(6.1))
    assert report.captured == [body["intent_id"]]
    # The money is off the card and in escrow; the challenge window still decides.
    assert (await stripe_raw.v1.payment_intents.retrieve_async(pi_id)).status == "succeeded"
    settlement = await api.settlement(body["intent_id"])
    assert settlement["state"] == "delivered"
    assert settlement["events"][-1]["event"] == "settlement.funds_captured"
    async with maker() as session:
        binding = await session.get(RailBinding, settlement["id"])
        assert binding is not None
        assert binding.hold_expires_at is None
    assert (await sweeper.run_once(now=days(6.1))).captured == []
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
    charges = await stripe_raw.v1.payment_intents.retrieve_async(pi_id)
    assert (charges.status, charges.amount) == ("succeeded", 125)


async def test_a_challenge_upheld_after_an_early_capture_refunds_the_charge(
    api: Any,
    pact: Any,
    saved_card: CardFactory,
    sweeper: AuthorizationExpirySweeper,
    stripe_raw: stripe.StripeClient,
    app: Any,
) -> None:
    body, pi_id = await locked(api, pact, saved_card)
    maker = app.state.settlement.sessionmaker
    await deliver(maker, body["intent_id"])
    await sweeper.run_once(now=days(6.1))
    outcome = await run_step(
        maker,
        app.state.settlement.settings,
        body["intent_id"],
        refund_plan(),
        clients=app.state.settlement.rail_clients,
    )
    assert outcome.status == "succeeded"
    assert (await state_of(maker, body["intent_id"]))[0] == "refunded"
    refunds = await stripe_raw.v1.refunds.list_async({"payment_intent": pi_id})
    assert [r.amount for r in refunds.data] == [125]


async def test_a_hold_that_lapsed_anyway_ends_refunded_and_loud(
    api: Any,
    pact: Any,
    saved_card: CardFactory,
    sweeper: AuthorizationExpirySweeper,
    stripe_raw: stripe.StripeClient,
    app: Any,
) -> None:
    body, pi_id = await locked(api, pact, saved_card)
    await deliver(app.state.settlement.sessionmaker, body["intent_id"])
    await stripe_raw.v1.payment_intents.cancel_async(pi_id)  # Stripe voided it first
    report = await sweeper.run_once(now=days(6.1))
    assert report.lapsed == [body["intent_id"]]
    after = await api.settlement(body["intent_id"])
    assert (after["state"], after["failure_code"]) == ("refunded", "FAILED_ESCROW")


async def test_the_expiry_sweep_runs_with_the_apps_workers_when_stripe_is_on(app: Any) -> None:
    from pact_settlement.app import _workers

    names = [w.name for w in _workers(app.state.settlement).workers]
    assert names == ["sweeper", "reconciler", "webhooks", "stripe-authorization-expiry"]
