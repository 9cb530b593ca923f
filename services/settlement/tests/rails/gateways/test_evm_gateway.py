"""EscrowGateway on web3's in-process AsyncEthereumTesterProvider (eth-tester + py-evm)."""

from __future__ import annotations

import asyncio
import re
import time
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import pytest
from eth_abi import abi as eth_abi
from eth_account import Account
from eth_utils.crypto import keccak
from fixtures.rails import Chain
from pact_schema.codes import FailureCode
from pact_settlement.rails.evm.deploy import add_operator
from pact_settlement.rails.evm.errors import (
    EscrowBadRequestError,
    EscrowConfigurationError,
    EscrowConflictError,
    EscrowGatewayError,
    EscrowInsufficientFundsError,
    EscrowNotFoundError,
    EscrowTxTimeoutError,
)
from pact_settlement.rails.evm.gateway import EscrowGateway
from pact_settlement.rails.evm.ids import escrow_id, intent_id_to_bytes32
from pact_settlement.rails.evm.results import EscrowStatus
from pact_settlement.rails.evm.revert import decode_revert, error_selectors
from pact_settlement.rails.minor_units import to_wei

pytestmark = pytest.mark.evm

README = Path(__file__).resolve().parents[3] / "contracts" / "README.md"
ONE_ETH = 10**18


def deadline(seconds: int = 3600) -> int:
    return int(time.time()) + seconds


async def lock(chain: Chain, gw: EscrowGateway, intent: str, amount: int = ONE_ETH) -> str:
    result = await gw.lock_for(
        intent, chain.buyer.address, chain.seller.address, chain.beneficiary.address,
        deadline(), amount,
    )  # fmt: skip
    return result.escrow_id


# --------------------------------------------------------------------------------------------
# ids and error table
# --------------------------------------------------------------------------------------------


def test_intent_id_is_keccak_of_its_utf8_bytes() -> None:
    assert intent_id_to_bytes32("intent-1") == keccak(b"intent-1")
    assert intent_id_to_bytes32("ünï") == keccak("ünï".encode())
    with pytest.raises(ValueError, match="non-empty"):
        intent_id_to_bytes32("")


async def test_escrow_id_matches_the_contracts_escrow_id_of(tester_chain: Chain) -> None:
    gw = tester_chain.gateway()
    intent = intent_id_to_bytes32("intent-xyz")
    on_chain = await gw.contract.functions.escrowIdOf(
        intent, tester_chain.buyer.address, tester_chain.seller.address
    ).call()
    ours = escrow_id(intent, tester_chain.buyer.address, tester_chain.seller.address)
    assert ours == bytes(on_chain)
    assert gw.escrow_id("intent-xyz", tester_chain.buyer.address, tester_chain.seller.address) == (
        "0x" + ours.hex()
    )
    # lower-case addresses are the same parties
    assert (
        escrow_id(intent, tester_chain.buyer.address.lower(), tester_chain.seller.address) == ours
    )


def test_error_selectors_match_the_contract_readme() -> None:
    table = dict(re.findall(r"\| `(\w+)\([^`]*\)` \| `(0x[0-9a-f]{8})` \|", README.read_text()))
    assert len(table) == 24
    assert error_selectors() == table


def test_decode_revert_reads_raw_bytes_hex_and_exception_chains() -> None:
    eid = b"\x11" * 32
    data = bytes.fromhex("172b3e0d") + eth_abi.encode(["bytes32", "uint8"], [eid, 2])
    decoded = decode_revert(data)
    assert decoded is not None
    assert (decoded.name, decoded.args) == (
        "NotLocked",
        {"escrowId": "0x" + "11" * 32, "current": 2},
    )
    assert decode_revert("0x" + data.hex()) == decoded
    # eth-tester: the bytes sit in the args of an exception in the __cause__ chain
    outer = ValueError("execution reverted")
    outer.__cause__ = RuntimeError(data)
    assert decode_revert(outer) == decoded
    # eth-tester's eth_call: only a repr of the bytes in the message
    assert decode_revert(RuntimeError(f"execution reverted: {data!r}")) == decoded
    # some nodes' eth_estimateGas: a dict with the data under "result"
    wrapped = RuntimeError("revert", {"hash": None, "programCounter": 1, "result": "0x7c214f04"})
    assert decode_revert(wrapped) is not None
    assert decode_revert(wrapped).name == "NotOperator"  # type: ignore[union-attr]
    assert decode_revert(b"\xde\xad\xbe\xef") is None
    assert decode_revert(RuntimeError("no data here")) is None


