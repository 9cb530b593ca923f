"""StripeRail called directly (the Rail protocol) against localstripe with the real SDK."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
import stripe
from fixtures.rails import (
    STRIPE_KEY,
    CardFactory,
    SavedCard,
    insert_settlement,
    localstripe_requests,
    profiles_of,
    rail_view_of,
)
from pact_schema import Keypair
from pact_schema.clock import utcnow
from pact_schema.codes import FailureCode
from pact_settlement.accounts.models import PaymentProfile
from pact_settlement.config import SettlementSettings
from pact_settlement.rails.base import RailError, RailOpStatus, RailRefusedError, RailStep
from pact_settlement.rails.bindings import RailBinding
from pact_settlement.rails.repository import rail_idempotency_key
from pact_settlement.rails.stripe.gateway import StripeGateway
from pact_settlement.rails.stripe.rail import StripeRail
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

pytestmark = [
    pytest.mark.stripe,
    pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning"),
]

BUYER = Keypair(bytes(range(33, 65))).public_key_b58
SELLER = Keypair(bytes(range(1, 33))).public_key_b58


@pytest.fixture(params=[pytest.param("sqlite", id="sqlite")])
def backend(request: pytest.FixtureRequest) -> str:
    """The rail logic does not depend on the database: SQLite only (the API tests do both)."""
    return str(request.param)


@pytest.fixture
def settings_overrides(localstripe_url: str) -> dict[str, Any]:
    return {
        "enabled_rails": ["ledger", "stripe"],
        "stripe_api_key": STRIPE_KEY,
        "stripe_api_base": localstripe_url,
    }


class Harness:
    def __init__(
        self,
        maker: async_sessionmaker[AsyncSession],
        settings: SettlementSettings,
        gateway: StripeGateway,
        saved_card: CardFactory,
    ) -> None:
        self.maker = maker
        self.sessions: list[AsyncSession] = []
        self.settings = settings
        self.gateway = gateway
        self.saved_card = saved_card

    async def profile(self, session: AsyncSession, card: SavedCard, agent: str = BUYER) -> None:
        now = utcnow()
        existing = await session.get(PaymentProfile, (agent, "stripe"))
        if existing is None:
            session.add(
                PaymentProfile(
                    agent_id=agent,
                    rail="stripe",
                    stripe_customer=card.customer,
                    stripe_payment_method=card.payment_method,
                    created_at=now,
                    updated_at=now,
                )
            )
        else:
            existing.stripe_customer = card.customer
            existing.stripe_payment_method = card.payment_method
        await session.flush()

    async def prepared(
        self, amount: str = "1.25", *, card_number: str = "4242424242424242"
    ) -> tuple[StripeRail, Any]:
        """A recorded settlement with its binding, committed (as the executor leaves it)."""
        card = await self.saved_card(card_number)
        session = self.maker()
        self.sessions.append(session)
        await self.profile(session, card)
        settlement = await insert_settlement(
            session, rail="stripe", amount=amount, buyer=BUYER, seller=SELLER
        )
        rail = StripeRail(session, self.settings.stripe, self.gateway)
        await rail.prepare(rail_view_of(settlement), await profiles_of(session, settlement))
        await session.commit()
        return rail, settlement


@pytest.fixture
async def harness(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: SettlementSettings,
    stripe_gateway: StripeGateway,
    saved_card: CardFactory,
) -> AsyncIterator[Harness]:
    harness = Harness(sessionmaker, settings, stripe_gateway, saved_card)
    yield harness
    for session in harness.sessions:
        await session.close()


def key(settlement: Any, step: str) -> str:
    return rail_idempotency_key(settlement.id, RailStep(step))


# ------------------------------------------------------------------------------- prepare


async def test_amount_below_the_stripe_minimum_is_refused_before_anything_is_sent(
    harness: Harness, localstripe_url: str
) -> None:
    before = len(await localstripe_requests(localstripe_url))
    card = await harness.saved_card()
    after_setup = len(await localstripe_requests(localstripe_url))
    async with harness.maker() as session:
        await harness.profile(session, card)
        settlement = await insert_settlement(
            session, rail="stripe", amount="0.49", buyer=BUYER, seller=SELLER
        )
        rail = StripeRail(session, harness.settings.stripe, harness.gateway)
        with pytest.raises(RailRefusedError) as info:
            await rail.prepare(rail_view_of(settlement), await profiles_of(session, settlement))
        assert info.value.code == FailureCode.AMOUNT_BELOW_RAIL_MINIMUM
        assert "0.50 USD" in info.value.detail
        assert await session.get(RailBinding, settlement.id) is None
    assert before < after_setup == len(await localstripe_requests(localstripe_url))


@pytest.mark.parametrize("amount", ["0.505", "1.001", "20.0000001"])
async def test_a_fraction_of_a_cent_is_refused_never_rounded_into_another_charge(
    harness: Harness, localstripe_url: str, amount: str
) -> None:
    before = len(await localstripe_requests(localstripe_url))
    card = await harness.saved_card()
    after_setup = len(await localstripe_requests(localstripe_url))
    async with harness.maker() as session:
        await harness.profile(session, card)
        settlement = await insert_settlement(
            session, rail="stripe", amount=amount, buyer=BUYER, seller=SELLER
        )
        with pytest.raises(RailRefusedError) as info:
            await StripeRail(session, harness.settings.stripe, harness.gateway).prepare(
                rail_view_of(settlement), await profiles_of(session, settlement)
            )
        assert info.value.code == FailureCode.AMOUNT_NOT_IN_RAIL_UNITS
        assert f"cannot charge {amount} USD on stripe exactly" in info.value.detail
        assert await session.get(RailBinding, settlement.id) is None
    assert before < after_setup == len(await localstripe_requests(localstripe_url))


async def test_whole_cents_are_charged_exactly_and_recorded(harness: Harness) -> None:
    rail, settlement = await harness.prepared("0.51")
    result = await rail.lock(rail_view_of(settlement), idempotency_key=key(settlement, "lock"))
    assert result.detail["amount_minor"] == 51
    async with harness.maker() as session:
        binding = await session.get(RailBinding, settlement.id)
        assert binding is not None
        assert binding.params["amount_minor"] == 51
        assert binding.params["amount"] == "0.51"


async def test_a_seller_bond_is_refused_on_stripe(harness: Harness) -> None:
    async with harness.maker() as session:
        await harness.profile(session, await harness.saved_card())
        settlement = await insert_settlement(
            session, rail="stripe", amount="2", bond_locked="4", buyer=BUYER, seller=SELLER
        )
        with pytest.raises(RailRefusedError) as info:
            await StripeRail(session, harness.settings.stripe, harness.gateway).prepare(
                rail_view_of(settlement), await profiles_of(session, settlement)
            )
    assert info.value.code == "RAIL_NOT_AVAILABLE"
    assert "bond" in info.value.detail


async def test_a_buyer_without_a_stripe_profile_is_refused(harness: Harness) -> None:
    async with harness.maker() as session:
        settlement = await insert_settlement(
            session, rail="stripe", amount="2", buyer=SELLER, seller=BUYER
        )
        with pytest.raises(RailRefusedError) as info:
            await StripeRail(session, harness.settings.stripe, harness.gateway).prepare(
                rail_view_of(settlement), await profiles_of(session, settlement)
            )
    assert info.value.code == FailureCode.MISSING_REQUIRED_CREDENTIALS
    assert "payment-profiles/stripe" in info.value.detail


# ---------------------------------------------------------------------------------- steps


async def test_lock_authorizes_a_manual_capture_payment_intent_with_the_settlement_key(
    harness: Harness, stripe_raw: stripe.StripeClient, localstripe_url: str
) -> None:
    rail, settlement = await harness.prepared("1.25")
    result = await rail.lock(rail_view_of(settlement), idempotency_key=key(settlement, "lock"))
    assert result.status is RailOpStatus.SUCCEEDED
    pi = await stripe_raw.v1.payment_intents.retrieve_async(str(result.reference))
    assert (pi.status, pi.capture_method, pi.amount, pi.currency) == (
        "requires_capture",
        "manual",
        125,
        "usd",
    )
    assert pi.metadata["settlement_id"] == settlement.id
    requests = await localstripe_requests(localstripe_url)
    sent = [r for r in requests if r["path"] == "/v1/payment_intents"]
    assert sent[-1]["idempotency_key"] == f"settlement-{settlement.id}-lock"
    async with harness.maker() as session:
        binding = await session.get(RailBinding, settlement.id)
        assert binding is not None
        assert binding.external_id == result.reference
        assert binding.hold_expires_at is not None
        lapse = binding.hold_expires_at - utcnow()
        assert timedelta(days=6, hours=23) < lapse <= timedelta(days=7)


async def test_a_retried_lock_returns_the_same_payment_intent(
    harness: Harness, stripe_raw: stripe.StripeClient
) -> None:
    rail, settlement = await harness.prepared()
    first = await rail.lock(rail_view_of(settlement), idempotency_key=key(settlement, "lock"))
    again = await rail.lock(rail_view_of(settlement), idempotency_key=key(settlement, "lock"))
    assert first.reference == again.reference
    found = await harness.gateway.find_by_settlement(settlement.id)
    assert [s.payment_intent_id for s in found] == [first.reference]


async def test_release_captures_and_status_follows(harness: Harness) -> None:
    rail, settlement = await harness.prepared("3.00")
    view = rail_view_of(settlement)
    await rail.lock(view, idempotency_key=key(settlement, "lock"))
    before = await rail.status(view, idempotency_key=key(settlement, "release"))
    assert before.status is RailOpStatus.NOT_FOUND
    released = await rail.release(view, idempotency_key=key(settlement, "release"))
    assert released.detail["stripe_status"] == "succeeded"
    after = await rail.status(view, idempotency_key=key(settlement, "release"))
    assert after.status is RailOpStatus.SUCCEEDED
    replay = await rail.release(view, idempotency_key=key(settlement, "release"))
    assert replay.reference == released.reference


async def test_refund_before_capture_voids_the_authorisation(harness: Harness) -> None:
    rail, settlement = await harness.prepared()
    view = rail_view_of(settlement)
    await rail.lock(view, idempotency_key=key(settlement, "lock"))
    assert (await rail.status(view, idempotency_key=key(settlement, "refund"))).status is (
        RailOpStatus.NOT_FOUND
    )
    refunded = await rail.refund(view, idempotency_key=key(settlement, "refund"))
    assert refunded.detail["stripe_status"] == "canceled"
    status = await rail.status(view, idempotency_key=key(settlement, "refund"))
    assert status.status is RailOpStatus.SUCCEEDED


async def test_refund_after_capture_refunds_the_charge(harness: Harness) -> None:
    rail, settlement = await harness.prepared()
    view = rail_view_of(settlement)
    await rail.lock(view, idempotency_key=key(settlement, "lock"))
    await rail.release(view, idempotency_key=key(settlement, "release"))
    refunded = await rail.refund(view, idempotency_key=key(settlement, "refund"))
    assert str(refunded.reference).startswith("re_")
    status = await rail.status(view, idempotency_key=key(settlement, "refund"))
    assert (status.status, status.reference) == (RailOpStatus.SUCCEEDED, refunded.reference)


async def test_slash_makes_the_buyer_whole_by_canceling_the_hold(harness: Harness) -> None:
    rail, settlement = await harness.prepared()
    view = rail_view_of(settlement)
    await rail.lock(view, idempotency_key=key(settlement, "lock"))
    slashed = await rail.slash(view, idempotency_key=key(settlement, "slash"))
    assert slashed.detail["stripe_status"] == "canceled"
    with pytest.raises(RailError) as info:  # nothing left to capture
        await rail.release(view, idempotency_key=key(settlement, "release"))
    assert not info.value.retryable


async def test_a_declined_card_fails_the_lock_for_good(harness: Harness) -> None:
    rail, settlement = await harness.prepared(card_number="4000000000000341")
    view = rail_view_of(settlement)
    with pytest.raises(RailError) as info:
        await rail.lock(view, idempotency_key=key(settlement, "lock"))
    assert info.value.code == FailureCode.FAILED_ESCROW
    assert not info.value.retryable
    status = await rail.status(view, idempotency_key=key(settlement, "lock"))
    assert status.status is RailOpStatus.FAILED
    assert status.detail["code"] == FailureCode.FAILED_ESCROW


async def test_lock_status_finds_a_payment_intent_whose_answer_was_lost(harness: Harness) -> None:
    """The process died after Stripe authorised but before anything was written back."""
    rail, settlement = await harness.prepared("2.00")
    view = rail_view_of(settlement)
    assert (await rail.status(view, idempotency_key=key(settlement, "lock"))).status is (
        RailOpStatus.NOT_FOUND
    )
    async with harness.maker() as session:
        binding = await session.get(RailBinding, settlement.id)
        assert binding is not None
        p = binding.params
    # The call reached Stripe; its answer (and our write-back) did not survive.
    lost = await harness.gateway.authorize(
        settlement.id,
        Decimal("2.00"),
        p["customer"],
        p["payment_method"],
        intent_id=settlement.intent_id,
        idempotency_key=key(settlement, "lock"),
    )
    status = await rail.status(view, idempotency_key=key(settlement, "lock"))
    assert (status.status, status.reference) == (RailOpStatus.SUCCEEDED, lost.payment_intent_id)
    # The reconciler's replay with the same key returns that PaymentIntent, not a new one.
    replay = await rail.lock(view, idempotency_key=key(settlement, "lock"))
    assert replay.reference == lost.payment_intent_id
    assert len(await harness.gateway.find_by_settlement(settlement.id)) == 1


async def test_stripe_unreachable_keeps_the_step_pending(harness: Harness) -> None:
    rail, settlement = await harness.prepared()
    async with StripeGateway(
        STRIPE_KEY, api_base="http://127.0.0.1:9", max_network_retries=0, timeout_s=1
    ) as dead:
        offline = StripeRail(rail.session, harness.settings.stripe, dead)
        with pytest.raises(RailError) as info:
            await offline.lock(rail_view_of(settlement), idempotency_key=key(settlement, "lock"))
    assert info.value.retryable


async def _age_binding(harness: Harness, settlement: Any, hours: int) -> None:
    async with harness.maker() as session:
        binding = await session.get(RailBinding, settlement.id)
        assert binding is not None
        binding.created_at = utcnow() - timedelta(hours=hours)
        await session.commit()


async def test_a_lock_is_never_sent_after_stripes_idempotency_window(
    harness: Harness, localstripe_url: str
) -> None:
    rail, settlement = await harness.prepared()
    await _age_binding(harness, settlement, 24)
    sent = len(await localstripe_requests(localstripe_url))
    with pytest.raises(RailError) as info:
        await rail.lock(rail_view_of(settlement), idempotency_key=key(settlement, "lock"))
    assert not info.value.retryable
    assert len(await localstripe_requests(localstripe_url)) == sent  # nothing was sent


async def test_a_late_lock_adopts_the_payment_intent_the_first_attempt_made(
    harness: Harness,
) -> None:
    rail, settlement = await harness.prepared("2.00")
    view = rail_view_of(settlement)
    first = await rail.lock(view, idempotency_key=key(settlement, "lock"))
    await _age_binding(harness, settlement, 30)
    late = await rail.lock(view, idempotency_key=key(settlement, "lock"))
    assert (late.status, late.reference) == (RailOpStatus.SUCCEEDED, first.reference)
