"""POST /v1/webhooks/stripe: signature, duplicates, out-of-order events, pending resolution."""

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
from pact_settlement.rails.stripe.rail import StripeRail
from pact_settlement.webhooks.repository import WebhookEventRepository

from .flow import Crash, state_of

pytestmark = [
    pytest.mark.stripe,
    pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning"),
]

SECRET = "whsec_test_webhook_endpoint"
PRICE = Decimal("1.25")


@pytest.fixture
def extra_settings() -> dict[str, Any]:
    return {}


@pytest.fixture
def settings_overrides(localstripe_url: str, extra_settings: dict[str, Any]) -> dict[str, Any]:
    return {
        "enabled_rails": ["ledger", "stripe"],
        "stripe_api_key": STRIPE_KEY,
        "stripe_api_base": localstripe_url,
        "stripe_webhook_secret": SECRET,
        "workers_enabled": False,
        **extra_settings,
    }


def sign(payload: bytes, secret: str = SECRET, timestamp: int | None = None) -> str:
    ts = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{ts}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={ts},v1={mac}"


def event(kind: str, obj: dict[str, Any], event_id: str | None = None) -> bytes:
    body = {
        "id": event_id or f"evt_{uuid.uuid4().hex[:20]}",
        "object": "event",
        "type": kind,
        "created": int(time.time()),
        "data": {"object": obj},
    }
    return json.dumps(body).encode()


async def post(api: Any, payload: bytes, signature: str | None) -> Any:
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["Stripe-Signature"] = signature
    return await api.client.post("/v1/webhooks/stripe", content=payload, headers=headers)


async def buyer(api: Any, pact: Any, saved_card: CardFactory) -> None:
    card = await saved_card()
    await put_profile(
        api,
        pact.buyer.public_key_b58,
        "stripe",
        {"stripe_customer": card.customer, "stripe_payment_method": card.payment_method},
    )


async def locked(api: Any, pact: Any, saved_card: CardFactory) -> tuple[dict[str, Any], str]:
    await buyer(api, pact, saved_card)
    response = await api.create(pact.accept(price=PRICE), rail="stripe")
    assert response.status_code == 201, response.text
    body = response.json()
    [ev] = [e for e in body["events"] if e["event"] == "settlement.locked"]
    return body, str(ev["data"]["rail_reference"])


async def snapshot(raw: stripe.StripeClient, pi_id: str) -> dict[str, Any]:
    pi = await raw.v1.payment_intents.retrieve_async(pi_id)
    data: dict[str, Any] = pi.to_dict()
    return data


async def recorded(app: Any) -> list[Any]:
    async with app.state.settlement.sessionmaker() as session:
        from pact_settlement.webhooks.models import WebhookEvent
        from sqlalchemy import select

        return list((await session.execute(select(WebhookEvent))).scalars())


async def test_a_signed_event_is_processed_once_and_its_duplicate_is_a_no_op(
    api: Any, pact: Any, saved_card: CardFactory, stripe_raw: stripe.StripeClient, app: Any
) -> None:
    body, pi_id = await locked(api, pact, saved_card)
    payload = event("payment_intent.amount_capturable_updated", await snapshot(stripe_raw, pi_id))
    first = await post(api, payload, sign(payload))
    assert first.status_code == 200, first.text
    assert first.json()["outcome"] == "no_change"
    assert first.json()["settlement_id"] == body["id"]
    again = await post(api, payload, sign(payload))
    assert again.status_code == 200
    assert again.json()["outcome"] == "duplicate"
    async with app.state.settlement.sessionmaker() as session:
        rows = await WebhookEventRepository.from_session(session).for_settlement(body["id"])
    assert [(r.event_type, r.object_id, r.outcome) for r in rows] == [
        ("payment_intent.amount_capturable_updated", pi_id, "no_change")
    ]
    assert (await api.settlement(body["intent_id"]))["state"] == "locked"


@pytest.mark.parametrize(
    "signature",
    [
        None,
        "",
        "t=1700000000,v1=deadbeef",
        "forged",
        "other-secret",
        "stale",
    ],
)
async def test_an_unsigned_or_badly_signed_event_is_400_and_changes_nothing(
    api: Any,
    pact: Any,
    saved_card: CardFactory,
    stripe_raw: stripe.StripeClient,
    app: Any,
    signature: str | None,
) -> None:
    body, pi_id = await locked(api, pact, saved_card)
    await stripe_raw.v1.payment_intents.cancel_async(pi_id)  # a real reason to act, if trusted
    payload = event("payment_intent.canceled", await snapshot(stripe_raw, pi_id))
    header = {
        "forged": sign(payload.replace(b"canceled", b"cancelled")),
        "other-secret": sign(payload, "whsec_someone_else"),
        "stale": sign(payload, timestamp=int(time.time()) - 3600),
    }.get(signature or "", signature)
    response = await post(api, payload, header)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == "FAILED_IDENTITY"
    assert await recorded(app) == []
    assert (await api.settlement(body["intent_id"]))["state"] == "locked"


