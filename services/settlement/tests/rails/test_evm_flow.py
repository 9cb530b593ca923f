"""The EVM escrow rail through the API and the two-phase executor, on SQLite and Postgres,
with web3's in-process eth-tester chain (the anvil end-to-end test is test_evm_anvil_e2e)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from fixtures.rails import Chain, put_profile
from pact_settlement.rails.clients import RailClients
from pact_settlement.rails.evm.rail import EvmEscrowRail
from pact_settlement.rails.evm.results import EscrowStatus
from pact_settlement.workers.reconciler import Reconciler

from . import lifecycle
from .flow import RELEASE, Crash, after_grace, deliver, refund_plan, run_step, slash_plan, state_of

pytestmark = pytest.mark.evm

PRICE = Decimal("0.5")
ETH = 10**18


@pytest.fixture
def extra_settings() -> dict[str, Any]:
    return {}


@pytest.fixture
def settings_overrides(tester_chain: Chain, extra_settings: dict[str, Any]) -> dict[str, Any]:
    return {
        "enabled_rails": ["ledger", "evm"],
        "evm_rpc_url": "http://in-process.invalid",
        "evm_operator_key": tester_chain.operator.key.hex(),
        "evm_contract_address": tester_chain.escrow,
        "workers_enabled": False,
        **extra_settings,
    }


@pytest.fixture
def rail_clients_factory(tester_chain: Chain) -> Any:
    return lambda settings: RailClients(settings, evm=tester_chain.gateway())


async def profiles(api: Any, pact: Any, chain: Chain) -> None:
    await put_profile(api, pact.buyer.public_key_b58, "evm", {"evm_address": chain.buyer.address})
    await put_profile(
        api, pact.provider.public_key_b58, "evm", {"evm_address": chain.seller.address}
    )


async def locked(api: Any, pact: Any, chain: Chain, **accept: Any) -> dict[str, Any]:
    await profiles(api, pact, chain)
    response = await api.create(pact.accept(price=PRICE, **accept), rail="evm")
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    assert body["state"] == "locked"
    return body


def escrow_id(app: Any, chain: Chain, body: dict[str, Any]) -> str:
    gateway = app.state.settlement.rail_clients.evm()
    return str(gateway.escrow_id(body["intent_id"], chain.buyer.address, chain.seller.address))


async def test_accept_on_evm_locks_the_price_in_the_escrow_contract(
    api: Any, pact: Any, tester_chain: Chain, app: Any
) -> None:
    body = await locked(api, pact, tester_chain)
    gateway = app.state.settlement.rail_clients.evm()
    state = await gateway.get_escrow(escrow_id(app, tester_chain, body))
    assert state.status is EscrowStatus.LOCKED
    assert state.amount_wei == ETH // 2
    assert state.beneficiary == tester_chain.buyer.address
    assert await tester_chain.balance(tester_chain.escrow) == ETH // 2


async def test_a_seller_without_an_address_is_refused_and_nothing_is_sent(
    api: Any, pact: Any, tester_chain: Chain
) -> None:
    await put_profile(
        api, pact.buyer.public_key_b58, "evm", {"evm_address": tester_chain.buyer.address}
    )
    nonce = await tester_chain.w3.eth.get_transaction_count(tester_chain.operator.address)
    response = await api.create(pact.accept(price=PRICE), rail="evm")
    assert response.status_code == 422
    assert response.json()["code"] == "MISSING_REQUIRED_CREDENTIALS"
    assert await tester_chain.w3.eth.get_transaction_count(tester_chain.operator.address) == nonce


@pytest.mark.parametrize("extra_settings", [{"require_seller_bond": True}])
async def test_release_pays_the_seller_the_price_and_its_bond_back(
    api: Any, pact: Any, tester_chain: Chain, app: Any
) -> None:
    chain = tester_chain
    body = await locked(api, pact, chain, bond=Decimal("0.25"))
    assert body["bond_locked"] == "0.25"
    maker, settings = app.state.settlement.sessionmaker, app.state.settlement.settings
    eid = escrow_id(app, chain, body)
    assert (await app.state.settlement.rail_clients.evm().get_escrow(eid)).bond_wei == ETH // 4
    seller_before = await chain.balance(chain.seller)
    await deliver(maker, body["intent_id"])
    outcome = await run_step(
        maker, settings, body["intent_id"], RELEASE, clients=app.state.settlement.rail_clients
    )
    assert outcome.status == "succeeded"
    assert await state_of(maker, body["intent_id"]) == (
        "released",
        ["lock:succeeded", "release:succeeded"],
    )
    assert await chain.balance(chain.seller) == seller_before + ETH // 2 + ETH // 4
    assert (
        await app.state.settlement.rail_clients.evm().get_escrow(eid)
    ).status is EscrowStatus.RELEASED


async def test_refund_returns_the_price_to_the_buyer(
    api: Any, pact: Any, tester_chain: Chain, app: Any
) -> None:
    chain = tester_chain
    body = await locked(api, pact, chain)
    buyer_before = await chain.balance(chain.buyer)
    outcome = await run_step(
        app.state.settlement.sessionmaker,
        app.state.settlement.settings,
        body["intent_id"],
        refund_plan(),
        clients=app.state.settlement.rail_clients,
    )
    assert outcome.status == "succeeded"
    assert await chain.balance(chain.buyer) == buyer_before + ETH // 2
    eid = escrow_id(app, chain, body)
    assert (
        await app.state.settlement.rail_clients.evm().get_escrow(eid)
    ).status is EscrowStatus.REFUNDED


@pytest.mark.parametrize("extra_settings", [{"require_seller_bond": True}])
async def test_slash_pays_the_sellers_bond_to_the_buyer(
    api: Any, pact: Any, tester_chain: Chain, app: Any
) -> None:
    chain = tester_chain
    body = await locked(api, pact, chain, bond=Decimal("0.25"))
    buyer_before = await chain.balance(chain.buyer)
    outcome = await run_step(
        app.state.settlement.sessionmaker,
        app.state.settlement.settings,
        body["intent_id"],
        slash_plan(),
        clients=app.state.settlement.rail_clients,
    )
    assert outcome.status == "succeeded"
    assert await chain.balance(chain.buyer) == buyer_before + ETH // 2 + ETH // 4


@pytest.mark.parametrize("when", ["after", "before"])
async def test_a_crash_around_the_lock_transaction_is_resolved_by_the_reconciler(
    api: Any,
    pact: Any,
    tester_chain: Chain,
    app: Any,
    monkeypatch: pytest.MonkeyPatch,
    when: str,
) -> None:
    chain = tester_chain
    await profiles(api, pact, chain)
    real_lock = EvmEscrowRail.lock
    crashes = [when]

    async def dying_lock(self: EvmEscrowRail, settlement: Any, *, idempotency_key: str) -> Any:
        if crashes and crashes[0] == "before":
            crashes.clear()
            raise Crash
        result = await real_lock(self, settlement, idempotency_key=idempotency_key)
        if crashes:
            crashes.clear()
            raise Crash
        return result

    monkeypatch.setattr(EvmEscrowRail, "lock", dying_lock)
    accept = pact.accept(price=PRICE)
    intent_id = accept["message"]["intent_id"]
    with pytest.raises(Crash):
        await api.create(accept, rail="evm")
    maker = app.state.settlement.sessionmaker
    assert await state_of(maker, intent_id) == ("pending", ["lock:pending"])
    escrowed = ETH // 2 if when == "after" else 0
    assert await chain.balance(chain.escrow) == escrowed

    reconciler = Reconciler(
        maker,
        settings=app.state.settlement.settings,
        metrics=app.state.settlement.metrics,
        clients=app.state.settlement.rail_clients,
    )
    assert await reconciler.run_once(now=after_grace(app.state.settlement.settings)) == 1
    assert await state_of(maker, intent_id) == ("locked", ["lock:succeeded"])
    assert await chain.balance(chain.escrow) == ETH // 2  # exactly one lock
    body = await api.settlement(intent_id)
    events = await app.state.settlement.rail_clients.evm().find_events(escrow_id(app, chain, body))
    assert [e.name for e in events] == ["Locked"]


# ---------------------------------------------------------------- through the delivery API


async def test_commit_reveal_then_the_sweeper_releases_on_chain(
    api: Any, pact: Any, tester_chain: Chain, app: Any, clock: Any
) -> None:
    chain = tester_chain
    body = await locked(api, pact, chain)
    intent_id = body["intent_id"]
    await lifecycle.commit(api, pact, intent_id)
    revealed = await lifecycle.reveal(api, pact, intent_id)
    assert revealed.json()["state"] == "delivered", revealed.text
    seller_before = await chain.balance(chain.seller)
    clock.offset_ms = 6_000
    report = await lifecycle.sweeper(app).run_once()
    assert report.ended == {intent_id: "released"}
    assert await chain.balance(chain.seller) == seller_before + ETH // 2
    eid = escrow_id(app, chain, body)
    assert (
        await app.state.settlement.rail_clients.evm().get_escrow(eid)
    ).status is EscrowStatus.RELEASED


@pytest.mark.parametrize("extra_settings", [{"require_seller_bond": True}])
async def test_a_missed_delivery_deadline_slashes_the_bond_to_the_buyer_on_chain(
    api: Any, pact: Any, tester_chain: Chain, app: Any, clock: Any
) -> None:
    chain = tester_chain
    body = await locked(api, pact, chain, bond=Decimal("0.25"))
    await lifecycle.commit(api, pact, body["intent_id"])  # a promise to deliver, then silence
    buyer_before = await chain.balance(chain.buyer)
    clock.offset_ms = 31_000  # the ACCEPT's delivery deadline is 30 s away
    report = await lifecycle.sweeper(app).run_once()
    assert report.ended == {body["intent_id"]: "slashed"}
    final = await api.settlement(body["intent_id"])
    assert final["failure_code"] == "DELIVERY_DEADLINE_MISSED"
    assert await chain.balance(chain.buyer) == buyer_before + ETH // 2 + ETH // 4
    eid = escrow_id(app, chain, body)
    assert (
        await app.state.settlement.rail_clients.evm().get_escrow(eid)
    ).status is EscrowStatus.SLASHED
