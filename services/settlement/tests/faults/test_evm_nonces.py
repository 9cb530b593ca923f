"""One EVM operator account, four sending processes: two replicas of ``serve --workers 2``.

Every process signs escrow transactions with the same operator key. Nonces taken from the
node's ``pending`` count under a lock held by one process only collided across processes:
two senders got the same nonce and one lock failed (``transaction can't be replaced``, one lock
in 40 at ``--workers 2``; issue 13 item 5). Proves: a burst of concurrent ACCEPTs spread over
the four processes locks every escrow exactly once, each with its own operator nonce.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from fixtures.faults import (
    ADMIN_AUTH,
    PROVIDER_AUTH,
    SettlementProcess,
    migrate,
    settlement_env,
)
from fixtures.rails import ANVIL_CHAIN_ID, Chain
from pact_schema import Keypair
from pact_schema.keys import b58encode

pytestmark = [pytest.mark.faults, pytest.mark.postgres, pytest.mark.evm]

REPLICAS = 2
WORKERS = 2
LOCKS = 20
CONCURRENT = 10
PRICE = Decimal("0.001")  # ether
ETH = 10**18


async def test_two_replicas_of_two_workers_share_one_operator_nonce_sequence(
    fault_database: str,
    anvil_url: str,
    anvil_chain: Chain,
    pact: Any,
    tmp_path: Path,
) -> None:
    chain = anvil_chain
    env = settlement_env(
        fault_database,
        pact.provider.public_key_b58,
        PACT_SETTLEMENT_SIGNING_KEY=b58encode(Keypair.generate().seed),
        PACT_SETTLEMENT_ENABLED_RAILS="ledger,evm",
        PACT_SETTLEMENT_EVM_RPC_URL=anvil_url,
        PACT_SETTLEMENT_EVM_OPERATOR_KEY=chain.operator.key.hex(),
        PACT_SETTLEMENT_EVM_CONTRACT_ADDRESS=chain.escrow,
        PACT_SETTLEMENT_EVM_CHAIN_ID=str(ANVIL_CHAIN_ID),
        PACT_SETTLEMENT_EVM_POLL_INTERVAL_S="0.05",
    )
    migrate(env, tmp_path)
    replicas = [SettlementProcess(env, tmp_path, workers=WORKERS) for _ in range(REPLICAS)]
    nonce_before = await chain.w3.eth.get_transaction_count(chain.operator.address)
    try:
        await asyncio.gather(*(asyncio.to_thread(r.start) for r in replicas))
        clients = [httpx.AsyncClient(base_url=r.url, timeout=60) for r in replicas]
        try:
            for agent, address in (
                (pact.buyer.public_key_b58, chain.buyer.address),
                (pact.provider.public_key_b58, chain.seller.address),
            ):
                r = await clients[0].put(
                    f"/v1/accounts/{agent}/payment-profiles/evm",
                    json={"evm_address": address},
                    headers=ADMIN_AUTH,
                )
                assert r.status_code in (200, 201), r.text

            accepts = [pact.accept(price=PRICE, bond=Decimal(0)) for _ in range(LOCKS)]
            gate = asyncio.Semaphore(CONCURRENT)

            async def create(i: int, accept: dict[str, Any]) -> httpx.Response:
                async with gate:
                    return await clients[i % REPLICAS].post(
                        "/v1/settlements",
                        json={"accept": accept, "rail": "evm"},
                        headers={
                            **PROVIDER_AUTH,
                            "Idempotency-Key": f"accept-{accept['message_hash_hex']}",
                        },
                    )

            answers = await asyncio.gather(*(create(i, a) for i, a in enumerate(accepts)))
        finally:
            for client in clients:
                await client.aclose()
        failed = [(r.status_code, r.text[:300]) for r in answers if r.status_code != 201]
        assert failed == [], f"{len(failed)} of {LOCKS} locks failed: {failed[:3]}"
        assert {r.json()["state"] for r in answers} == {"locked"}

        gateway = chain.gateway()
        for accept in accepts:
            eid = gateway.escrow_id(
                accept["message"]["intent_id"], chain.buyer.address, chain.seller.address
            )
            state = await gateway.get_escrow(eid)
            assert (state.status.name, state.amount_wei) == ("LOCKED", int(PRICE * ETH))
        nonce_after = await chain.w3.eth.get_transaction_count(chain.operator.address)
        assert nonce_after - nonce_before == LOCKS  # one transaction per lock, none doubled
    except BaseException:
        for replica in replicas:
            print(replica.output())
        raise
    finally:
        for replica in replicas:
            replica.close()
