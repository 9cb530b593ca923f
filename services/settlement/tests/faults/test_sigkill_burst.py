"""SIGKILL the settlement process in the middle of a burst of ACCEPTs, restart it, resend.

Proves: every settlement is in exactly one state and nothing is half-done after the crash
(no pending rail operation survives the reconciler), resending each ACCEPT under the same
Idempotency-Key returns the same settlement (or creates it once if the first attempt died),
no intent has two lock journal entries, and the ledger still sums to the deposits.
"""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from fixtures.faults import (
    ADMIN_AUTH,
    PROVIDER_AUTH,
    SettlementProcess,
    asyncpg_dsn,
    ledger_totals,
    migrate,
    settlement_env,
)
from fixtures.waits import HANG_GUARD_S
from pact_schema import Keypair

pytestmark = [pytest.mark.faults, pytest.mark.postgres]

BUYERS = 10
PER_BUYER = 8  # 80 ACCEPTs
DEPOSIT = Decimal("1")
PRICE = Decimal("0.00008")
TERMINAL_OR_RESUMABLE = {"locked", "failed", "committed", "delivered", "released", "refunded"}


async def test_sigkill_during_a_burst_loses_and_doubles_nothing(
    fault_database: str, pact: Any, tmp_path: Path
) -> None:
    provider = pact.provider
    env = settlement_env(
        fault_database,
        provider.public_key_b58,
        PACT_SETTLEMENT_WORKERS_ENABLED="true",
        # The subject is the buyer's money through the fault; the ledger sums below count it
        # alone. The seller's bond (on by default) is exercised by test_conservation.py.
        PACT_SETTLEMENT_REQUIRE_SELLER_BOND="false",
        PACT_SETTLEMENT_SWEEP_INTERVAL_S="0.2",
        PACT_SETTLEMENT_RECONCILE_INTERVAL_S="0.2",
        PACT_SETTLEMENT_RAIL_CALL_TIMEOUT_S="1",
        PACT_SETTLEMENT_RECONCILE_GRACE_S="1.5",
    )
    migrate(env, tmp_path)
    dsn = asyncpg_dsn(fault_database)
    server = SettlementProcess(env, tmp_path)
    try:
        server.start()
        buyers = [Keypair.generate() for _ in range(BUYERS)]
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            for buyer in buyers:
                r = await http.post(
                    f"/v1/accounts/{buyer.public_key_b58}/deposits",
                    json={"amount": str(DEPOSIT)},
                    headers={**ADMIN_AUTH, "Idempotency-Key": f"dep-{buyer.public_key_b58}"},
                )
                assert r.status_code == 201, r.text
        accepts = [
            pact.accept(buyer=buyer, price=PRICE, delivery_in_ms=120_000, valid_for_ms=120_000)
            for buyer in buyers
            for _ in range(PER_BUYER)
        ]

        answered: dict[str, httpx.Response] = {}
        kill_at = int(len(accepts) * 0.3)
        killed = asyncio.Event()

        async def send(http: httpx.AsyncClient, accept: dict[str, Any]) -> None:
            key = f"accept-{accept['message_hash_hex']}"
            try:
                r = await http.post(
                    "/v1/settlements",
                    json={"accept": accept, "rail": None},
                    headers={**PROVIDER_AUTH, "Idempotency-Key": key},
                )
            except httpx.HTTPError:
                return  # died with the process
            answered[accept["message"]["intent_id"]] = r
            if len(answered) >= kill_at and not killed.is_set():
                killed.set()
                server.kill()

        limits = httpx.Limits(max_connections=len(accepts))
        async with httpx.AsyncClient(base_url=server.url, timeout=15, limits=limits) as http:
            await asyncio.gather(*(send(http, a) for a in accepts))
        assert killed.is_set(), "the burst finished before the kill"
        assert server.proc is not None
        assert server.proc.returncode == -9
        before_kill = dict(answered)
        assert all(r.status_code in (200, 201) for r in before_kill.values()), [
            (r.status_code, r.text) for r in before_kill.values() if r.status_code >= 300
        ]

        # Straight after the crash, in the database: no half-done lock, no double lock.
        await _check_database(dsn, buyers)

        server.start()
        # Resend every ACCEPT (the provider's retry): same key → same settlement.
        async with httpx.AsyncClient(base_url=server.url, timeout=15) as http:
            replies = await asyncio.gather(
                *(
                    http.post(
                        "/v1/settlements",
                        json={"accept": a, "rail": None},
                        headers={
                            **PROVIDER_AUTH,
                            "Idempotency-Key": f"accept-{a['message_hash_hex']}",
                        },
                    )
                    for a in accepts
                )
            )
            for accept, reply in zip(accepts, replies, strict=True):
                intent_id = accept["message"]["intent_id"]
                assert reply.status_code in (200, 201, 402), reply.text
                first = before_kill.get(intent_id)
                if first is not None:
                    assert reply.json()["id"] == first.json()["id"]
                    assert reply.json()["state"] == first.json()["state"]

            # The reconciler leaves nothing pending.
            deadline = time.monotonic() + HANG_GUARD_S
            while await _pending_operations(dsn) and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.2)
            assert await _pending_operations(dsn) == 0

            # Through the API: every intent has exactly one settlement, in a real state.
            for accept in accepts:
                intent_id = accept["message"]["intent_id"]
                r = await http.get(f"/v1/settlements/{intent_id}", headers=PROVIDER_AUTH)
                assert r.status_code == 200, r.text
                assert r.json()["state"] in TERMINAL_OR_RESUMABLE
            for buyer in buyers:
                r = await http.get(f"/v1/accounts/{buyer.public_key_b58}", headers=ADMIN_AUTH)
                body = r.json()
                assert Decimal(body["available"]) + Decimal(body["locked"]) == DEPOSIT

        rows = await _check_database(dsn, buyers)
        assert rows == len(accepts)
    except BaseException:
        print(server.output())
        raise
    finally:
        server.close()


