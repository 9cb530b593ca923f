"""EvmEscrowRail called directly (the Rail protocol) on web3's in-process eth-tester chain."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal
from typing import Any, cast

import pytest
from fixtures.rails import Chain, insert_settlement, profiles_of, rail_view_of
from pact_schema import Keypair
from pact_schema.clock import utcnow
from pact_schema.codes import FailureCode
from pact_settlement.accounts.models import PaymentProfile
from pact_settlement.config import SettlementSettings
from pact_settlement.rails.base import RailError, RailOpStatus, RailRefusedError, RailStep
from pact_settlement.rails.bindings import RailBinding
from pact_settlement.rails.evm.gateway import EscrowGateway
from pact_settlement.rails.evm.ids import intent_id_to_bytes32
from pact_settlement.rails.evm.rail import EvmEscrowRail, units_to_wei
from pact_settlement.rails.evm.results import EscrowStatus
from pact_settlement.rails.minor_units import AmountError
from pact_settlement.rails.repository import rail_idempotency_key
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from web3 import AsyncWeb3
from web3.providers import AsyncHTTPProvider

pytestmark = pytest.mark.evm

BUYER = Keypair(bytes(range(33, 65))).public_key_b58
SELLER = Keypair(bytes(range(1, 33))).public_key_b58
ETH = 10**18


@pytest.fixture(params=[pytest.param("sqlite", id="sqlite")])
def backend(request: pytest.FixtureRequest) -> str:
    """The rail logic does not depend on the database: SQLite only (the API tests do both)."""
    return str(request.param)


@pytest.fixture
def settings_overrides(tester_chain: Chain) -> dict[str, Any]:
    return {
        "enabled_rails": ["ledger", "evm"],
        "evm_rpc_url": "http://in-process.invalid",
        "evm_operator_key": tester_chain.operator.key.hex(),
        "evm_contract_address": tester_chain.escrow,
    }


def key(settlement: Any, step: str) -> str:
    return rail_idempotency_key(settlement.id, RailStep(step))


class Harness:
    def __init__(
        self, maker: async_sessionmaker[AsyncSession], settings: SettlementSettings, chain: Chain
    ) -> None:
        self.maker = maker
        self.sessions: list[AsyncSession] = []
        self.settings = settings
        self.chain = chain
        self.gateway = chain.gateway()

    async def profiles(self, session: AsyncSession, *, seller: bool = True) -> None:
        now = utcnow()
        rows = [(BUYER, self.chain.buyer.address)]
        if seller:
            rows.append((SELLER, self.chain.seller.address))
        for agent, address in rows:
            if await session.get(PaymentProfile, (agent, "evm")) is None:
                session.add(
                    PaymentProfile(
                        agent_id=agent,
                        rail="evm",
                        evm_address=address,
                        created_at=now,
                        updated_at=now,
                    )
                )
        await session.flush()

    async def prepared(
        self, amount: str = "0.5", *, bond: str = "0", settings: SettlementSettings | None = None
    ) -> tuple[EvmEscrowRail, Any]:
        session = self.maker()
        self.sessions.append(session)
        await self.profiles(session)
        settlement = await insert_settlement(
            session, rail="evm", amount=amount, bond_locked=bond, buyer=BUYER, seller=SELLER
        )
        rail = EvmEscrowRail(session, (settings or self.settings).evm, self.gateway)
        await rail.prepare(rail_view_of(settlement), await profiles_of(session, settlement))
        await session.commit()
        return rail, settlement

    async def binding(self, settlement: Any) -> RailBinding:
        async with self.maker() as session:
            row = await session.get(RailBinding, settlement.id)
        assert row is not None
        return row


@pytest.fixture
async def harness(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: SettlementSettings,
    tester_chain: Chain,
) -> AsyncIterator[Harness]:
    harness = Harness(sessionmaker, settings, tester_chain)
    yield harness
    for session in harness.sessions:
        await session.close()


# ------------------------------------------------------------------------------- amounts


def test_units_convert_to_wei_exactly_or_not_at_all() -> None:
    assert units_to_wei(Decimal("0.00008"), 10**18) == 80_000_000_000_000
    assert units_to_wei(Decimal("0.000000000000000001"), 10**18) == 1
    assert units_to_wei(Decimal("1.5"), 10**9) == 1_500_000_000
    with pytest.raises(AmountError):
        units_to_wei(Decimal("0.0000000001"), 10**9)  # a tenth of a wei
    with pytest.raises(AmountError):
        units_to_wei(0.5, 10**18)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------- prepare


async def test_prepare_snapshots_addresses_deadline_and_wei(harness: Harness) -> None:
    _, settlement = await harness.prepared("0.5", bond="0.25")
    binding = await harness.binding(settlement)
    p = binding.params
    chain = harness.chain
    assert (p["buyer"], p["seller"], p["beneficiary"]) == (
        chain.buyer.address,
        chain.seller.address,
        chain.buyer.address,  # a slashed bond goes to the buyer (docs/protocol.md)
    )
    assert (p["amount_wei"], p["bond_wei"]) == (str(ETH // 2), str(ETH // 4))
    expected = (
        settlement.delivery_deadline_at
        + timedelta(milliseconds=settlement.challenge_window_ms)
        + timedelta(seconds=harness.settings.evm.deadline_grace_s)
    )
    assert p["deadline_s"] == math.ceil(expected.timestamp())
    assert binding.external_id == harness.gateway.escrow_id(
        settlement.intent_id, chain.buyer.address, chain.seller.address
    )


async def test_a_seller_without_an_evm_address_is_refused(harness: Harness) -> None:
    async with harness.maker() as session:
        await harness.profiles(session, seller=False)
        settlement = await insert_settlement(
            session, rail="evm", amount="1", buyer=BUYER, seller=SELLER
        )
        with pytest.raises(RailRefusedError) as info:
            await EvmEscrowRail(session, harness.settings.evm, harness.gateway).prepare(
                rail_view_of(settlement), await profiles_of(session, settlement)
            )
    assert info.value.code == FailureCode.MISSING_REQUIRED_CREDENTIALS
    assert "seller" in info.value.detail


async def test_an_amount_needing_a_fraction_of_a_wei_is_refused(harness: Harness) -> None:
    gwei_units = harness.settings.model_copy(
        update={"evm": harness.settings.evm.model_copy(update={"wei_per_unit": 10**9})}
    )
    with pytest.raises(RailRefusedError) as info:
        await harness.prepared("0.0000000001", settings=gwei_units)
    assert info.value.code == FailureCode.AMOUNT_NOT_IN_RAIL_UNITS


# ---------------------------------------------------------------------------------- steps


async def test_lock_escrows_the_amount_and_posts_the_bond(harness: Harness) -> None:
    chain = harness.chain
    rail, settlement = await harness.prepared("0.5", bond="0.25")
    result = await rail.lock(rail_view_of(settlement), idempotency_key=key(settlement, "lock"))
    assert result.status is RailOpStatus.SUCCEEDED
    binding = await harness.binding(settlement)
    state = await harness.gateway.get_escrow(binding.params["escrow_id"])
    assert state.status is EscrowStatus.LOCKED
    assert (state.amount_wei, state.bond_wei) == (ETH // 2, ETH // 4)
    assert (state.buyer, state.seller, state.beneficiary) == (
        chain.buyer.address,
        chain.seller.address,
        chain.buyer.address,
    )
    assert await chain.balance(chain.escrow) == ETH * 3 // 4
    # A retried lock converges: no second escrow, no second bond.
    again = await rail.lock(rail_view_of(settlement), idempotency_key=key(settlement, "lock"))
    assert again.detail["already_done"] is True
    assert await chain.balance(chain.escrow) == ETH * 3 // 4
    names = [e.name for e in await harness.gateway.find_events(binding.params["escrow_id"])]
    assert names == ["Locked", "BondPosted"]


async def test_release_pays_the_seller_amount_and_bond(harness: Harness) -> None:
    chain = harness.chain
    rail, settlement = await harness.prepared("1", bond="0.5")
    view = rail_view_of(settlement)
    await rail.lock(view, idempotency_key=key(settlement, "lock"))
    seller_before = await chain.balance(chain.seller)
    assert (await rail.status(view, idempotency_key=key(settlement, "release"))).status is (
        RailOpStatus.NOT_FOUND
    )
    released = await rail.release(view, idempotency_key=key(settlement, "release"))
    assert released.detail["escrow_status"] == "RELEASED"
    assert await chain.balance(chain.seller) == seller_before + ETH + ETH // 2
    status = await rail.status(view, idempotency_key=key(settlement, "release"))
    assert status.status is RailOpStatus.SUCCEEDED
    # Refund after release is a definite conflict, not something to retry.
    with pytest.raises(RailError) as info:
        await rail.refund(view, idempotency_key=key(settlement, "refund"))
    assert not info.value.retryable
    refund_status = await rail.status(view, idempotency_key=key(settlement, "refund"))
    assert refund_status.status is RailOpStatus.FAILED


async def test_refund_returns_the_amount_to_the_buyer_and_the_bond_to_the_seller(
    harness: Harness,
) -> None:
    chain = harness.chain
    rail, settlement = await harness.prepared("1", bond="0.5")
    view = rail_view_of(settlement)
    await rail.lock(view, idempotency_key=key(settlement, "lock"))
    buyer_before = await chain.balance(chain.buyer)
    seller_before = await chain.balance(chain.seller)
    await rail.refund(view, idempotency_key=key(settlement, "refund"))
    assert await chain.balance(chain.buyer) == buyer_before + ETH
    assert await chain.balance(chain.seller) == seller_before + ETH // 2
    assert (await rail.status(view, idempotency_key=key(settlement, "refund"))).status is (
        RailOpStatus.SUCCEEDED
    )


async def test_slash_pays_the_buyer_its_amount_and_the_sellers_bond(harness: Harness) -> None:
    chain = harness.chain
    rail, settlement = await harness.prepared("1", bond="0.5")
    view = rail_view_of(settlement)
    await rail.lock(view, idempotency_key=key(settlement, "lock"))
    buyer_before = await chain.balance(chain.buyer)
    seller_before = await chain.balance(chain.seller)
    slashed = await rail.slash(view, idempotency_key=key(settlement, "slash"))
    assert slashed.detail["escrow_status"] == "SLASHED"
    assert await chain.balance(chain.buyer) == buyer_before + ETH + ETH // 2
    assert await chain.balance(chain.seller) == seller_before
    again = await rail.slash(view, idempotency_key=key(settlement, "slash"))
    assert again.detail["already_done"] is True


async def test_lock_status_reads_the_contract_after_a_lost_answer(harness: Harness) -> None:
    chain = harness.chain
    rail, settlement = await harness.prepared("0.5")
    view = rail_view_of(settlement)
    assert (await rail.status(view, idempotency_key=key(settlement, "lock"))).status is (
        RailOpStatus.NOT_FOUND
    )
    p = (await harness.binding(settlement)).params
    # The transaction was mined; the process died before it heard back.
    await harness.gateway.lock_for(
        settlement.intent_id, p["buyer"], p["seller"], p["beneficiary"],
        int(p["deadline_s"]), int(p["amount_wei"]),
    )  # fmt: skip
    status = await rail.status(view, idempotency_key=key(settlement, "lock"))
    assert status.status is RailOpStatus.SUCCEEDED
    replay = await rail.lock(view, idempotency_key=key(settlement, "lock"))
    assert replay.detail["already_done"] is True
    assert await chain.balance(chain.escrow) == ETH // 2


async def test_an_escrow_the_buyer_locked_itself_is_adopted(harness: Harness) -> None:
    """Non-custodial: the buyer's own ``lock`` with our terms; the operator sends nothing."""
    chain = harness.chain
    rail, settlement = await harness.prepared("0.5")
    p = (await harness.binding(settlement)).params
    w3 = chain.w3
    fn = harness.gateway.contract.functions.lock(
        intent_id_to_bytes32(settlement.intent_id),
        chain.seller.address,
        chain.buyer.address,
        int(p["deadline_s"]),
    )
    tx = await fn.build_transaction(
        {
            "from": chain.buyer.address,
            "value": ETH // 2,
            "nonce": await w3.eth.get_transaction_count(chain.buyer.address),
            "gas": 300_000,
            "chainId": await w3.eth.chain_id,
        }
    )
    signed = chain.buyer.sign_transaction(cast(Any, tx))
    receipt = await w3.eth.wait_for_transaction_receipt(
        await w3.eth.send_raw_transaction(signed.raw_transaction)
    )
    assert receipt["status"] == 1
    operator_nonce = await w3.eth.get_transaction_count(chain.operator.address)
    result = await rail.lock(rail_view_of(settlement), idempotency_key=key(settlement, "lock"))
    assert result.detail["existing_escrow"] is True
    assert await w3.eth.get_transaction_count(chain.operator.address) == operator_nonce
    await rail.release(rail_view_of(settlement), idempotency_key=key(settlement, "release"))
    assert (await harness.gateway.get_escrow(p["escrow_id"])).status is EscrowStatus.RELEASED


async def test_an_unreachable_node_keeps_the_step_pending(harness: Harness) -> None:
    rail, settlement = await harness.prepared("0.5")
    provider = AsyncHTTPProvider("http://127.0.0.1:9", request_kwargs={"timeout": 1})
    dead = EscrowGateway(
        AsyncWeb3(provider), harness.chain.escrow, harness.chain.operator, receipt_timeout_s=1
    )
    offline = EvmEscrowRail(rail.session, harness.settings.evm, dead)
    try:
        with pytest.raises(RailError) as info:
            await offline.lock(rail_view_of(settlement), idempotency_key=key(settlement, "lock"))
    finally:
        await provider.disconnect()
    assert info.value.retryable
