"""EVM payouts on anvil, at the rail: what a seller can be paid out is the credit the escrow
deferred for its address (a push at release the chain could not make), paid by ``payOut``
exactly as asked, at most once per payout id, and looked up on chain by that id.

The deferred credit is made for real: the native seller is an address whose code reverts on
every call (``anvil_setCode``) while the escrow pays it; the ERC-20 seller is on the test
token's blacklist (USDC's). Both are made payable again before the payout.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest
from fixtures.rails import Chain, anvil_rail_settings
from pact_settlement.config import SettlementSettings
from pact_settlement.kit.errors import ProblemCode
from pact_settlement.kit.ids import new_id
from pact_settlement.rails.base import (
    CreditPayoutRail,
    RailError,
    RailOpStatus,
    RailPayout,
    RailRefusedError,
    RailStep,
)
from pact_settlement.rails.evm.gateway import EscrowGateway
from pact_settlement.rails.evm.rail import EvmEscrowRail
from pact_settlement.rails.evm.token_rail import EvmTokenEscrowRail
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

pytestmark = pytest.mark.evm

ETH = 10**18
USDC = 10**6


@pytest.fixture(params=[pytest.param("sqlite", id="sqlite")])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def settings_overrides(anvil_url: str, anvil_chain: Chain) -> dict[str, Any]:
    return anvil_rail_settings(anvil_url, anvil_chain)


class Credit:
    """One escrow's seller credit, deferred for real, on the native or the ERC-20 escrow."""

    def __init__(
        self, chain: Chain, session: AsyncSession, settings: SettlementSettings, native: bool
    ) -> None:
        self.chain = chain
        self.native = native
        self.gateway: EscrowGateway = chain.gateway() if native else chain.token_gateway()
        self.rail: EvmEscrowRail = (
            EvmEscrowRail(session, settings.evm, self.gateway)
            if native
            else EvmTokenEscrowRail(session, settings.evm, chain.token_gateway())
        )
        self.unit = ETH if native else USDC
        self.payee = chain.seller.address

    async def defer(self, amount_units: int, bond_units: int) -> None:
        """Lock ``amount + bond``, make the seller unpayable, release ``amount`` to it in part
        (the rest of nothing: the whole amount) so ``amount + bond`` is deferred, then make it
        payable again."""
        chain = self.chain
        locked = await self.gateway.lock_for(
            f"intent-{new_id('t')}", chain.buyer.address, self.payee, chain.buyer.address,
            int(time.time()) + 3600, amount_units,
        )  # fmt: skip
        if bond_units:
            await self.gateway.post_bond(locked.escrow_id, bond_units)
        await (chain.reject_native(self.payee) if self.native else chain.set_blocked(self.payee))
        await self.gateway.release_partial(locked.escrow_id, amount_units)
        await (
            chain.reject_native(self.payee, False)
            if self.native
            else chain.set_blocked(self.payee, False)
        )

    async def balance(self) -> int:
        chain = self.chain
        return await (chain.balance(self.payee) if self.native else chain.token_balance(self.payee))

    def payout(self, amount: str, payout_id: str | None = None) -> RailPayout:
        return RailPayout(
            id=payout_id or new_id("po"),
            agent_id="seller",
            asset=self.rail.asset,
            amount=Decimal(amount),
            destination=self.payee,
        )


@pytest.fixture(params=[True, False], ids=["native", "erc20"])
async def credit(
    request: pytest.FixtureRequest,
    anvil_chain: Chain,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: SettlementSettings,
) -> AsyncIterator[Credit]:
    async with sessionmaker() as session:
        yield Credit(anvil_chain, session, settings, bool(request.param))