# --------------------------------------------------------------------------------------------
# the lifecycle
# --------------------------------------------------------------------------------------------


async def test_deploy_makes_the_deployer_owner_and_adds_only_the_operator(
    tester_chain: Chain,
) -> None:
    gw = tester_chain.gateway()
    assert await gw.is_operator()
    assert not await gw.is_operator(tester_chain.owner.address)
    assert await gw.contract.functions.owner().call() == tester_chain.owner.address


async def test_lock_for_escrows_the_amount_for_the_buyer(tester_chain: Chain) -> None:
    gw = tester_chain.gateway()
    due = deadline()
    submitted: list[str] = []

    async def record(tx_hash: str) -> None:
        submitted.append(tx_hash)

    result = await gw.lock_for(
        "intent-lock", tester_chain.buyer.address, tester_chain.seller.address,
        tester_chain.beneficiary.address, due, 3 * ONE_ETH, on_submitted=record,
    )  # fmt: skip

    assert not result.already_done
    assert submitted == [result.tx_hash]
    state = result.state
    assert state.status is EscrowStatus.LOCKED
    assert state.intent_id == "0x" + intent_id_to_bytes32("intent-lock").hex()
    assert (state.buyer, state.seller, state.beneficiary) == (
        tester_chain.buyer.address, tester_chain.seller.address, tester_chain.beneficiary.address,
    )  # fmt: skip
    assert (state.amount_wei, state.bond_wei, state.delivery_deadline) == (3 * ONE_ETH, 0, due)
    assert await tester_chain.balance(tester_chain.escrow) == 3 * ONE_ETH
    assert await gw.get_escrow(result.escrow_id) == state
    [event] = await gw.find_events(result.escrow_id)
    assert (event.name, event.tx_hash) == ("Locked", result.tx_hash)
    assert event.args["amount"] == 3 * ONE_ETH
    assert event.args["buyer"] == tester_chain.buyer.address


async def test_release_pays_the_seller(tester_chain: Chain) -> None:
    gw = tester_chain.gateway()
    eid = await lock(tester_chain, gw, "intent-release", 2 * ONE_ETH)
    seller_before = await tester_chain.balance(tester_chain.seller)

    result = await gw.release(eid)

    assert result.state.status is EscrowStatus.RELEASED
    assert await tester_chain.balance(tester_chain.seller) == seller_before + 2 * ONE_ETH
    assert await tester_chain.balance(tester_chain.escrow) == 0
    names = [e.name for e in await gw.find_events(eid)]
    assert names == ["Locked", "Released"]


async def test_refund_by_the_operator_returns_the_amount_to_the_buyer(
    tester_chain: Chain,
) -> None:
    gw = tester_chain.gateway()
    eid = await lock(tester_chain, gw, "intent-refund", ONE_ETH)
    buyer_before = await tester_chain.balance(tester_chain.buyer)

    result = await gw.refund(eid)

    assert result.state.status is EscrowStatus.REFUNDED
    assert await tester_chain.balance(tester_chain.buyer) == buyer_before + ONE_ETH
    assert [e.name for e in await gw.find_events(eid)] == ["Locked", "Refunded"]