async def _pending_operations(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(
            await conn.fetchval("SELECT count(*) FROM rail_operations WHERE status = 'pending'")
        )
    finally:
        await conn.close()


async def _check_database(dsn: str, buyers: list[Keypair]) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        double_locks = await conn.fetch(
            "SELECT settlement_id, count(*) FROM journal_transactions WHERE kind = 'lock'"
            " GROUP BY settlement_id HAVING count(*) > 1"
        )
        assert double_locks == []
        dup_intents = await conn.fetch(
            "SELECT intent_id FROM settlements GROUP BY intent_id HAVING count(*) > 1"
        )
        assert dup_intents == []
        # Every locked-ish settlement has exactly one lock movement; a failed one has none.
        mismatched = await conn.fetch(
            "SELECT s.id, s.state, count(t.id) AS locks FROM settlements s"
            " LEFT JOIN journal_transactions t ON t.settlement_id = s.id AND t.kind = 'lock'"
            " GROUP BY s.id, s.state"
            " HAVING (s.state IN ('locked', 'committed', 'delivered', 'released', 'refunded',"
            " 'slashed') AND count(t.id) <> 1) OR (s.state IN ('pending', 'failed')"
            " AND count(t.id) <> 0)"
        )
        assert mismatched == [], mismatched
        # Each settlement's state is the to_state of its last event.
        torn = await conn.fetch(
            "SELECT s.id FROM settlements s JOIN LATERAL (SELECT to_state FROM settlement_events e"
            " WHERE e.settlement_id = s.id ORDER BY seq DESC LIMIT 1) last ON true"
            " WHERE last.to_state <> s.state"
        )
        assert torn == []
        held = await conn.fetchval(
            "SELECT COALESCE(SUM(amount), 0) FROM settlements"
            " WHERE state IN ('locked', 'committed', 'delivered')"
        )
        count = int(await conn.fetchval("SELECT count(*) FROM settlements"))
    finally:
        await conn.close()
    totals = await ledger_totals(dsn)
    assert totals["all"] == 0, totals  # external (negative) + every agent
    assert totals["legs"] == 0, totals
    assert totals["agents"] == totals["deposits"] == DEPOSIT * len(buyers), totals
    assert totals["agents_locked"] == Decimal(held), totals
    return count