async def test_a_payout_pays_exactly_the_amount_of_the_deferred_credit_once_per_id(
    credit: Credit,
) -> None:
    rail, unit = credit.rail, credit.unit
    assert isinstance(rail, CreditPayoutRail)
    assert await rail.payout_available(credit.payee, Decimal("0.1")) == 0
    await credit.defer(unit, unit // 2)  # 1 + 0.5 bond deferred
    assert await rail.payout_available(credit.payee, Decimal("0.1")) == Decimal("1.5")
    before = await credit.balance()

    payout = credit.payout("0.4")
    key = f"payout-{payout.id}"
    paid = await rail.payout(payout, idempotency_key=key)
    assert (paid.step, paid.status) == (RailStep.PAYOUT, RailOpStatus.SUCCEEDED)
    assert paid.reference is not None
    assert paid.reference.startswith("0x")
    assert await credit.balance() == before + 4 * unit // 10  # exactly the amount
    assert await rail.payout_available(credit.payee, Decimal("0.1")) == Decimal("1.1")

    # the same payout again (a retry): the escrow refuses a second payment under the id
    again = await rail.payout(payout, idempotency_key=key)
    assert again.status is RailOpStatus.SUCCEEDED
    assert again.detail["already_done"] is True
    assert again.reference == paid.reference  # the transaction that paid it
    assert await credit.balance() == before + 4 * unit // 10
    status = await rail.payout_status(payout, idempotency_key=key)
    assert (status.status, status.reference) == (RailOpStatus.SUCCEEDED, paid.reference)


async def test_a_payout_beyond_the_credit_fails_definitely_and_pays_nothing(
    credit: Credit,
) -> None:
    rail, unit = credit.rail, credit.unit
    await credit.defer(unit, 0)
    before = await credit.balance()
    with pytest.raises(RailError) as info:
        await rail.payout(credit.payout("1.000001"), idempotency_key="k")
    assert info.value.code == ProblemCode.INSUFFICIENT_BALANCE
    assert not info.value.retryable
    assert await credit.balance() == before
    with pytest.raises(RailRefusedError):  # a fraction of the escrow's unit: refused, not rounded
        await rail.payout_available(credit.payee, Decimal("1e-19"))


async def test_a_payout_sent_before_a_crash_is_found_on_chain_and_never_sent_twice(
    credit: Credit,
) -> None:
    """The process sent ``payOut`` and died before recording the answer: the reconciler asks
    the chain by payout id, finds it paid, and a resend is a no-op."""
    rail, unit = credit.rail, credit.unit
    await credit.defer(2 * unit, 0)
    payout = credit.payout("1.5")
    key = f"payout-{payout.id}"
    assert (await rail.payout_status(payout, idempotency_key=key)).status is (
        RailOpStatus.NOT_FOUND  # nothing sent, nothing in flight: the reconciler sends it
    )
    sent = await credit.gateway.pay_out(payout.id, credit.payee, 3 * unit // 2)  # then "crash"
    before = await credit.balance()
    status = await rail.payout_status(payout, idempotency_key=key)
    assert (status.status, status.reference) == (RailOpStatus.SUCCEEDED, sent.tx_hash)
    resent = await rail.payout(payout, idempotency_key=key)
    assert resent.detail["already_done"] is True
    assert await credit.balance() == before
    assert await rail.payout_available(credit.payee, Decimal(1)) == Decimal("0.5")


async def test_a_payee_the_chain_cannot_pay_fails_the_payout_and_keeps_its_credit(
    credit: Credit,
) -> None:
    rail, unit = credit.rail, credit.unit
    await credit.defer(unit, 0)
    chain = credit.chain
    await (chain.reject_native(credit.payee) if credit.native else chain.set_blocked(credit.payee))
    payout = credit.payout("1")
    with pytest.raises(RailError) as info:
        await rail.payout(payout, idempotency_key="k")
    assert not info.value.retryable
    assert await rail.payout_available(credit.payee, Decimal(1)) == 1  # still owed
    status = await rail.payout_status(payout, idempotency_key="k")
    assert status.status is RailOpStatus.NOT_FOUND  # nothing recorded under the id
