"""Freeze Postgres (SIGSTOP every process of the cluster) under load, then thaw it.

A frozen database keeps its connections open and answers nothing: no server-side timeout
fires, only the client's own bounds can end a request. Proves: every request made during the
freeze ends within ``REQUEST_TIMEOUT_S`` (+ scheduling margin) with 503 problem+json and
``Retry-After`` (``/readyz`` too); nothing is half-done (every create that was answered 503 is
either absent or complete, no settlement is left ``pending``); resending each refused ACCEPT
under its Idempotency-Key after the thaw settles it exactly once, and the ledger still sums to
the deposits.
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
    Cluster,
    SettlementProcess,
    asyncpg_dsn,
    cluster_database,
    ledger_totals,
    migrate,
    settlement_env,
    wait_for,
)
from pact_schema import Keypair

pytestmark = [pytest.mark.faults, pytest.mark.postgres]

BUDGET_S = 2.0  # REQUEST_TIMEOUT_S
MARGIN_S = 2.0  # scheduling on a busy 2-core CI box
CONCURRENT = 6
PRICE = Decimal("0.00008")


async def test_frozen_postgres_answers_503_within_the_request_budget(
    cluster: Cluster, pact: Any, tmp_path: Path
) -> None:
    with cluster_database(cluster) as url:
        await _freeze(cluster, url, pact, tmp_path)


async def _freeze(cluster: Cluster, url: str, pact: Any, tmp_path: Path) -> None:
    env = settlement_env(
        url,
        pact.provider.public_key_b58,
        PACT_SETTLEMENT_REQUEST_TIMEOUT_S=str(BUDGET_S),
        PACT_SETTLEMENT_REQUIRE_SELLER_BOND="false",  # about the buyer's money
        PACT_SETTLEMENT_DB_COMMAND_TIMEOUT_S="1.5",
        PACT_SETTLEMENT_DB_STATEMENT_TIMEOUT_MS="1000",
        PACT_SETTLEMENT_DB_LOCK_TIMEOUT_MS="1000",
        PACT_SETTLEMENT_DB_POOL_TIMEOUT_S="1",
        PACT_SETTLEMENT_SWEEP_INTERVAL_S="0.2",
        PACT_SETTLEMENT_RECONCILE_INTERVAL_S="0.2",
        PACT_SETTLEMENT_WORKER_MAX_BACKOFF_S="1",
    )
    migrate(env, tmp_path)
    server = SettlementProcess(env, tmp_path)
    buyer = Keypair.generate()
    try:
        server.start()
        async with httpx.AsyncClient(base_url=server.url, timeout=BUDGET_S + MARGIN_S) as http:
            r = await http.post(
                f"/v1/accounts/{buyer.public_key_b58}/deposits",
                json={"amount": "1"},
                headers={**ADMIN_AUTH, "Idempotency-Key": "freeze-deposit"},
            )
            assert r.status_code == 201, r.text

            def accept() -> dict[str, Any]:
                return pact.accept(buyer=buyer, price=PRICE, delivery_in_ms=120_000)

            async def create(envelope: dict[str, Any]) -> httpx.Response:
                return await http.post(
                    "/v1/settlements",
                    json={"accept": envelope, "rail": None},
                    headers={
                        **PROVIDER_AUTH,
                        "Idempotency-Key": f"accept-{envelope['message_hash_hex']}",
                    },
                )

            before = [accept() for _ in range(3)]
            for envelope in before:
                assert (await create(envelope)).status_code == 201

            during = [accept() for _ in range(CONCURRENT)]
            await asyncio.to_thread(cluster.freeze)
            try:
                timings: list[tuple[str, float, httpx.Response | Exception]] = []

                async def timed(name: str, call: Any) -> None:
                    started = time.monotonic()
                    try:
                        result: httpx.Response | Exception = await call
                    except httpx.HTTPError as exc:  # a request that outlived the client's bound
                        result = exc
                    timings.append((name, time.monotonic() - started, result))

                await asyncio.gather(
                    *(timed("create", create(e)) for e in during),
                    timed(
                        "read", http.get(f"/v1/accounts/{buyer.public_key_b58}", headers=ADMIN_AUTH)
                    ),
                    timed("readyz", http.get("/readyz")),
                )
            finally:
                await asyncio.to_thread(cluster.thaw)

            hung = [(n, s, repr(r)) for n, s, r in timings if isinstance(r, Exception)]
            assert not hung, f"requests outlived REQUEST_TIMEOUT_S + margin: {hung}"
            for name, _seconds, response in timings:
                assert isinstance(response, httpx.Response)
                assert response.status_code == 503, (name, response.status_code, response.text)
                assert response.headers.get("retry-after"), name
                if name != "readyz":
                    assert response.headers["content-type"].startswith("application/problem+json")
                    assert response.json()["code"] in ("DEADLINE_EXCEEDED", "DATABASE_UNAVAILABLE")

            await wait_for(http, "/readyz", 200, within=15)
            # Resending every refused ACCEPT settles it once (201, or 200 if it had committed).
            for envelope in during:
                r = await create(envelope)
                assert r.status_code in (200, 201), r.text
                assert r.json()["state"] == "locked"
            for envelope in before:
                assert (await create(envelope)).status_code == 200
            account = (
                await http.get(f"/v1/accounts/{buyer.public_key_b58}", headers=ADMIN_AUTH)
            ).json()
            settled = len(before) + len(during)
            assert Decimal(account["locked"]) == PRICE * settled
            assert Decimal(account["available"]) + Decimal(account["locked"]) == 1

        dsn = asyncpg_dsn(url)
        conn = await asyncpg.connect(dsn, timeout=10)
        try:
            states = await conn.fetch("SELECT state, count(*) AS n FROM settlements GROUP BY state")
            locks = await conn.fetchval(
                "SELECT count(*) FROM journal_transactions WHERE kind = 'lock'"
            )
        finally:
            await conn.close()
        assert {r["state"]: r["n"] for r in states} == {"locked": settled}
        assert locks == settled  # one lock journal entry per settlement, none doubled
        totals = await ledger_totals(dsn)
        assert totals["all"] == 0, totals
        assert totals["agents"] == totals["deposits"] == 1, totals
        slowest = max(seconds for _, seconds, _ in timings)
        print(f"\nfreeze: {len(timings)} requests answered 503, slowest {slowest:.2f}s")
    except BaseException:
        print(server.output())
        raise
    finally:
        server.close()