async def test_an_out_of_order_event_is_judged_by_the_current_payment_intent(
    api: Any, pact: Any, saved_card: CardFactory, stripe_raw: stripe.StripeClient
) -> None:
    """A stale 'canceled' snapshot for a PaymentIntent that is in fact still authorised."""
    body, pi_id = await locked(api, pact, saved_card)
    stale = {**await snapshot(stripe_raw, pi_id), "status": "canceled"}
    payload = event("payment_intent.canceled", stale)
    response = await post(api, payload, sign(payload))
    assert response.status_code == 200
    assert response.json()["outcome"] == "no_change"
    assert (await api.settlement(body["intent_id"]))["state"] == "locked"


async def test_a_hold_canceled_on_stripe_refunds_the_settlement_loudly(
    api: Any, pact: Any, saved_card: CardFactory, stripe_raw: stripe.StripeClient
) -> None:
    body, pi_id = await locked(api, pact, saved_card)
    await stripe_raw.v1.payment_intents.cancel_async(pi_id)  # e.g. Stripe voided it at expiry
    payload = event("payment_intent.canceled", await snapshot(stripe_raw, pi_id))
    response = await post(api, payload, sign(payload))
    assert response.status_code == 200, response.text
    assert response.json()["outcome"] == "refunded"
    after = await api.settlement(body["intent_id"])
    assert after["state"] == "refunded"
    assert after["failure_code"] == "FAILED_ESCROW"
    assert "canceled outside the service" in after["failure_detail"]
    # An older event arriving afterwards changes nothing.
    older = event(
        "payment_intent.amount_capturable_updated", {"id": pi_id, "object": "payment_intent"}
    )
    late = await post(api, older, sign(older))
    assert late.json()["outcome"] == "no_change"


async def test_a_pending_lock_is_resolved_by_the_webhook_before_the_reconciler_runs(
    api: Any,
    pact: Any,
    saved_card: CardFactory,
    stripe_raw: stripe.StripeClient,
    stripe_gateway: Any,
    app: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await buyer(api, pact, saved_card)
    real_lock = StripeRail.lock
    crashed: list[str] = []

    async def lock_then_die(self: StripeRail, settlement: Any, *, idempotency_key: str) -> Any:
        result = await real_lock(self, settlement, idempotency_key=idempotency_key)
        crashed.append(str(result.reference))
        raise Crash

    monkeypatch.setattr(StripeRail, "lock", lock_then_die)
    accept = pact.accept(price=PRICE)
    with pytest.raises(Crash):
        await api.create(accept, rail="stripe")
    monkeypatch.setattr(StripeRail, "lock", real_lock)
    intent_id = accept["message"]["intent_id"]
    assert await state_of(app.state.settlement.sessionmaker, intent_id) == (
        "pending",
        ["lock:pending"],
    )

    payload = event(
        "payment_intent.amount_capturable_updated", await snapshot(stripe_raw, crashed[0])
    )
    response = await post(api, payload, sign(payload))
    assert response.status_code == 200, response.text
    assert response.json()["outcome"] == "resolved"
    assert await state_of(app.state.settlement.sessionmaker, intent_id) == (
        "locked",
        ["lock:succeeded"],
    )
    settlement = await api.settlement(intent_id)
    assert len(await stripe_gateway.find_by_settlement(settlement["id"])) == 1


async def test_events_for_other_objects_are_acknowledged_and_ignored(api: Any) -> None:
    payload = event("charge.refunded", {"id": "ch_1", "object": "charge"})
    response = await post(api, payload, sign(payload))
    assert response.status_code == 200
    assert response.json()["outcome"] == "ignored"
    unknown = event("payment_intent.succeeded", {"id": "pi_unknown", "object": "payment_intent"})
    response = await post(api, unknown, sign(unknown))
    assert response.status_code == 200
    assert response.json()["outcome"] == "ignored"


@pytest.mark.parametrize("extra_settings", [{"stripe_webhook_secret": None}])
async def test_without_a_configured_secret_every_event_is_refused(api: Any) -> None:
    payload = event("payment_intent.succeeded", {"id": "pi_1", "object": "payment_intent"})
    response = await post(api, payload, sign(payload))
    assert response.status_code == 400
    assert response.json()["code"] == "FAILED_IDENTITY"


@pytest.mark.parametrize("extra_settings", [{"enabled_rails": ["ledger"]}])
async def test_the_webhook_is_404_when_the_stripe_rail_is_off(api: Any) -> None:
    payload = event("payment_intent.succeeded", {"id": "pi_1", "object": "payment_intent"})
    response = await post(api, payload, sign(payload))
    assert response.status_code == 404
