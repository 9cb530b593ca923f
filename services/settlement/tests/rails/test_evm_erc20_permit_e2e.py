"""A buyer funds an ``evm-erc20`` lock with its own EIP-2612 permit, through the settlement
API on anvil: the buyer's key signs the permit (eth_account's typed-data signing), the request
carries it, the operator relays it in ``lockWithPermit`` and pays the gas. A permit that could
not fund the lock (another owner, a value that is not the amount, expired, a signature that is
not the owner's, a rail that takes no permit) is a 422 problem and nothing is recorded or
locked: the same request with a good permit then succeeds."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from fixtures.rails import ANVIL_CHAIN_ID, Chain, anvil_rail_settings, put_profile
from pact_settlement.rails.bindings import RailBinding
from pact_settlement.rails.evm.results import EscrowStatus
from pact_settlement.settlements.lookup import find_settlement
from pact_settlement.settlements.repository import SettlementRepository

from .flow import RELEASE, deliver, run_step

pytestmark = pytest.mark.evm

USDC = 10**6
PRICE = Decimal("1.5")
AMOUNT = 1_500_000
BOND = Decimal("0.25")


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
        evm_poll_interval_s=0.05,
        require_seller_bond=True,
        workers_enabled=False,
    )


async def signed_permit(
    chain: Chain, signer: LocalAccount, *, value: int, deadline: int, owner: str | None = None
) -> dict[str, Any]:
    """``signer``'s EIP-2612 permit (typed data signed with its key) letting the token escrow
    pull ``value``, as the request carries it; ``owner`` claims another owner than the signer."""
    assert chain.token_escrow is not None
    permit = await chain.permit(signer, chain.token_escrow, value, deadline)
    return {
        "owner": owner or signer.address,
        "value": str(value),
        "deadline": deadline,
        "v": permit.v,
        "r": "0x" + permit.r.hex(),
        "s": "0x" + permit.s.hex(),
    }


async def test_a_permit_funds_the_lock_from_the_buyer_and_bad_ones_lock_nothing(
    api: Any, pact: Any, anvil_chain: Chain, app: Any
) -> None:
    chain = anvil_chain
    await put_profile(api, pact.buyer.public_key_b58, "evm", {"evm_address": chain.buyer.address})
    await put_profile(
        api, pact.provider.public_key_b58, "evm", {"evm_address": chain.seller.address}
    )
    accept = pact.accept(price=PRICE, bond=BOND)
    intent_id = accept["message"]["intent_id"]
    later = int(time.time()) + 3600
    buyer_before = await chain.token_balance(chain.buyer)
    operator_before = await chain.token_balance(chain.operator)

    refusals = {
        "another owner": await signed_permit(chain, chain.stranger, value=AMOUNT, deadline=later),
        "value below the amount": await signed_permit(
            chain, chain.buyer, value=AMOUNT - 1, deadline=later
        ),
        "value above the amount": await signed_permit(
            chain, chain.buyer, value=AMOUNT + 1, deadline=later
        ),
        "expired": await signed_permit(
            chain, chain.buyer, value=AMOUNT, deadline=int(time.time()) - 60
        ),
        "not the owner's signature": await signed_permit(
            chain, chain.stranger, value=AMOUNT, deadline=later, owner=chain.buyer.address
        ),
    }
    tampered = await signed_permit(chain, chain.buyer, value=AMOUNT, deadline=later)
    refusals["tampered deadline"] = {**tampered, "deadline": later + 1}
    for what, permit in refusals.items():
        r = await api.create(accept, body={"accept": accept, "permit": permit})
        assert r.status_code == 422, (what, r.text)
        assert r.json()["code"] == "PERMIT_INVALID", (what, r.text)
    on_ledger = await api.create(
        accept, body={"accept": accept, "rail": "ledger", "permit": tampered}
    )
    assert (on_ledger.status_code, on_ledger.json()["code"]) == (422, "PERMIT_INVALID")
    malformed = await api.create(
        accept, body={"accept": accept, "permit": {**tampered, "r": "0xnothex"}}
    )
    assert (malformed.status_code, malformed.json()["code"]) == (422, "SCHEMA_VALIDATION_FAILED")

    # nothing was recorded or locked by any of them
    missing = await api.client.get(f"/v1/settlements/{intent_id}", headers=api.provider_auth)
    assert missing.status_code == 404
    assert await chain.token_balance(chain.buyer) == buyer_before
    assert await chain.token_balance(chain.operator) == operator_before

    # the same request with the buyer's good permit
    good = await signed_permit(chain, chain.buyer, value=AMOUNT, deadline=later)
    created = await api.create(accept, body={"accept": accept, "permit": good})
    assert created.status_code == 201, created.text
    assert (created.json()["rail"], created.json()["state"]) == ("evm-erc20", "locked")
    # the amount came from the buyer, the bond from the operator's custody; no buyer gas
    assert await chain.token_balance(chain.buyer) == buyer_before - AMOUNT
    assert await chain.token_balance(chain.operator) == operator_before - USDC // 4
    assert await chain.w3.eth.get_transaction_count(chain.buyer.address) == 0

    maker = app.state.settlement.sessionmaker
    async with maker() as session:
        row = await find_settlement(SettlementRepository.from_session(session), intent_id)
        assert row is not None
        binding = await session.get(RailBinding, row.id)
        assert binding is not None
        escrow_id = binding.params["escrow_id"]
        assert binding.params["permit"]["owner"] == chain.buyer.address
    gateway = app.state.settlement.rail_clients.evm_erc20()
    state = await gateway.get_escrow(escrow_id)
    assert (state.status, state.buyer, state.amount_wei, state.bond_wei) == (
        EscrowStatus.LOCKED, chain.buyer.address, AMOUNT, USDC // 4,
    )  # fmt: skip
    replay = await api.create(accept, body={"accept": accept, "permit": good})
    assert (replay.status_code, replay.json()["id"]) == (200, created.json()["id"])

    # and it settles like any lock: the seller is paid amount + bond
    seller_before = await chain.token_balance(chain.seller)
    settings, clients = app.state.settlement.settings, app.state.settlement.rail_clients
    await deliver(maker, intent_id)
    outcome = await run_step(maker, settings, intent_id, RELEASE, clients=clients)
    assert outcome.status == "succeeded"
    assert await chain.token_balance(chain.seller) == seller_before + AMOUNT + USDC // 4


async def test_a_permit_from_a_buyer_without_the_tokens_is_refused_before_anything_is_locked(
    api: Any, pact: Any, anvil_chain: Chain
) -> None:
    chain = anvil_chain  # the stranger holds no test tokens
    await put_profile(
        api, pact.buyer.public_key_b58, "evm", {"evm_address": chain.stranger.address}
    )
    await put_profile(
        api, pact.provider.public_key_b58, "evm", {"evm_address": chain.seller.address}
    )
    accept = pact.accept(price=PRICE, bond=BOND)
    permit = await signed_permit(
        chain, chain.stranger, value=AMOUNT, deadline=int(time.time()) + 3600
    )
    r = await api.create(accept, body={"accept": accept, "permit": permit})
    assert (r.status_code, r.json()["code"]) == (422, "PERMIT_INVALID"), r.text
    assert "holds 0 base units" in r.json()["detail"]
    missing = await api.client.get(
        f"/v1/settlements/{accept['message']['intent_id']}", headers=api.provider_auth
    )
    assert missing.status_code == 404
