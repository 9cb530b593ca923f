"""The ERC-20 escrow rail (``evm-erc20``) end to end through the settlement API on anvil: the
app builds its token gateway from settings alone, as in production, and a USDC-like token
(6 decimals) moves on chain for lock, release, refund, slash and partial release (also as a
stream through a real provider server); a price the
token cannot represent is refused with a problem document before anything is recorded."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from fixtures.rails import ANVIL_CHAIN_ID, Chain, anvil_rail_settings, put_profile
from fixtures.streams import provider_server
from pact_schema.stream_client import StreamBuyer
from pact_schema.streaming import amount_for_ticks
from pact_settlement.rails.evm.rail import PARTIAL_RELEASE_KEY_SUFFIX
from pact_settlement.rails.evm.results import EscrowStatus
from pact_settlement.rails.evm.token_rail import EvmTokenEscrowRail
from pact_settlement.settlements.lookup import find_settlement
from pact_settlement.settlements.rail_steps import rail_view
from pact_settlement.settlements.repository import SettlementRepository

from .flow import RELEASE, deliver, refund_plan, run_step, slash_plan, state_of

pytestmark = pytest.mark.evm

USDC = 10**6


@pytest.fixture(params=[pytest.param("postgres", id="postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def settings_overrides(anvil_url: str, anvil_chain: Chain) -> dict[str, Any]:
    return anvil_rail_settings(
        anvil_url,
        anvil_chain,
        default_rail="evm-erc20",
        evm_chain_id=ANVIL_CHAIN_ID,
        evm_confirmations=1,
        evm_poll_interval_s=0.05,
        require_seller_bond=True,
        workers_enabled=False,
    )


async def _profiles(api: Any, pact: Any, chain: Chain) -> None:
    await put_profile(api, pact.buyer.public_key_b58, "evm", {"evm_address": chain.buyer.address})
    await put_profile(
        api, pact.provider.public_key_b58, "evm", {"evm_address": chain.seller.address}
    )


async def _locked(api: Any, pact: Any, app: Any, price: str) -> tuple[dict[str, Any], str]:
    response = await api.create(pact.accept(price=Decimal(price), bond=Decimal(price)))
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["rail"], body["state"]) == ("evm-erc20", "locked")
    gateway = app.state.settlement.rail_clients.evm_erc20()
    chain_buyer, chain_seller = await _addresses(app, body["intent_id"])
    return body, gateway.escrow_id(body["intent_id"], chain_buyer, chain_seller)


async def _addresses(app: Any, intent_id: str) -> tuple[str, str]:
    from pact_settlement.rails.bindings import RailBinding

    async with app.state.settlement.sessionmaker() as session:
        row = await find_settlement(SettlementRepository.from_session(session), intent_id)
        assert row is not None
        binding = await session.get(RailBinding, row.id)
        assert binding is not None
        return binding.params["buyer"], binding.params["seller"]


async def test_lock_deliver_release_moves_the_token_through_the_api(
    api: Any, pact: Any, anvil_chain: Chain, app: Any
) -> None:
    chain = anvil_chain
    await _profiles(api, pact, chain)
    rails = (await api.client.get("/v1/rails", headers=api.admin_auth)).json()
    erc20 = next(r for r in rails["rails"] if r["name"] == "evm-erc20")
    assert (erc20["minimum_amount"], erc20["token_address"]) == ("0.000001", chain.token)

    body, eid = await _locked(api, pact, app, "0.5")
    gateway = app.state.settlement.rail_clients.evm_erc20()
    state = await gateway.get_escrow(eid)
    assert (state.status, state.token, state.amount_wei, state.bond_wei) == (
        EscrowStatus.LOCKED, chain.token, USDC // 2, USDC // 2,
    )  # fmt: skip
    seller_before = await chain.token_balance(chain.seller)
    eth_before = await chain.balance(chain.seller)

    maker, settings = app.state.settlement.sessionmaker, app.state.settlement.settings
    clients = app.state.settlement.rail_clients
    await deliver(maker, body["intent_id"])
    outcome = await run_step(maker, settings, body["intent_id"], RELEASE, clients=clients)
    assert outcome.status == "succeeded"
    assert await state_of(maker, body["intent_id"]) == (
        "released",
        ["lock:succeeded", "release:succeeded"],
    )
    assert await chain.token_balance(chain.seller) == seller_before + USDC
    assert await chain.balance(chain.seller) == eth_before  # no ether moved
    assert [e.name for e in await gateway.find_events(eid)] == ["Locked", "BondPosted", "Released"]


async def test_refund_and_slash_return_the_buyers_tokens(
    api: Any, pact: Any, anvil_chain: Chain, app: Any
) -> None:
    chain = anvil_chain
    await _profiles(api, pact, chain)
    maker, settings = app.state.settlement.sessionmaker, app.state.settlement.settings
    clients = app.state.settlement.rail_clients
    buyer_before = await chain.token_balance(chain.buyer)
    seller_before = await chain.token_balance(chain.seller)

    refunded, _ = await _locked(api, pact, app, "0.25")
    outcome = await run_step(maker, settings, refunded["intent_id"], refund_plan(), clients=clients)
    assert outcome.status == "succeeded"
    assert (await state_of(maker, refunded["intent_id"]))[0] == "refunded"
    assert await chain.token_balance(chain.buyer) == buyer_before + USDC // 4
    assert await chain.token_balance(chain.seller) == seller_before + USDC // 4  # its bond

    slashed, _ = await _locked(api, pact, app, "0.75")
    outcome = await run_step(maker, settings, slashed["intent_id"], slash_plan(), clients=clients)
    assert outcome.status == "succeeded"
    assert (await state_of(maker, slashed["intent_id"]))[0] == "slashed"
    # the buyer gets its amount back and, as the beneficiary, the seller's bond
    assert await chain.token_balance(chain.buyer) == buyer_before + USDC // 4 + 3 * USDC // 2


async def test_partial_release_of_a_settlement_recorded_by_the_api(
    api: Any, pact: Any, anvil_chain: Chain, app: Any
) -> None:
    chain = anvil_chain
    await _profiles(api, pact, chain)
    body, eid = await _locked(api, pact, app, "1")
    buyer_before = await chain.token_balance(chain.buyer)
    seller_before = await chain.token_balance(chain.seller)
    async with app.state.settlement.sessionmaker() as session:
        row = await find_settlement(SettlementRepository.from_session(session), body["intent_id"])
        assert row is not None
        gateway = app.state.settlement.rail_clients.evm_erc20()
        rail = EvmTokenEscrowRail(session, app.state.settlement.settings.evm, gateway)
        key = f"settlement-{row.id}-{PARTIAL_RELEASE_KEY_SUFFIX}"
        result = await rail.release_partial(rail_view(row), Decimal("0.3"), key)
        again = await rail.release_partial(rail_view(row), Decimal("0.3"), key)
    assert (result.detail["seller_amount"], result.detail["buyer_amount"]) == ("300000", "700000")
    assert again.detail["already_done"] is True
    assert await chain.token_balance(chain.seller) == seller_before + 300_000 + USDC  # + bond
    assert await chain.token_balance(chain.buyer) == buyer_before + 700_000
    assert (await gateway.get_escrow(eid)).status is EscrowStatus.PARTIALLY_RELEASED


async def test_a_stream_through_the_provider_releases_exactly_the_highest_voucher_on_chain(
    api: Any, pact: Any, anvil_chain: Chain, app: Any
) -> None:
    """Partial release through both services: the buyer streams from a real provider server,
    paying each tick with a voucher; at its stop settlement's close runs ``releasePartial``,
    so the seller's tokens grow by exactly the highest voucher and the buyer gets the rest."""
    chain = anvil_chain
    await _profiles(api, pact, chain)
    budget, planned, ticks = Decimal("0.5"), 100, 37
    accept = pact.accept(
        price=budget, bond=Decimal(0), settlement_mode="streaming", delivery_in_ms=300_000
    )
    created = await api.create(accept)
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["rail"], body["state"]) == ("evm-erc20", "streaming")
    buyer_before = await chain.token_balance(chain.buyer)  # the budget is in escrow already
    seller_before = await chain.token_balance(chain.seller)
    async with provider_server(app, pact.provider, stream_checkpoint_ticks=10) as (url, calls):
        buyer = StreamBuyer(
            url,
            pact.buyer,
            seller=pact.provider.public_key_b58,
            intent_id=body["intent_id"],
            budget=budget,
            tick_ms=1,
            planned_ticks=planned,
            max_ticks=ticks,
        )
        try:
            result = await buyer.run()
        finally:
            await buyer.aclose()
    paid = amount_for_ticks(budget, planned, ticks)
    assert (result.code, result.ticks, result.paid_amount) == ("BUYER_STOPPED", ticks, paid)
    assert result.settlement is not None
    assert result.settlement["state"] == "released"
    assert calls.calls["POST close"] == 1
    assert await chain.token_balance(chain.seller) == seller_before + int(paid * USDC)
    assert await chain.token_balance(chain.buyer) == buyer_before + int((budget - paid) * USDC)
    chain_buyer, chain_seller = await _addresses(app, body["intent_id"])
    gateway = app.state.settlement.rail_clients.evm_erc20()
    eid = gateway.escrow_id(body["intent_id"], chain_buyer, chain_seller)
    assert (await gateway.get_escrow(eid)).status is EscrowStatus.PARTIALLY_RELEASED


async def test_a_price_the_token_cannot_represent_is_refused_before_anything_is_recorded(
    api: Any, pact: Any, anvil_chain: Chain
) -> None:
    await _profiles(api, pact, anvil_chain)
    response = await api.create(pact.accept(price=Decimal("0.0000015"), bond=Decimal("0")))
    assert response.status_code == 422, response.text
    problem = response.json()
    assert response.headers["content-type"].startswith("application/problem+json")
    assert problem["code"] == "AMOUNT_NOT_IN_RAIL_UNITS"
    assert "USDT6" in problem["detail"]
