"""Settlements whose rail step is stuck must not starve the ones behind them in the sweeper.

Stripe captures that hang (localstripe frozen: the call is accepted and never answered, so it
times out and stays pending for the reconciler) or that Stripe refuses (the authorisation was
cancelled on Stripe: the release fails and waits for a retry) are due first — their challenge
windows closed first. With a batch of that size, before the fix they took every sweep
and the ledger settlements behind them were never released (issue 13 item 4: 5 stuck
captures, batch 5, ledger releases 28 s late). Proves: the second sweep releases the ledger
settlements; the stuck ones are skipped, not retried, while their step is in flight or
waiting for its retry time; nothing moved twice.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fixtures.faults import STRIPE_KEY, StripeServer, saved_card
from pact_schema.clock import utcnow
from pact_settlement.kit.time import from_ms
from pact_settlement.settlements.repository import SettlementRepository

from ..rails.flow import state_of
from ..rails.lifecycle import commit, reveal, sweeper

pytestmark = [
    pytest.mark.faults,
    pytest.mark.stripe,
    pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning"),
]

STUCK = 3  # = WORKER_BATCH_SIZE
BEHIND = 2
STRIPE_PRICE = Decimal("1.25")
LEDGER_PRICE = Decimal("0.00008")
# Long enough for a lock on localstripe on a loaded machine (a create must answer 201), short
# enough that the hung captures below do not make the test slow.
RAIL_CALL_TIMEOUT_S = 2.0


@pytest.fixture
def settings_overrides(stripe_server: StripeServer) -> dict[str, Any]:
    return {
        "enabled_rails": ["ledger", "stripe"],
        "stripe_api_key": STRIPE_KEY,
        "stripe_api_base": stripe_server.url,
        "stripe_max_network_retries": 0,
        "rail_call_timeout_s": RAIL_CALL_TIMEOUT_S,
        "worker_batch_size": STUCK,
        "sweep_interval_s": 30,  # a failed release waits at least this long for its retry
        "workers_enabled": False,
    }


async def _delivered(api: Any, pact: Any, *, rail: str, price: Decimal) -> str:
    accept = pact.accept(price=price, bond=Decimal(0), challenge_window_ms=1_000)
    created = await api.create(accept, rail=rail)
    assert created.status_code == 201, created.text
    intent_id = str(accept["message"]["intent_id"])
    await commit(api, pact, intent_id)
    revealed = await reveal(api, pact, intent_id)
    assert revealed.status_code == 200, revealed.text
    assert revealed.json()["state"] == "delivered"
    return intent_id


@pytest.mark.parametrize("stuck", ["hung", "refused"])
async def test_stuck_captures_do_not_hold_up_the_releases_behind_them(
    stuck: str, api: Any, pact: Any, app: Any, clock: Any, stripe_server: StripeServer
) -> None:
    await api.deposit(pact.buyer.public_key_b58, "1")
    profile = await saved_card(stripe_server.url)
    r = await api.client.put(
        f"/v1/accounts/{pact.buyer.public_key_b58}/payment-profiles/stripe",
        json=profile,
        headers=api.admin_auth,
    )
    assert r.status_code in (200, 201), r.text
    stuck_ids = [
        await _delivered(api, pact, rail="stripe", price=STRIPE_PRICE) for _ in range(STUCK)
    ]
    behind = [await _delivered(api, pact, rail="ledger", price=LEDGER_PRICE) for _ in range(BEHIND)]
    if stuck == "refused":  # the holds are cancelled on Stripe: every capture is refused
        async with httpx.AsyncClient(
            base_url=stripe_server.url,
            headers={"Authorization": f"Bearer {STRIPE_KEY}"},
            timeout=10,
        ) as stripe:
            for intent_id in stuck_ids:
                events = (await api.settlement(intent_id))["events"]
                reference = next(
                    e["data"]["rail_reference"] for e in events if e["to_state"] == "locked"
                )
                cancelled = await stripe.post(f"/v1/payment_intents/{reference}/cancel")
                assert cancelled.status_code == 200, cancelled.text
    else:
        stripe_server.freeze()

    clock.offset_ms = 2_000  # every challenge window has closed; the Stripe ones first
    sweep = sweeper(app)
    first = await sweep.run_once()
    # The batch was the stuck captures: each hung until RAIL_CALL_TIMEOUT_S, or was refused.
    assert sorted(first.in_flight) == (sorted(stuck_ids) if stuck == "hung" else [])
    step = "release:pending" if stuck == "hung" else "release:failed"
    for intent_id in stuck_ids:
        assert await state_of(app.state.settlement.sessionmaker, intent_id) == (
            "delivered",
            ["lock:succeeded", step],
        )

    second = await sweep.run_once()
    assert second.ended == dict.fromkeys(behind, "released")
    assert second.in_flight == []  # the stuck ones were skipped, not tried again
    for intent_id in stuck_ids:
        assert await state_of(app.state.settlement.sessionmaker, intent_id) == (
            "delivered",
            ["lock:succeeded", step],
        )
    available, locked = await api.balances(pact.provider.public_key_b58)
    assert (available, locked) == (LEDGER_PRICE * BEHIND, 0)
    if stuck == "refused":
        # Once its pause is over a refused release is a candidate again, first in line (it
        # fell due first); after RAIL_MAX_ATTEMPTS it never is (an operator's).
        async with app.state.settlement.sessionmaker() as session:
            repo = SettlementRepository.from_session(session)
            now = from_ms(clock())
            later = utcnow() + timedelta(hours=1)
            ids = await repo.due_ids(now, STUCK, retry_now=later, max_attempts=2)
            exhausted = await repo.due_ids(now, STUCK, retry_now=later, max_attempts=1)
        by_id = {(await api.settlement(i))["id"]: i for i in stuck_ids}
        assert sorted(by_id[i] for i in ids) == sorted(stuck_ids)
        assert exhausted == []
