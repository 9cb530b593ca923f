"""The database-backed nonce guard: gateways that share one operator key take turns.

Two gateways stand for two processes (each has its own in-process lock and nonce cache); the
guard is all they share, through the database — on SQLite (the write lock) and on Postgres (an
advisory lock). Against a real JSON-RPC node (anvil). The processes-and-replicas version is
``tests/faults/test_evm_nonces.py``.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from fixtures.rails import Chain
from pact_settlement.rails.evm.errors import EscrowTransientError
from pact_settlement.rails.evm.nonces import DatabaseNonceGuard
from pact_settlement.rails.evm.results import EscrowStatus
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

pytestmark = pytest.mark.evm

SENDS = 8
WEI = 10**15


async def test_gateways_in_two_processes_take_turns_through_the_database(
    sessionmaker: async_sessionmaker[AsyncSession], anvil_chain: Chain
) -> None:
    chain = anvil_chain
    gateways = [
        chain.gateway(nonce_guard=DatabaseNonceGuard(sessionmaker, wait_s=30)) for _ in range(2)
    ]
    nonce_before = await chain.w3.eth.get_transaction_count(chain.operator.address)
    due = int(time.time()) + 3600

    results = await asyncio.gather(
        *(
            gateways[i % 2].lock_for(
                f"nonce-guard-{i}-{due}",
                chain.buyer.address,
                chain.seller.address,
                chain.beneficiary.address,
                due,
                WEI,
            )
            for i in range(SENDS)
        )
    )

    assert {r.state.status for r in results} == {EscrowStatus.LOCKED}
    assert len({r.tx_hash for r in results}) == SENDS
    nonce_after = await chain.w3.eth.get_transaction_count(chain.operator.address)
    assert nonce_after - nonce_before == SENDS


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_a_guard_that_cannot_be_taken_in_time_is_a_transient_error(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """Nothing was sent, so the step stays retryable (a lock is not failed for it)."""
    holder = DatabaseNonceGuard(sessionmaker, wait_s=30)
    waiter = DatabaseNonceGuard(sessionmaker, wait_s=0.2)
    async with holder.hold(1337, "0xAbC"):
        with pytest.raises(EscrowTransientError) as raised:
            async with waiter.hold(1337, "0xabc"):  # the same account, whatever the case
                pytest.fail("two holders at once")
    assert (raised.value.retryable, raised.value.outcome_unknown) == (True, False)
    async with waiter.hold(1337, "0xabc"):  # released with the holder's transaction
        pass
