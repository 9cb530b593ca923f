"""Stripe webhook storms: the same signed event 50x at once, and a shuffled, duplicated,
out-of-order mix of events for several settlements, all concurrently, on Postgres.

Proves: no 5xx; one ``webhook_events`` row per event id; each settlement transitions at most
once (a hold cancelled on Stripe ends ``refunded`` exactly once, with one refund step; a live
hold stays ``locked`` whatever stale events say); the buyer's ledger is untouched.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import random
import time
import uuid
from collections import Counter
from decimal import Decimal
from typing import Any

import pytest
import stripe
from fixtures.rails import STRIPE_KEY, CardFactory, put_profile
from pact_settlement.webhooks.models import WebhookEvent
from sqlalchemy import func, select

pytestmark = [
    pytest.mark.faults,
    pytest.mark.postgres,
    pytest.mark.stripe,
    pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning"),
]

SECRET = "whsec_faults_storm"
PRICE = Decimal("1.25")
SETTLEMENTS = 4  # the first half get their hold cancelled on Stripe


@pytest.fixture
def backend() -> str:
    return "postgres"


@pytest.fixture
def settings_overrides(localstripe_url: str) -> dict[str, Any]:
    return {
        "enabled_rails": ["ledger", "stripe"],
        "stripe_api_key": STRIPE_KEY,
        "stripe_api_base": localstripe_url,
        "stripe_webhook_secret": SECRET,
        "workers_enabled": False,
    }


def _sign(payload: bytes) -> str:
    ts = int(time.time())
    mac = hmac.new(SECRET.encode(), f"{ts}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={ts},v1={mac}"


def _event(kind: str, obj: dict[str, Any]) -> bytes:
    return json.dumps(
        {
            "id": f"evt_{uuid.uuid4().hex[:20]}",
            "object": "event",
            "type": kind,
            "created": int(time.time()),
            "data": {"object": obj},
        }
    ).encode()


async def test_webhook_storm_changes_nothing_twice(
    api: Any,
    pact: Any,
    saved_card: CardFactory,
    stripe_raw: stripe.StripeClient,
    app: Any,
) -> None:
    rng = random.Random(20261126)
    card = await saved_card()
    await put_profile(
        api,
        pact.buyer.public_key_b58,
        "stripe",
        {"stripe_customer": card.customer, "stripe_payment_method": card.payment_method},
    )
    made: list[tuple[dict[str, Any], str]] = []
    for _ in range(SETTLEMENTS):
        r = await api.create(pact.accept(price=PRICE), rail="stripe")
        assert r.status_code == 201, r.text
        body = r.json()
        [ev] = [e for e in body["events"] if e["event"] == "settlement.locked"]
        made.append((body, str(ev["data"]["rail_reference"])))
    cancelled = made[: SETTLEMENTS // 2]
    live = made[SETTLEMENTS // 2 :]
    for _, pi_id in cancelled:
        await stripe_raw.v1.payment_intents.cancel_async(pi_id)

    async def snapshot(pi_id: str) -> dict[str, Any]:
        data: dict[str, Any] = (await stripe_raw.v1.payment_intents.retrieve_async(pi_id)).to_dict()
        return data

    async def post(payload: bytes) -> Any:
        return await api.client.post(
            "/v1/webhooks/stripe",
            content=payload,
            headers={"Content-Type": "application/json", "Stripe-Signature": _sign(payload)},
        )

    # 1. The very same signed event 50x at once.
    storm = _event("payment_intent.canceled", await snapshot(cancelled[0][1]))
    replies = await asyncio.gather(*(post(storm) for _ in range(50)))
    statuses = Counter(r.status_code for r in replies)
    assert set(statuses) == {200}, statuses
    outcomes = Counter(r.json()["outcome"] for r in replies)
    # One delivery is recorded; every other one is acknowledged as a duplicate. (The recorded
    # outcome may be "pending" when a sibling delivery was the one running the refund step.)
    assert outcomes["duplicate"] == 49, outcomes
    assert set(outcomes) <= {"duplicate", "refunded", "pending", "resolved"}, outcomes

    # 2. Shuffled, duplicated, stale events for every settlement.
    payloads: list[bytes] = []
    distinct: set[str] = {json.loads(storm)["id"]}
    for _body, pi_id in made:
        current = await snapshot(pi_id)
        kinds = [
            ("payment_intent.amount_capturable_updated", {**current, "status": "requires_capture"}),
            ("payment_intent.canceled", {**current, "status": "canceled"}),  # stale for live ones
            ("payment_intent.succeeded", {**current, "status": "succeeded"}),  # stale: never
            ("payment_intent.payment_failed", current),
        ]
        for kind, obj in kinds:
            payload = _event(kind, obj)
            distinct.add(json.loads(payload)["id"])
            payloads += [payload] * rng.randint(2, 6)
    payloads += [storm] * 5
    rng.shuffle(payloads)
    replies = await asyncio.gather(*(post(p) for p in payloads))
    bad = [(r.status_code, r.text) for r in replies if r.status_code != 200]
    assert bad == [], bad

    # Exactly one row per event id.
    async with app.state.settlement.sessionmaker() as session:
        rows = (
            await session.execute(
                select(WebhookEvent.event_id, func.count()).group_by(WebhookEvent.event_id)
            )
        ).all()
    assert {event_id for event_id, _ in rows} == distinct
    assert all(count == 1 for _, count in rows), rows

    # Each settlement transitioned at most once, to the right state.
    for body, _ in cancelled:
        after = await api.settlement(body["intent_id"])
        assert after["state"] == "refunded", after
        assert after["failure_code"] == "FAILED_ESCROW"
        refunds = [e for e in after["events"] if e["to_state"] == "refunded"]
        assert len(refunds) == 1, after["events"]
    for body, pi_id in live:
        after = await api.settlement(body["intent_id"])
        assert after["state"] == "locked", after
        assert [e["event"] for e in after["events"]] == [e["event"] for e in body["events"]], (
            "a stale event moved a live hold"
        )
        assert (await snapshot(pi_id))["status"] == "requires_capture"
    # The card rail never touched the ledger.
    assert await api.balances(pact.buyer.public_key_b58) == (Decimal(0), Decimal(0))
