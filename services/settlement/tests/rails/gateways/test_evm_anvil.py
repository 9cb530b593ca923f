"""EscrowGateway against a real JSON-RPC node over HTTP (anvil from npm, see
tests/fixtures/rails.py)."""

from __future__ import annotations

import asyncio
import time
from typing import Any, cast

import pytest
from fixtures.rails import ANVIL_CHAIN_ID, Chain
from pact_settlement.rails.evm.errors import EscrowConfigurationError, EscrowNotFoundError
from pact_settlement.rails.evm.gateway import EscrowGateway
from pact_settlement.rails.evm.results import EscrowStatus

pytestmark = pytest.mark.evm

ONE_ETH = 10**18


class TestAnvilJsonRpc:
    async def test_deploy_lock_release_with_one_confirmation(self, anvil_chain: Chain) -> None:
        chain = anvil_chain
        gw = chain.gateway(confirmations=1, expected_chain_id=ANVIL_CHAIN_ID)
        seller_before = await chain.balance(chain.seller)

        locked = await gw.lock_for(
            "anvil-intent-1", chain.buyer.address, chain.seller.address,
            chain.beneficiary.address, int(time.time()) + 3600, 2 * ONE_ETH,
        )  # fmt: skip
        assert locked.state.status is EscrowStatus.LOCKED
        assert await chain.balance(chain.escrow) == 2 * ONE_ETH

        released = await gw.release(locked.escrow_id)

        assert released.state.status is EscrowStatus.RELEASED
        assert await chain.balance(chain.seller) == seller_before + 2 * ONE_ETH
        assert await chain.balance(chain.escrow) == 0
        receipt = await chain.w3.eth.get_transaction_receipt(cast(Any, released.tx_hash))
        assert receipt["status"] == 1
        assert receipt["type"] == 2  # anvil has London base fees: EIP-1559 was used

    async def test_lock_is_reconciled_from_the_chain_after_a_crash(
        self, anvil_chain: Chain
    ) -> None:
        chain = anvil_chain
        due = int(time.time()) + 3600
        terms = (
            "anvil-intent-crash", chain.buyer.address, chain.seller.address,
            chain.beneficiary.address, due, ONE_ETH,
        )  # fmt: skip
        recorded: list[str] = []

        async def record_pending(tx_hash: str) -> None:  # the rail's "pending" row
            recorded.append(tx_hash)

        before_crash = chain.gateway()
        await before_crash.lock_for(*terms, on_submitted=record_pending)
        del before_crash  # the process dies: the result is never recorded

        # After restart, only our own ids and the recorded hash are known.
        after = chain.gateway()
        eid = after.escrow_id("anvil-intent-crash", chain.buyer.address, chain.seller.address)
        assert await after.transaction_status(recorded[0]) == "succeeded"
        state = await after.get_escrow(eid)
        assert state.status is EscrowStatus.LOCKED
        assert (state.amount_wei, state.delivery_deadline) == (ONE_ETH, due)
        [event] = await after.find_events(eid)
        assert (event.name, event.tx_hash) == ("Locked", recorded[0])
        # Resuming the step is harmless: it converges without a second lock.
        replay = await after.lock_for(*terms)
        assert replay.already_done
        assert await chain.balance(chain.escrow) == ONE_ETH
        refunded = await after.refund(eid)
        assert refunded.state.status is EscrowStatus.REFUNDED
        assert [e.name for e in await after.find_events(eid)] == ["Locked", "Refunded"]

    async def test_custom_errors_are_decoded_over_json_rpc(self, anvil_chain: Chain) -> None:
        chain = anvil_chain
        with pytest.raises(EscrowNotFoundError):
            await chain.gateway().release("0x" + "42" * 32)
        stranger = EscrowGateway(chain.w3, chain.escrow, chain.stranger, poll_interval_s=0.02)
        with pytest.raises(EscrowConfigurationError) as info:
            await stranger.lock_for(
                "anvil-intent-stranger", chain.buyer.address, chain.seller.address,
                chain.beneficiary.address, int(time.time()) + 3600, ONE_ETH,
            )  # fmt: skip
        assert info.value.revert.name == "NotOperator"

    async def test_mined_revert_converges_over_json_rpc(self, anvil_chain: Chain) -> None:
        chain = anvil_chain
        gw = chain.gateway(gas_limit=200_000)  # no estimate: the revert happens on chain
        locked = await gw.lock_for(
            "anvil-intent-revert", chain.buyer.address, chain.seller.address,
            chain.beneficiary.address, int(time.time()) + 3600, ONE_ETH,
        )  # fmt: skip
        await gw.slash(locked.escrow_id)
        again = await gw.slash(locked.escrow_id)
        assert again.already_done
        assert again.state.status is EscrowStatus.SLASHED

    async def test_two_confirmations_wait_for_the_next_block(self, anvil_chain: Chain) -> None:
        chain = anvil_chain
        gw = chain.gateway(confirmations=2)
        setup = chain.gateway()
        locked = await setup.lock_for(
            "anvil-intent-confirm", chain.buyer.address, chain.seller.address,
            chain.beneficiary.address, int(time.time()) + 3600, ONE_ETH,
        )  # fmt: skip
        sent: list[str] = []

        async def record(tx_hash: str) -> None:
            sent.append(tx_hash)

        task = asyncio.create_task(gw.release(locked.escrow_id, on_submitted=record))
        # Wait until anvil has mined the release itself (instamine) — under load that can
        # take longer than any fixed sleep — then check it waits for a second block.
        for _ in range(500):
            if sent and await gw.transaction_status(sent[0]) == "succeeded":
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)
        assert not task.done()
        await chain.mine(1)
        result = await asyncio.wait_for(task, timeout=10)
        assert result.state.status is EscrowStatus.RELEASED