async def test_slash_returns_the_amount_and_pays_the_bond_to_the_fixed_beneficiary(
    tester_chain: Chain,
) -> None:
    gw = tester_chain.gateway()
    eid = await lock(tester_chain, gw, "intent-slash", ONE_ETH)
    await gw.post_bond(eid, ONE_ETH // 4)
    buyer_before = await tester_chain.balance(tester_chain.buyer)
    beneficiary_before = await tester_chain.balance(tester_chain.beneficiary)
    seller_before = await tester_chain.balance(tester_chain.seller)

    result = await gw.slash(eid)

    assert result.state.status is EscrowStatus.SLASHED
    assert result.state.bond_wei == ONE_ETH // 4
    assert await tester_chain.balance(tester_chain.buyer) == buyer_before + ONE_ETH
    assert await tester_chain.balance(tester_chain.beneficiary) == beneficiary_before + ONE_ETH // 4
    assert await tester_chain.balance(tester_chain.seller) == seller_before
    events = await gw.find_events(eid)
    assert [e.name for e in events] == ["Locked", "BondPosted", "Slashed"]
    assert events[-1].args["beneficiary"] == tester_chain.beneficiary.address


async def test_one_wei_from_decimal_is_locked_exactly(tester_chain: Chain) -> None:
    gw = tester_chain.gateway()
    amount = to_wei(Decimal("0.000000000000000001"))
    assert amount == 1
    eid = await lock(tester_chain, gw, "intent-one-wei", amount)
    assert (await gw.get_escrow(eid)).amount_wei == 1
    assert await tester_chain.balance(tester_chain.escrow) == 1


# --------------------------------------------------------------------------------------------
# replays and errors
# --------------------------------------------------------------------------------------------


async def test_replayed_lock_is_an_idempotent_success(tester_chain: Chain) -> None:
    gw = tester_chain.gateway()
    due = deadline()
    args = (
        "intent-replay", tester_chain.buyer.address, tester_chain.seller.address,
        tester_chain.beneficiary.address, due, ONE_ETH,
    )  # fmt: skip
    first = await gw.lock_for(*args)
    nonce_before = await tester_chain.w3.eth.get_transaction_count(tester_chain.operator.address)

    again = await gw.lock_for(*args)

    assert again.already_done
    assert again.tx_hash is None  # decided by the free pre-flight, nothing was sent
    assert again.state == first.state
    assert await tester_chain.w3.eth.get_transaction_count(tester_chain.operator.address) == (
        nonce_before
    )
    assert await tester_chain.balance(tester_chain.escrow) == ONE_ETH
    assert len(await gw.find_events(first.escrow_id)) == 1


async def test_lock_under_the_same_id_with_other_terms_is_a_conflict(tester_chain: Chain) -> None:
    gw = tester_chain.gateway()
    await lock(tester_chain, gw, "intent-conflict", ONE_ETH)
    with pytest.raises(EscrowConflictError) as info:
        await lock(tester_chain, gw, "intent-conflict", 2 * ONE_ETH)
    assert info.value.state.amount_wei == ONE_ETH
    assert info.value.failure_code is FailureCode.FAILED_ESCROW


async def test_release_twice_converges_and_refund_after_release_conflicts(
    tester_chain: Chain,
) -> None:
    gw = tester_chain.gateway()
    eid = await lock(tester_chain, gw, "intent-twice")
    await gw.release(eid)

    again = await gw.release(eid)
    assert again.already_done
    assert again.state.status is EscrowStatus.RELEASED

    with pytest.raises(EscrowConflictError) as info:
        await gw.refund(eid)
    assert info.value.state.status is EscrowStatus.RELEASED


async def test_release_of_an_escrow_never_locked_is_not_found(tester_chain: Chain) -> None:
    gw = tester_chain.gateway()
    with pytest.raises(EscrowNotFoundError):
        await gw.release("0x" + "ab" * 32)


async def test_mined_revert_is_decoded_from_the_receipt_block(tester_chain: Chain) -> None:
    # A fixed gas limit skips the estimate, so the reverting transaction is mined (status 0).
    gw = tester_chain.gateway(gas_limit=200_000)
    eid = await lock(tester_chain, gw, "intent-mined-revert")
    await gw.release(eid)

    again = await gw.release(eid)
    assert again.already_done
    assert again.tx_hash is not None  # a transaction was mined and reverted with NotLocked
    receipt = await tester_chain.w3.eth.get_transaction_receipt(cast(Any, again.tx_hash))
    assert receipt["status"] == 0

    with pytest.raises(EscrowNotFoundError) as info:
        await gw.refund("0x" + "cd" * 32)
    assert info.value.tx_hash is not None


async def test_a_key_that_is_not_an_operator_is_a_configuration_error(
    tester_chain: Chain,
) -> None:
    stranger = EscrowGateway(tester_chain.w3, tester_chain.escrow, tester_chain.stranger)
    with pytest.raises(EscrowConfigurationError) as info:
        await lock(tester_chain, stranger, "intent-stranger")
    assert info.value.revert.name == "NotOperator"
    assert info.value.failure_code is FailureCode.SETTLEMENT_FAILED


async def test_a_deadline_in_the_past_is_a_bad_request(tester_chain: Chain) -> None:
    gw = tester_chain.gateway()
    past = int(time.time()) - 10
    with pytest.raises(EscrowBadRequestError) as info:
        await gw.lock_for(
            "intent-past", tester_chain.buyer.address, tester_chain.seller.address,
            tester_chain.beneficiary.address, past, ONE_ETH,
        )  # fmt: skip
    assert info.value.revert.name == "InvalidDeadline"
    assert info.value.revert.args["deadline"] == past
    assert info.value.failure_code is FailureCode.FAILED_ESCROW


async def test_bad_arguments_are_refused_before_any_transaction(tester_chain: Chain) -> None:
    gw = tester_chain.gateway()
    parties = (tester_chain.buyer.address, tester_chain.seller.address, tester_chain.buyer.address)
    for amount in (0, -1, True, Decimal("1")):
        with pytest.raises(ValueError, match="amount_wei"):
            await gw.lock_for("intent-bad", *parties, deadline(), cast(Any, amount))
    with pytest.raises(ValueError, match="uint64"):
        await gw.lock_for("intent-bad", *parties, 2**64, 1)
    with pytest.raises(ValueError, match="32 bytes"):
        await gw.release("0x1234")


async def test_an_operator_without_funds_gets_insufficient_funds(tester_chain: Chain) -> None:
    broke = Account.create()
    await add_operator(tester_chain.w3, tester_chain.owner, tester_chain.escrow, broke.address)
    gw = EscrowGateway(tester_chain.w3, tester_chain.escrow, broke, poll_interval_s=0.02)
    assert await gw.is_operator()
    with pytest.raises(EscrowInsufficientFundsError) as info:
        await lock(tester_chain, gw, "intent-broke")
    assert info.value.failure_code is FailureCode.INSUFFICIENT_ESCROW


async def test_add_operator_by_a_non_owner_is_a_configuration_error(tester_chain: Chain) -> None:
    with pytest.raises(EscrowConfigurationError) as info:
        await add_operator(
            tester_chain.w3,
            tester_chain.operator,
            tester_chain.escrow,
            tester_chain.stranger.address,
        )
    assert info.value.revert.name == "NotOwner"


async def test_wrong_chain_id_is_refused_before_signing(tester_chain: Chain) -> None:
    gw = tester_chain.gateway(expected_chain_id=1)
    with pytest.raises(EscrowGatewayError, match="wrong chain"):
        await lock(tester_chain, gw, "intent-chain")


# --------------------------------------------------------------------------------------------
# nonces, confirmations, crashes
# --------------------------------------------------------------------------------------------


async def test_nonce_too_low_is_refetched_and_retried_once(tester_chain: Chain) -> None:
    gw = tester_chain.gateway()
    w3 = tester_chain.w3
    op = tester_chain.operator
    hashes: list[str] = []

    async def race(tx_hash: str) -> None:
        # Another sender with the same key takes our nonce just before we broadcast.
        hashes.append(tx_hash)
        if len(hashes) == 1:
            nonce = await w3.eth.get_transaction_count(op.address, "pending")
            competing = op.sign_transaction(
                {
                    "to": tester_chain.stranger.address, "value": 1, "nonce": nonce,
                    "gas": 21_000, "gasPrice": 10**10, "chainId": await w3.eth.chain_id,
                }
            )  # fmt: skip
            await w3.eth.send_raw_transaction(competing.raw_transaction)

    result = await gw.lock_for(
        "intent-nonce", tester_chain.buyer.address, tester_chain.seller.address,
        tester_chain.beneficiary.address, deadline(), ONE_ETH, on_submitted=race,
    )  # fmt: skip

    assert len(hashes) == 2
    assert result.tx_hash == hashes[1]
    assert result.state.status is EscrowStatus.LOCKED


async def test_concurrent_actions_get_distinct_nonces(tester_chain: Chain) -> None:
    gw = tester_chain.gateway()
    results = await asyncio.gather(*(lock(tester_chain, gw, f"intent-par-{i}") for i in range(4)))
    assert len(set(results)) == 4
    for eid in results:
        assert (await gw.get_escrow(eid)).status is EscrowStatus.LOCKED
    assert await gw.pending_transaction_count() == 0


async def test_confirmations_wait_for_later_blocks(tester_chain: Chain) -> None:
    poll_s = 0.02
    gw = tester_chain.gateway(confirmations=3, poll_interval_s=poll_s)
    setup = tester_chain.gateway()
    eid = await lock(tester_chain, setup, "intent-confirm")

    sent: list[str] = []

    async def record(tx_hash: str) -> None:
        sent.append(tx_hash)

    async def some_polls_later() -> None:
        """Give the waiting gateway a few of its polls (on a busy machine: fewer, never more)."""
        await asyncio.sleep(poll_s * 5)

    task = asyncio.create_task(gw.release(eid, on_submitted=record))
    for _ in range(10_000):  # until the release itself is mined, however slow the machine
        if sent and await gw.transaction_status(sent[0]) == "succeeded":
            break
        await asyncio.sleep(poll_s)
    await some_polls_later()
    assert not task.done()  # mined (automine) but only 1 of 3 confirmations
    await tester_chain.mine(1)
    await some_polls_later()
    assert not task.done()
    await tester_chain.mine(1)
    result = await asyncio.wait_for(task, timeout=5)
    head = await tester_chain.w3.eth.block_number
    assert result.block_number is not None
    assert head - result.block_number + 1 == 3
    assert result.state.status is EscrowStatus.RELEASED


async def test_on_submitted_failure_means_nothing_was_broadcast(tester_chain: Chain) -> None:
    gw = tester_chain.gateway()
    nonce_before = await tester_chain.w3.eth.get_transaction_count(tester_chain.operator.address)

    async def db_down(tx_hash: str) -> None:
        raise ConnectionError("could not record the pending transaction")

    with pytest.raises(ConnectionError, match="could not record"):
        await gw.lock_for(
            "intent-cb", tester_chain.buyer.address, tester_chain.seller.address,
            tester_chain.beneficiary.address, deadline(), ONE_ETH, on_submitted=db_down,
        )  # fmt: skip
    assert (
        await tester_chain.w3.eth.get_transaction_count(tester_chain.operator.address, "pending")
        == nonce_before
    )
    eid = gw.escrow_id("intent-cb", tester_chain.buyer.address, tester_chain.seller.address)
    assert (await gw.get_escrow(eid)).status is EscrowStatus.NONE


async def test_receipt_timeout_leaves_a_pending_lock_that_reconciles_from_the_chain(
    tester_chain: Chain,
) -> None:
    tester: Any = cast(Any, tester_chain.w3.provider).ethereum_tester
    gw = tester_chain.gateway(receipt_timeout_s=0.3)
    eid = gw.escrow_id("intent-timeout", tester_chain.buyer.address, tester_chain.seller.address)
    sent: list[str] = []

    async def record(tx_hash: str) -> None:
        sent.append(tx_hash)

    tester.disable_auto_mine_transactions()
    try:
        with pytest.raises(EscrowTxTimeoutError) as info:
            await gw.lock_for(
                "intent-timeout", tester_chain.buyer.address, tester_chain.seller.address,
                tester_chain.beneficiary.address, deadline(), ONE_ETH, on_submitted=record,
            )  # fmt: skip
        assert info.value.retryable
        assert info.value.outcome_unknown
        assert info.value.tx_hash == sent[0]
        # The reconciler after the "crash": not locked yet, but a transaction is in flight.
        assert (await gw.get_escrow(eid)).status is EscrowStatus.NONE
        assert await gw.transaction_status(sent[0]) == "pending"
    finally:
        tester.enable_auto_mine_transactions()
    await tester_chain.mine(1)

    recovered = tester_chain.gateway()  # a new process: no memory of the first attempt
    assert await recovered.transaction_status(sent[0]) == "succeeded"
    assert (await recovered.get_escrow(eid)).status is EscrowStatus.LOCKED
    assert await recovered.transaction_status("0x" + "00" * 32) == "unknown"
    [event] = await recovered.find_events(eid)
    assert event.tx_hash == sent[0]
