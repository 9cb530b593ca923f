"""SIGKILL the settlement process while EVM payouts are in flight, restart it, retry every
request.

A real ``pact-settlement serve`` on Postgres (workers on: the reconciler resolves payouts the
kill left ``pending``) pays a seller out of the credit the escrows deferred for its address on
anvil, on both EVM rails at once: each payout under its own ``Idempotency-Key``, each request
sent twice at the same moment, and the process is killed with -9 after the first answers while
others are between their commit and the chain's answer. After the restart the operator's
script sends every request again. Proves: each key is one payout, paid exactly once on chain
(recorded under its id with exactly its amount, one ``PaidOut`` log each), the seller received
exactly the sum, the escrows still owe exactly the rest, and the ledger holds none of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from fixtures.faults import ADMIN_AUTH, SettlementProcess, asyncpg_dsn, migrate, settlement_env
from fixtures.rails import ANVIL_CHAIN_ID, Chain
from pact_schema import Keypair
from pact_settlement.kit.ids import new_id
from pact_settlement.rails.evm.gateway import EscrowGateway, _event_topic

pytestmark = [pytest.mark.faults, pytest.mark.postgres, pytest.mark.evm]

PAYOUTS = 6  # per rail
AMOUNT = Decimal("0.25")
CREDIT = 2  # per rail, in whole units: 6 x 0.25 = 1.5 of it paid out
KILL_AFTER = 3  # answers received before the kill
RAILS = {"evm": ("ETH", 10**18), "evm-erc20": ("USDT6", 10**6)}


async def _defer(chain: Chain, rail: str, units: int) -> EscrowGateway:
    """Credit deferred for real: the seller cannot receive while the escrow pays its part."""
    native = rail == "evm"
    gateway: EscrowGateway = chain.gateway() if native else chain.token_gateway()
    payee = chain.seller.address
    locked = await gateway.lock_for(
        f"intent-{new_id('t')}", chain.buyer.address, payee, chain.buyer.address,
        int(time.time()) + 3600, units,
    )  # fmt: skip
    await (chain.reject_native(payee) if native else chain.set_blocked(payee))
    await gateway.release_partial(locked.escrow_id, units)
    await (chain.reject_native(payee, False) if native else chain.set_blocked(payee, False))
    return gateway


async def _balance(chain: Chain, rail: str) -> int:
    payee = chain.seller.address
    return await (chain.balance(payee) if rail == "evm" else chain.token_balance(payee))


async def _payout(http: httpx.AsyncClient, seller: str, rail: str, i: int) -> httpx.Response:
    return await http.post(
        f"/v1/accounts/{seller}/payouts",
        json={"amount": str(AMOUNT), "asset": RAILS[rail][0], "rail": rail},
        headers={**ADMIN_AUTH, "Idempotency-Key": f"kill-{rail}-{i}"},
    )


async def test_sigkill_mid_evm_payouts_pays_each_key_once_on_chain(
    fault_database: str, anvil_url: str, anvil_chain: Chain, pact: Any, tmp_path: Path
) -> None:
    chain = anvil_chain
    gateways = {rail: await _defer(chain, rail, CREDIT * unit) for rail, (_, unit) in RAILS.items()}
    before = {rail: await _balance(chain, rail) for rail in RAILS}
    env = settlement_env(
        fault_database,
        pact.provider.public_key_b58,
        PACT_SETTLEMENT_WORKERS_ENABLED="true",
        PACT_SETTLEMENT_RECONCILE_INTERVAL_S="0.2",
        PACT_SETTLEMENT_RAIL_CALL_TIMEOUT_S="4",
        PACT_SETTLEMENT_RECONCILE_GRACE_S="5",
        PACT_SETTLEMENT_ENABLED_RAILS="ledger,evm,evm-erc20",
        PACT_SETTLEMENT_EVM_RPC_URL=anvil_url,
        PACT_SETTLEMENT_EVM_OPERATOR_KEY=chain.operator.key.hex(),
        PACT_SETTLEMENT_EVM_CONTRACT_ADDRESS=chain.escrow,
        PACT_SETTLEMENT_EVM_TOKEN_ESCROW_ADDRESS=str(chain.token_escrow),
        PACT_SETTLEMENT_EVM_TOKEN_ADDRESS=str(chain.token),
        PACT_SETTLEMENT_EVM_TOKEN_DECIMALS="6",
        PACT_SETTLEMENT_EVM_TOKEN_SYMBOL="USDT6",
        PACT_SETTLEMENT_EVM_CHAIN_ID=str(ANVIL_CHAIN_ID),
        PACT_SETTLEMENT_EVM_POLL_INTERVAL_S="0.05",
        PACT_SETTLEMENT_EVM_RECEIPT_TIMEOUT_S="3",
    )
    migrate(env, tmp_path)
    server = SettlementProcess(env, tmp_path)
    seller = Keypair.generate().public_key_b58
    jobs = [(rail, i) for i in range(PAYOUTS) for rail in RAILS for _twice in "ab"]
    answers: dict[tuple[str, int], list[httpx.Response]] = {}
    try:
        server.start()
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            r = await http.put(
                f"/v1/accounts/{seller}/payment-profiles/evm",
                json={"evm_address": chain.seller.address},
                headers=ADMIN_AUTH,
            )
            assert r.status_code in (200, 201), r.text

            async def one(rail: str, i: int) -> None:
                # cut off by the kill: the operator's script sends it again after the restart
                with contextlib.suppress(httpx.HTTPError):
                    answer = await _payout(http, seller, rail, i)
                    answers.setdefault((rail, i), []).append(answer)

            tasks = [asyncio.create_task(one(rail, i)) for rail, i in jobs]
            deadline = time.monotonic() + 60
            while sum(map(len, answers.values())) < KILL_AFTER and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.005)
            await asyncio.to_thread(server.kill)
            await asyncio.gather(*tasks)
        assert server.proc is not None
        assert server.proc.returncode == -9
        answered = sum(map(len, answers.values()))
        assert KILL_AFTER <= answered < len(jobs), "the kill came after every answer"
        before_kill: dict[tuple[str, int], str] = {}
        for job, rs in answers.items():
            assert all(r.status_code in (200, 201, 202) for r in rs), [r.text for r in rs]
            assert len({r.json()["id"] for r in rs}) == 1  # a duplicate is the same payout
            before_kill[job] = rs[0].json()["id"]

        await asyncio.to_thread(server.start)
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            again = await asyncio.gather(*(_payout(http, seller, rail, i) for rail, i in jobs))
            ids: dict[tuple[str, int], set[str]] = {}
            for job, r in zip(jobs, again, strict=True):
                assert r.status_code in (200, 201, 202), r.text
                ids.setdefault(job, set()).add(r.json()["id"])
            assert all(len(v) == 1 for v in ids.values())  # one payout per key, twice asked
            for job, pid in before_kill.items():
                assert ids[job] == {pid}  # the key answers the payout made before the kill
            # the reconciler resolves what the kill left pending, from the chain's record
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                listed = (
                    await http.get(f"/v1/accounts/{seller}/payouts", headers=ADMIN_AUTH)
                ).json()
                if all(p["status"] != "pending" for p in listed):
                    break
                await asyncio.sleep(0.2)
        assert len(listed) == len(RAILS) * PAYOUTS
        assert {p["id"] for p in listed} == {i for v in ids.values() for i in v}
        assert {p["status"] for p in listed} == {"paid"}, listed

        for rail, (_, unit) in RAILS.items():
            gateway = gateways[rail]
            mine = [p for p in listed if p["rail"] == rail]
            for p in mine:
                record = await gateway.payout_record(p["id"])
                assert record is not None
                assert (record.payee, record.amount) == (chain.seller.address, unit // 4)
                assert p["external_ref"] == record.tx_hash
            logs = await chain.w3.eth.get_logs(
                {
                    "address": gateway.address,
                    "fromBlock": 0,
                    "topics": [_event_topic(gateway.contract, "PaidOut")],
                }
            )
            assert len(logs) == PAYOUTS  # one payment per payout, none repeated
            paid = PAYOUTS * unit // 4
            assert await _balance(chain, rail) == before[rail] + paid
            assert await gateway.pending_withdrawal(chain.seller.address) == CREDIT * unit - paid

        conn = await asyncpg.connect(asyncpg_dsn(fault_database))
        try:
            entries = await conn.fetchval(
                "SELECT COUNT(*) FROM journal_transactions WHERE kind LIKE 'payout%'"
            )
            accounts = await conn.fetchval("SELECT COUNT(*) FROM ledger_accounts")
        finally:
            await conn.close()
        assert (entries, accounts) == (0, 0)  # held and paid on chain, never on the ledger
    except BaseException:
        print(server.output())
        raise
    finally:
        server.close()
