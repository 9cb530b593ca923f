"""Stop Postgres under load and start it again.

A throw-away cluster (``pg_createcluster``, see ``fixtures.faults.Cluster``) on a free
port, never the machine's main one.
Proves: ``/readyz`` goes 503 within seconds of the stop and 200 after the start; requests in
the gap fail fast with 503 problem+json + ``Retry-After`` (no 500, none slower than the pool
timeout + margin); every settlement acknowledged with a 2xx, before or after, still exists with
its state afterwards, and the ledger still sums to the deposits.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

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
)
from pact_schema import Keypair

pytestmark = [pytest.mark.faults, pytest.mark.postgres]

POOL_TIMEOUT_S = 2.0
MARGIN_S = 3.0  # one request may wait a pool timeout, plus scheduling on a busy CI box
PRICE = Decimal("0.00008")


async def test_postgres_outage_answers_503_fast_and_loses_nothing(
    cluster: Cluster, pact: Any, tmp_path: Path
) -> None:
    with cluster_database(cluster) as url:
        await _outage(cluster, url, pact, tmp_path)


async def _outage(cluster: Cluster, url: str, pact: Any, tmp_path: Path) -> None:
    env = settlement_env(
        url,
        pact.provider.public_key_b58,
        PACT_SETTLEMENT_DB_POOL_TIMEOUT_S=str(POOL_TIMEOUT_S),
        # The subject is the buyer's money through the fault; the ledger sums below count it
        # alone. The seller's bond (on by default) is exercised by test_conservation.py.
        PACT_SETTLEMENT_REQUIRE_SELLER_BOND="false",
        PACT_SETTLEMENT_SWEEP_INTERVAL_S="0.5",
        PACT_SETTLEMENT_RECONCILE_INTERVAL_S="0.5",
    )
    migrate(env, tmp_path)
    server = SettlementProcess(env, tmp_path)
    buyer = Keypair.generate()
    acked: dict[str, dict[str, Any]] = {}  # intent_id -> 2xx body
    samples: list[tuple[str, int | None, float, dict[str, str]]] = []  # phase, status, secs, hdrs
    phase = "before"
    try:
        server.start()
        async with httpx.AsyncClient(base_url=server.url, timeout=POOL_TIMEOUT_S + 8) as http:
            r = await http.post(
                f"/v1/accounts/{buyer.public_key_b58}/deposits",
                json={"amount": "1"},
                headers={**ADMIN_AUTH, "Idempotency-Key": "outage-deposit"},
            )
            assert r.status_code == 201, r.text

            stop = asyncio.Event()

            async def load(worker: int) -> None:
                while not stop.is_set():
                    accept = pact.accept(buyer=buyer, price=PRICE, delivery_in_ms=120_000)
                    key = f"accept-{accept['message_hash_hex']}"
                    current = phase
                    started = time.monotonic()
                    try:
                        r = await http.post(
                            "/v1/settlements",
                            json={"accept": accept, "rail": None},
                            headers={**PROVIDER_AUTH, "Idempotency-Key": key},
                        )
                    except httpx.TimeoutException:
                        samples.append((current, None, time.monotonic() - started, {}))
                        continue
                    elapsed = time.monotonic() - started
                    samples.append((current, r.status_code, elapsed, dict(r.headers)))
                    if r.status_code in (200, 201):
                        acked[accept["message"]["intent_id"]] = r.json()
                    elif r.status_code == 503:
                        await asyncio.sleep(0.05)
                    if worker == 0 and r.status_code < 300:
                        g = await http.get(
                            f"/v1/accounts/{buyer.public_key_b58}", headers=ADMIN_AUTH
                        )
                        samples.append((current, g.status_code, 0.0, dict(g.headers)))

            workers = [asyncio.create_task(load(i)) for i in range(4)]
            await _until(lambda: len(acked) >= 3, "settlements acknowledged before the outage")

            phase = "outage"
            await asyncio.to_thread(cluster.ctl, "stop", "-m", "fast")
            stopped = time.monotonic()
            red = await _wait_ready(http, 503, within=5)
            assert red - stopped < 5, "readyz did not turn red"
            # The load keeps running into the outage until requests have met it.
            await _until(
                lambda: sum(1 for s in samples if s[0] == "outage" and s[1] == 503) >= 3,
                "requests refused during the outage",
            )

            phase = "recovery"
            await asyncio.to_thread(cluster.ctl, "start")
            started = time.monotonic()
            await _wait_ready(http, 200, within=15)
            recovered_in = time.monotonic() - started
            phase = "after"
            await _until(
                lambda: any(s[0] == "after" and s[1] in (200, 201) for s in samples),
                "a success after recovery",
            )
            stop.set()
            await asyncio.gather(*workers)

            outage = [s for s in samples if s[0] == "outage"]
            statuses = {s[1] for s in samples}
            assert None not in statuses, "a request hung past its client timeout"
            assert not any(s[1] is not None and s[1] >= 500 and s[1] != 503 for s in samples), [
                s[:3] for s in samples if s[1] and s[1] >= 500 and s[1] != 503
            ]
            refused = [s for s in outage if s[1] == 503]
            assert refused, "no request met the outage"
            assert all(s[3].get("retry-after") for s in samples if s[1] == 503)
            assert all(
                s[3].get("content-type", "").startswith("application/problem+json")
                for s in samples
                if s[1] == 503
            )
            slowest = max(s[2] for s in samples)
            assert slowest < POOL_TIMEOUT_S + MARGIN_S, slowest
            assert [s for s in samples if s[0] == "after" and s[1] in (200, 201)], (
                "no success after recovery"
            )

            # Nothing acknowledged is lost.
            for intent_id, body in acked.items():
                g = await http.get(f"/v1/settlements/{intent_id}", headers=PROVIDER_AUTH)
                assert g.status_code == 200, (intent_id, g.text)
                assert g.json()["id"] == body["id"]
                assert g.json()["state"] == body["state"] == "locked"
            account = (
                await http.get(f"/v1/accounts/{buyer.public_key_b58}", headers=ADMIN_AUTH)
            ).json()
            assert Decimal(account["locked"]) == PRICE * len(acked)
            assert Decimal(account["available"]) + Decimal(account["locked"]) == 1

        totals = await ledger_totals(asyncpg_dsn(url))
        assert totals["all"] == 0, totals
        assert totals["agents"] == totals["deposits"] == 1, totals
        print(
            f"\noutage: {len(samples)} requests, {len(acked)} acknowledged, "
            f"{len(refused)} refused 503 during the outage, slowest {slowest:.2f}s, "
            f"ready again {recovered_in:.2f}s after start"
        )
    except BaseException:
        print(server.output())
        raise
    finally:
        server.close()


async def _until(condition: Callable[[], bool], what: str, *, within: float = 60) -> None:
    """Wait for the load to reach a point (not a fixed time: a busy machine gets there later)."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {within}s")
        await asyncio.sleep(0.05)


async def _wait_ready(http: httpx.AsyncClient, status: int, *, within: float) -> float:
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        try:
            r = await http.get("/readyz", timeout=4)
            last = (r.status_code, r.text)
            if r.status_code == status:
                if status == 503:
                    assert r.headers.get("retry-after")
                return time.monotonic()
        except httpx.HTTPError as exc:
            last = exc
        await asyncio.sleep(0.1)
    raise AssertionError(f"/readyz never answered {status} within {within}s: {last}")
