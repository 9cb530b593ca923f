"""A create whose external lock is still in flight, replayed, then resolved by the reconciler.

Stripe hangs (localstripe frozen) while the lock is sent: the call is cut at what is left of the
request's budget, so the first answer is 202 ``pending`` within ``REQUEST_TIMEOUT_S`` — not a
503 at the deadline, and not a wait of ``RAIL_CALL_TIMEOUT_S``. Proves (issue 13 item 6): a
replay of the same request while the lock is in flight also answers 202, as a first answer
would (it said 200); once Stripe is back and the reconciler has resolved the lock, the
create's idempotency record holds the answer a first request would have had (201 with the
locked settlement, or the 402 problem of a declined card) — it stayed incomplete — and a
replay answers accordingly.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from fixtures.faults import STRIPE_KEY, StripeServer, saved_card
from pact_schema.clock import utcnow
from pact_settlement.idempotency.models import IdempotencyKey
from pact_settlement.settlements.service import CREATE_SCOPE
from pact_settlement.workers.reconciler import Reconciler
from sqlalchemy import select

pytestmark = [
    pytest.mark.faults,
    pytest.mark.stripe,
    pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning"),
]

# REQUEST_TIMEOUT_S (a quarter of it is kept to record the outcome): short, so the frozen create
# answers soon, yet long enough for the other requests on a loaded machine.
BUDGET_S = 6.0
RAIL_CALL_TIMEOUT_S = 15.0  # longer than the budget: the budget must cut the call
DECLINED_CARD = "4000000000000341"  # attaches, then declines every charge


@pytest.fixture
def settings_overrides(stripe_server: StripeServer) -> dict[str, Any]:
    return {
        "enabled_rails": ["ledger", "stripe"],
        "stripe_api_key": STRIPE_KEY,
        "stripe_api_base": stripe_server.url,
        "stripe_max_network_retries": 0,
        "request_timeout_s": BUDGET_S,
        "rail_call_timeout_s": RAIL_CALL_TIMEOUT_S,
        "reconcile_grace_s": RAIL_CALL_TIMEOUT_S + 1,
        "workers_enabled": False,
    }


async def _idempotency_row(app: Any, key: str) -> IdempotencyKey:
    async with app.state.settlement.sessionmaker() as session:
        row = await session.scalar(
            select(IdempotencyKey).where(
                IdempotencyKey.scope == CREATE_SCOPE, IdempotencyKey.key == key
            )
        )
    assert row is not None
    return row


@pytest.mark.parametrize("card", ["accepted", "declined"])
async def test_in_flight_create_replays_202_and_the_reconciler_completes_its_record(
    card: str, api: Any, pact: Any, app: Any, stripe_server: StripeServer
) -> None:
    numbers = {"accepted": "4242424242424242", "declined": DECLINED_CARD}
    profile = await saved_card(stripe_server.url, numbers[card])
    r = await api.client.put(
        f"/v1/accounts/{pact.buyer.public_key_b58}/payment-profiles/stripe",
        json=profile,
        headers=api.admin_auth,
    )
    assert r.status_code in (200, 201), r.text
    accept = pact.accept(price=Decimal("1.25"), bond=Decimal(0))
    key = api.idem_key(accept)

    stripe_server.freeze()
    first = await api.create(accept, rail="stripe")
    assert first.status_code == 202, first.text
    assert first.json()["state"] == "pending"
    replay = await api.create(accept, rail="stripe")
    assert replay.status_code == 202, replay.text  # what a first answer says, not 200
    assert replay.json()["id"] == first.json()["id"]
    assert replay.json()["state"] == "pending"
    assert (await _idempotency_row(app, key)).status_code is None
    stripe_server.thaw()

    state = app.state.settlement
    reconciler = Reconciler(
        state.sessionmaker,
        settings=state.settings,
        metrics=state.metrics,
        applier=state.applier,
        clients=state.rail_clients,
    )
    later = utcnow() + timedelta(seconds=state.settings.reconcile_grace_s + 1)
    assert await reconciler.run_once(now=later) == 1

    row = await _idempotency_row(app, key)
    again = await api.create(accept, rail="stripe")
    if card == "accepted":
        assert (row.status_code, row.response["state"]) == (201, "locked")  # type: ignore[index]
        assert row.response["id"] == first.json()["id"]  # type: ignore[index]
        assert again.status_code == 200, again.text
        assert again.json()["state"] == "locked"
    else:
        assert row.status_code == 402
        assert row.response is not None
        assert (row.response["code"], row.response["state"]) == ("FAILED_ESCROW", "failed")
        assert again.status_code == 402, again.text
        assert again.json()["code"] == row.response["code"]
    assert row.completed_at is not None
