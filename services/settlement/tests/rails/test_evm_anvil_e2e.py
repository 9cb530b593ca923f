"""The EVM rail end to end over real JSON-RPC (anvil over HTTP): the app builds its gateway
from settings alone (RPC URL, operator key, contract address, chain id), as in production."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from fixtures.rails import ANVIL_CHAIN_ID, Chain, put_profile
from pact_settlement.rails.evm.results import EscrowStatus

from .flow import RELEASE, deliver, run_step, state_of

pytestmark = pytest.mark.evm

ETH = 10**18


@pytest.fixture(params=[pytest.param("postgres", id="postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def settings_overrides(anvil_url: str, anvil_chain: Chain) -> dict[str, Any]:
    return {
        "enabled_rails": ["ledger", "evm"],
        "default_rail": "evm",
        "evm_rpc_url": anvil_url,
        "evm_operator_key": anvil_chain.operator.key.hex(),
        "evm_contract_address": anvil_chain.escrow,
        "evm_chain_id": ANVIL_CHAIN_ID,
        "evm_confirmations": 1,
        "evm_poll_interval_s": 0.05,
        "require_seller_bond": True,
        "workers_enabled": False,
    }


async def test_accept_lock_deliver_release_on_a_json_rpc_node(
    api: Any, pact: Any, anvil_chain: Chain, app: Any
) -> None:
    chain = anvil_chain
    await put_profile(api, pact.buyer.public_key_b58, "evm", {"evm_address": chain.buyer.address})
    await put_profile(
        api, pact.provider.public_key_b58, "evm", {"evm_address": chain.seller.address}
    )
    rails = (await api.client.get("/v1/rails", headers=api.admin_auth)).json()
    assert rails["default_rail"] == "evm"

    accept = pact.accept(price=Decimal("0.5"), bond=Decimal("1"))
    response = await api.create(accept)  # no rail named: the default
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["rail"], body["state"], body["bond_locked"]) == ("evm", "locked", "1")

    gateway = app.state.settlement.rail_clients.evm()
    eid = gateway.escrow_id(body["intent_id"], chain.buyer.address, chain.seller.address)
    state = await gateway.get_escrow(eid)
    assert (state.status, state.amount_wei, state.bond_wei) == (
        EscrowStatus.LOCKED,
        ETH // 2,
        ETH,
    )
    seller_before = await chain.balance(chain.seller)

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
    assert (await gateway.get_escrow(eid)).status is EscrowStatus.RELEASED
    assert await chain.balance(chain.seller) == seller_before + ETH // 2 + ETH
    assert [e.name for e in await gateway.find_events(eid)] == ["Locked", "BondPosted", "Released"]
