"""The ERC-20 escrow rail (``evm-erc20``) called directly, on anvil: a USDC-like test token
(6 decimals, EIP-2612 permit) in ``PactTokenEscrow``; and partial release on both escrows."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from decimal import Context, Decimal
from typing import Any

import pytest
from fixtures.rails import (
    TEST_TOKEN_ARTIFACT,
    Chain,
    anvil_rail_settings,
    insert_settlement,
    profiles_of,
    rail_view_of,
)
from hypothesis import given
from hypothesis import strategies as st
from pact_schema import Keypair
from pact_schema.clock import utcnow
from pact_schema.codes import FailureCode
from pact_settlement.accounts.models import PaymentProfile
from pact_settlement.config import SettlementSettings
from pact_settlement.rails.base import RailError, RailOpStatus, RailRefusedError, RailStep
from pact_settlement.rails.bindings import RailBinding
from pact_settlement.rails.evm.ids import intent_id_to_bytes32
from pact_settlement.rails.evm.rail import PARTIAL_RELEASE_KEY_SUFFIX, EvmEscrowRail, units_to_wei
from pact_settlement.rails.evm.results import EscrowStatus
from pact_settlement.rails.evm.sender import TxSender
from pact_settlement.rails.evm.token_rail import EvmTokenEscrowRail
from pact_settlement.rails.minor_units import AmountError
from pact_settlement.rails.repository import rail_idempotency_key
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

pytestmark = pytest.mark.evm

BUYER = Keypair(bytes(range(33, 65))).public_key_b58
SELLER = Keypair(bytes(range(1, 33))).public_key_b58
USDC = 10**6


@pytest.fixture(params=[pytest.param("sqlite", id="sqlite")])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def settings_overrides(anvil_url: str, anvil_chain: Chain) -> dict[str, Any]:
    return anvil_rail_settings(anvil_url, anvil_chain)


def key(settlement: Any, step: str) -> str:
    return rail_idempotency_key(settlement.id, RailStep(step))


def partial_key(settlement: Any) -> str:
    return f"settlement-{settlement.id}-{PARTIAL_RELEASE_KEY_SUFFIX}"


class Harness:
    def __init__(
        self, maker: async_sessionmaker[AsyncSession], settings: SettlementSettings, chain: Chain
    ) -> None:
        self.maker = maker
        self.sessions: list[AsyncSession] = []
        self.settings = settings
        self.chain = chain
        self.gateway = chain.token_gateway()
        self.native = chain.gateway()

    async def prepared(
        self, amount: str = "1.5", *, bond: str = "0", native: bool = False
    ) -> tuple[EvmEscrowRail, Any]:
        session = self.maker()
        self.sessions.append(session)
        now = utcnow()
        for agent, address in (
            (BUYER, self.chain.buyer.address),
            (SELLER, self.chain.seller.address),
        ):
            if await session.get(PaymentProfile, (agent, "evm")) is None:
                session.add(
                    PaymentProfile(
                        agent_id=agent, rail="evm", evm_address=address,
                        created_at=now, updated_at=now,
                    )
                )  # fmt: skip
        await session.flush()
        rail_name = "evm" if native else "evm-erc20"
        settlement = await insert_settlement(
            session, rail=rail_name, amount=amount, bond_locked=bond, buyer=BUYER, seller=SELLER
        )
        rail: EvmEscrowRail = (
            EvmEscrowRail(session, self.settings.evm, self.native)
            if native
            else EvmTokenEscrowRail(session, self.settings.evm, self.gateway)
        )
        await rail.prepare(rail_view_of(settlement), await profiles_of(session, settlement))
        await session.commit()
        return rail, settlement

    async def escrow_id(self, settlement: Any) -> str:
        async with self.maker() as session:
            row = await session.get(RailBinding, settlement.id)
        assert row is not None
        return str(row.params["escrow_id"])


@pytest.fixture
async def harness(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: SettlementSettings,
    anvil_chain: Chain,
) -> AsyncIterator[Harness]:
    harness = Harness(sessionmaker, settings, anvil_chain)
    yield harness
    for session in harness.sessions:
        await session.close()


async def test_the_rail_names_its_asset_and_refuses_a_price_below_the_tokens_unit(
    harness: Harness,
) -> None:
    rail, _ = await harness.prepared("0.000001")  # one base unit: fine
    assert rail.asset == "USDT6"
    assert EvmEscrowRail(rail.session, harness.settings.evm, harness.native).asset == "ETH"
    with pytest.raises(RailRefusedError) as info:
        await harness.prepared("0.0000015")
    assert info.value.code == FailureCode.AMOUNT_NOT_IN_RAIL_UNITS
    assert "USDT6" in info.value.detail


async def test_lock_then_release_moves_the_token_not_ether(harness: Harness) -> None:
    chain = harness.chain
    rail, settlement = await harness.prepared("1.5", bond="0.25")
    view = rail_view_of(settlement)
    operator_before = await chain.token_balance(chain.operator)
    locked = await rail.lock(view, idempotency_key=key(settlement, "lock"))
    assert locked.status is RailOpStatus.SUCCEEDED
    assert await chain.token_balance(chain.token_escrow or "") == 1_750_000
    assert await chain.token_balance(chain.operator) == operator_before - 1_750_000
    state = await harness.gateway.get_escrow(await harness.escrow_id(settlement))
    assert (state.token, state.amount_wei, state.bond_wei) == (chain.token, 1_500_000, 250_000)
    again = await rail.lock(view, idempotency_key=key(settlement, "lock"))
    assert again.detail["already_done"] is True
    assert await chain.token_balance(chain.token_escrow or "") == 1_750_000

    seller_before = await chain.token_balance(chain.seller)
    released = await rail.release(view, idempotency_key=key(settlement, "release"))
    assert released.detail["escrow_status"] == "RELEASED"
    assert await chain.token_balance(chain.seller) == seller_before + 1_750_000
    status = await rail.status(view, idempotency_key=key(settlement, "release"))
    assert status.status is RailOpStatus.SUCCEEDED


async def test_refund_and_slash_return_the_buyers_tokens(harness: Harness) -> None:
    chain = harness.chain
    buyer_before = await chain.token_balance(chain.buyer)
    rail, refunded = await harness.prepared("2", bond="0.5")
    await rail.lock(rail_view_of(refunded), idempotency_key=key(refunded, "lock"))
    await rail.refund(rail_view_of(refunded), idempotency_key=key(refunded, "refund"))
    assert await chain.token_balance(chain.buyer) == buyer_before + 2 * USDC
    rail, slashed = await harness.prepared("1", bond="0.5")
    await rail.lock(rail_view_of(slashed), idempotency_key=key(slashed, "lock"))
    await rail.slash(rail_view_of(slashed), idempotency_key=key(slashed, "slash"))
    # the buyer gets its amount back and, as the beneficiary, the seller's bond
    assert await chain.token_balance(chain.buyer) == buyer_before + 2 * USDC + USDC + USDC // 2
    # a refund asked of the slashed escrow is a conflict, never a second payment
    with pytest.raises(RailError) as info:
        await rail.refund(rail_view_of(slashed), idempotency_key=key(slashed, "refund"))
    assert info.value.code == FailureCode.FAILED_ESCROW


@pytest.mark.parametrize("native", [False, True], ids=["erc20", "native"])
async def test_partial_release_pays_the_seller_its_part_and_the_buyer_the_rest(
    harness: Harness, native: bool
) -> None:
    chain = harness.chain
    rail, settlement = await harness.prepared("1.5", bond="0.25", native=native)
    view = rail_view_of(settlement)
    await rail.lock(view, idempotency_key=key(settlement, "lock"))
    balance = chain.balance if native else chain.token_balance
    unit = 10**18 if native else USDC
    buyer_before, seller_before = await balance(chain.buyer), await balance(chain.seller)

    assert (await rail.status(view, idempotency_key=partial_key(settlement))).status is (
        RailOpStatus.NOT_FOUND
    )
    with pytest.raises(RailError):  # more than is held: nothing sent
        await rail.release_partial(view, Decimal("1.6"), partial_key(settlement))
    result = await rail.release_partial(view, Decimal("0.4"), partial_key(settlement))
    assert result.detail["escrow_status"] == "PARTIALLY_RELEASED"
    assert result.step is RailStep.RELEASE_PARTIAL  # the step the executor and the ledger name
    assert await balance(chain.seller) == seller_before + (4 * unit) // 10 + unit // 4
    assert await balance(chain.buyer) == buyer_before + (11 * unit) // 10
    # the same call again (a retry after a crash) converges without paying twice
    replay = await rail.release_partial(view, Decimal("0.4"), partial_key(settlement))
    assert replay.detail["already_done"] is True
    assert await balance(chain.seller) == seller_before + (4 * unit) // 10 + unit // 4
    status = await rail.status(view, idempotency_key=partial_key(settlement))
    assert (status.step, status.status) == (RailStep.RELEASE_PARTIAL, RailOpStatus.SUCCEEDED)
    # another split, or a full release, of the finished escrow is refused
    with pytest.raises(RailError):
        await rail.release_partial(view, Decimal("0.5"), partial_key(settlement))
    with pytest.raises(RailError):
        await rail.release(view, idempotency_key=key(settlement, "release"))
    assert (await rail.withdraw_for(chain.seller.address)).amount == 0  # nothing deferred


async def test_a_buyer_funds_a_lock_with_a_permit_signature_instead_of_an_approve(
    harness: Harness,
) -> None:
    chain = harness.chain
    gw = harness.gateway
    deadline = int(time.time()) + 3600
    permit = await chain.permit(chain.buyer, gw.address, 3 * USDC, deadline)
    buyer_before = await chain.token_balance(chain.buyer)
    locked = await gw.lock_with_permit(
        "permit-intent", chain.buyer.address, chain.seller.address, chain.buyer.address,
        deadline, 3 * USDC, permit,
    )  # fmt: skip
    assert locked.state.status is EscrowStatus.LOCKED
    assert await chain.token_balance(chain.buyer) == buyer_before - 3 * USDC
    # the buyer sent no transaction: its nonce is untouched
    assert await chain.w3.eth.get_transaction_count(chain.buyer.address) == 0
    # the same call again converges (AlreadyExists with the same terms)
    again = await gw.lock_with_permit(
        "permit-intent", chain.buyer.address, chain.seller.address, chain.buyer.address,
        deadline, 3 * USDC, permit,
    )  # fmt: skip
    assert again.already_done is True
    assert await chain.token_balance(chain.buyer) == buyer_before - 3 * USDC


@given(
    units=st.integers(min_value=1, max_value=10**30),
    decimals=st.integers(min_value=0, max_value=18),
    extra=st.integers(min_value=1, max_value=9),
)
def test_token_units_are_exact_or_refused(units: int, decimals: int, extra: int) -> None:
    """Any price with at most ``decimals`` places converts exactly and back; one more
    non-zero digit is never rounded into a unit."""
    exact = Context(prec=100)  # build the prices exactly (the default context keeps 28 digits)
    per_unit = 10**decimals
    price = Decimal(units).scaleb(-decimals, exact)
    assert units_to_wei(price, per_unit) == units
    assert Decimal(units_to_wei(price, per_unit)).scaleb(-decimals, exact) == price
    finer = exact.add(price, Decimal(extra).scaleb(-decimals - 1, exact))
    with pytest.raises(AmountError):
        units_to_wei(finer, per_unit)


async def test_a_buyer_made_escrow_in_another_token_is_never_adopted(harness: Harness) -> None:
    """A hostile buyer locks the escrow id first, with the right amount of a worthless token
    of its own, hoping the service adopts it as paid: the lock fails, nothing moves."""
    chain = harness.chain
    rail, settlement = await harness.prepared("1")
    params = (await _binding(harness, settlement)).params
    artifact = json.loads(TEST_TOKEN_ARTIFACT.read_text())
    factory = chain.w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    buyer_tx = TxSender(chain.w3, chain.buyer, poll_interval_s=0.02)
    deployed = await buyer_tx.send(factory.constructor("Worthless", "USDC"))
    worthless = chain.w3.eth.contract(address=deployed["contractAddress"], abi=artifact["abi"])
    await buyer_tx.send(worthless.functions.mint(chain.buyer.address, USDC))
    await buyer_tx.send(worthless.functions.approve(chain.token_escrow, USDC))
    escrow = harness.gateway.contract
    await buyer_tx.send(
        escrow.functions.lock(
            intent_id_to_bytes32(settlement.intent_id), worthless.address,
            chain.seller.address, chain.buyer.address, params["deadline_s"], USDC,
        )
    )  # fmt: skip
    operator_before = await chain.token_balance(chain.operator)
    with pytest.raises(RailError) as info:
        await rail.lock(rail_view_of(settlement), idempotency_key=key(settlement, "lock"))
    assert info.value.code == FailureCode.FAILED_ESCROW
    assert not info.value.retryable
    assert await chain.token_balance(chain.operator) == operator_before


async def test_an_operator_without_tokens_fails_the_lock_and_moves_nothing(
    harness: Harness,
) -> None:
    chain = harness.chain
    rail, settlement = await harness.prepared("2")
    balance = await chain.token_balance(chain.operator)
    token = chain.token_contract()
    await TxSender(chain.w3, chain.operator, poll_interval_s=0.02).send(
        token.functions.transfer(chain.stranger.address, balance - USDC)  # 1 left, 2 needed
    )
    with pytest.raises(RailError) as info:
        await rail.lock(rail_view_of(settlement), idempotency_key=key(settlement, "lock"))
    assert info.value.code == FailureCode.FAILED_ESCROW
    assert not info.value.retryable  # a lock that cannot be paid fails; nothing is pending
    assert await chain.token_balance(chain.operator) == USDC
    state = await harness.gateway.get_escrow(await harness.escrow_id(settlement))
    assert state.status is EscrowStatus.NONE


async def _binding(harness: Harness, settlement: Any) -> RailBinding:
    async with harness.maker() as session:
        row = await session.get(RailBinding, settlement.id)
    assert row is not None
    return row
