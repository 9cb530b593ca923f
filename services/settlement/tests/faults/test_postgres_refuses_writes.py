"""Postgres that answers reads but refuses writes: read-only, then disk full.

Read-only is the database-level switch ``ALTER DATABASE … SET default_transaction_read_only``
with the service's sessions ended, so the service reconnects into read-only sessions — which,
like sessions opened against a standby, stay read-only after the database is switched back.
Disk full is real: the database lives in a tablespace on a small tmpfs that the test fills up,
so Postgres fails to extend a table file (SQLSTATE 53100, "No space left on device").

Proves, for both: every refused write is a 503 problem with ``Retry-After`` (never a 500) and
leaves nothing half-done, reads keep working, ``/readyz`` is red while writes fail and green
after; for read-only also that the sessions opened read-only are recycled after recovery (the
service takes writes again without a restart), and that the sweeper and the reconciler back
off — one warning per pass, pauses doubling up to ``WORKER_MAX_BACKOFF_S``, no traceback —
and finish every settlement that fell due once the database takes writes again.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
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
    SmallDisk,
    asyncpg_dsn,
    cluster_database,
    ledger_totals,
    migrate,
    pg_exec,
    run_blocking,
    settlement_env,
    wait_for,
)
from pact_schema import Keypair

pytestmark = [pytest.mark.faults, pytest.mark.postgres]

PRICE = Decimal("0.00008")
SWEEP_S = 0.1
MAX_BACKOFF_S = 1.6
HOLD_S = 1.0  # WRITE_REFUSAL_HOLD_S
MARGIN_S = 10.0  # scheduling on a busy 2-core CI box
DUE = 8  # settlements whose delivery deadline passes while the database is read-only


def _env(url: str, provider_key: str) -> dict[str, str]:
    return settlement_env(
        url,
        provider_key,
        PACT_SETTLEMENT_SWEEP_INTERVAL_S=str(SWEEP_S),
        PACT_SETTLEMENT_RECONCILE_INTERVAL_S=str(SWEEP_S),
        PACT_SETTLEMENT_WORKER_MAX_BACKOFF_S=str(MAX_BACKOFF_S),
        PACT_SETTLEMENT_WRITE_REFUSAL_HOLD_S=str(HOLD_S),
        PACT_SETTLEMENT_REQUIRE_SELLER_BOND="false",  # about the buyer's money
    )


class Service:
    """The settlement process, an HTTP client and a buyer with a deposit."""

    def __init__(self, server: SettlementProcess, http: httpx.AsyncClient, pact: Any) -> None:
        self.server, self.http, self.pact = server, http, pact
        self.buyer = Keypair.generate()

    async def deposit(self, amount: str) -> httpx.Response:
        return await self.http.post(
            f"/v1/accounts/{self.buyer.public_key_b58}/deposits",
            json={"amount": amount},
            headers={**ADMIN_AUTH, "Idempotency-Key": f"deposit-{time.monotonic_ns()}"},
        )

    async def create(self, *, delivery_in_ms: int = 120_000) -> httpx.Response:
        accept = self.pact.accept(buyer=self.buyer, price=PRICE, delivery_in_ms=delivery_in_ms)
        return await self.http.post(
            "/v1/settlements",
            json={"accept": accept, "rail": None},
            headers={**PROVIDER_AUTH, "Idempotency-Key": f"accept-{accept['message_hash_hex']}"},
        )

    async def account(self) -> dict[str, Any]:
        r = await self.http.get(f"/v1/accounts/{self.buyer.public_key_b58}", headers=ADMIN_AUTH)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    def log_lines(self) -> list[dict[str, Any]]:
        lines = []
        for raw in Path(self.server.log.name).read_text(errors="replace").splitlines():
            try:
                lines.append(json.loads(raw))
            except ValueError:
                lines.append({"event": "raw", "text": raw})
        return lines


def assert_refused(r: httpx.Response, reason: str) -> None:
    assert r.status_code == 503, r.text
    assert r.headers["retry-after"]
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert (body["code"], body["reason"]) == ("DATABASE_UNAVAILABLE", reason), body


async def _states(dsn: str) -> dict[str, int]:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        rows = await conn.fetch("SELECT state, count(*) AS n FROM settlements GROUP BY state")
    finally:
        await conn.close()
    return {r["state"]: r["n"] for r in rows}


async def test_read_only_postgres_is_503_red_recycled_and_backed_off(
    cluster: Cluster, pact: Any, tmp_path: Path
) -> None:
    with cluster_database(cluster) as url:
        env = _env(url, pact.provider.public_key_b58)
        migrate(env, tmp_path)
        server = SettlementProcess(env, tmp_path)
        try:
            server.start()
            async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
                await _read_only(Service(server, http, pact), cluster, url)
        except BaseException:
            print(server.output())
            raise
        finally:
            server.close()


async def _read_only(svc: Service, cluster: Cluster, url: str) -> None:
    name = url.rsplit("/", 1)[1]
    assert (await svc.deposit("1")).status_code == 201
    delivery_ms = 4_000
    made = time.monotonic()
    for _ in range(DUE):
        r = await svc.create(delivery_in_ms=delivery_ms)
        assert r.status_code == 201, r.text
    await pg_exec(
        cluster.admin_dsn,
        f'ALTER DATABASE "{name}" SET default_transaction_read_only = on',
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "  # noqa: S608 (our own name)
        f"WHERE datname = '{name}' AND pid <> pg_backend_pid()",
    )
    assert time.monotonic() - made < delivery_ms / 1000, "the deadlines passed too early"
    seen_before = len(svc.log_lines())

    # Writes are refused with 503 (the first after the sessions were ended may say so too).
    for _attempt in range(3):
        r = await svc.create()
        if r.status_code == 503 and r.json().get("reason") == "read_only":
            break
        assert r.status_code == 503, r.text
    assert_refused(r, "read_only")
    assert_refused(await svc.deposit("1"), "read_only")
    assert Decimal((await svc.account())["locked"]) == PRICE * DUE  # reads still work
    ready = await wait_for(svc.http, "/readyz", 503, within=MARGIN_S)
    assert ready.json()["database"] == "refusing_writes"

    # The deadlines pass: the sweeper fails on them, and backs off instead of retrying each
    # settlement every pass. Wait for its fourth failed pass (bounded by the pauses).
    bound = sum(min(SWEEP_S * 2**n, MAX_BACKOFF_S) for n in range(1, 5))
    deadline = time.monotonic() + delivery_ms / 1000 + bound + MARGIN_S
    while True:
        lines = svc.log_lines()[seen_before:]
        warned = [
            line
            for line in lines
            if line.get("event") == "workers.database_unavailable"
            and line.get("worker") == "sweeper"
            and line.get("reason") == "read_only"
        ]
        if len(warned) >= 4:
            break
        assert time.monotonic() < deadline, lines[-20:]
        await asyncio.sleep(0.1)
    assert [w["retry_in_s"] for w in warned[:4]] == [
        round(min(SWEEP_S * 2**n, MAX_BACKOFF_S), 3) for n in range(1, 5)
    ]
    noisy = [
        line
        for line in lines
        if line.get("event") in ("sweeper.error", "reconciler.error", "workers.pass_failed")
        or "Traceback" in json.dumps(line)
    ]
    assert noisy == [], noisy[:3]

    # Recovery: the database takes writes again; the service's read-only sessions must go.
    await pg_exec(cluster.admin_dsn, f'ALTER DATABASE "{name}" RESET default_transaction_read_only')
    await wait_for(svc.http, "/readyz", 200, within=HOLD_S + MAX_BACKOFF_S + MARGIN_S)
    refused_after = 0
    while (r := await svc.create()).status_code != 201:
        assert_refused(r, "read_only")  # a pooled read-only session, recycled by this refusal
        refused_after += 1
        assert refused_after <= 1, "sessions opened read-only were not recycled"
    for _ in range(5):
        assert (await svc.create()).status_code == 201
    assert (await svc.deposit("1")).status_code == 201

    # The sweeper resumes within its longest pause and refunds every settlement that fell due.
    deadline = time.monotonic() + MAX_BACKOFF_S + MARGIN_S
    while (states := await _states(asyncpg_dsn(url))).get("refunded", 0) < DUE:
        assert time.monotonic() < deadline, states
        await asyncio.sleep(0.1)
    assert states == {"refunded": DUE, "locked": 6}
    account = await svc.account()
    assert Decimal(account["locked"]) == PRICE * 6
    assert Decimal(account["available"]) + Decimal(account["locked"]) == 2
    totals = await ledger_totals(asyncpg_dsn(url))
    assert totals["all"] == 0, totals
    assert totals["agents"] == totals["deposits"] == 2, totals


@pytest.fixture
def small_disk(cluster: Cluster) -> Iterator[tuple[SmallDisk, str]]:
    """A 40 MB tmpfs and a tablespace on it (an empty database takes about 8 MB)."""
    disk = SmallDisk(size_mb=40)
    space = f"faults_disk_{int(time.monotonic_ns()) % 10**9}"
    try:
        run_blocking(
            pg_exec(cluster.admin_dsn, f"CREATE TABLESPACE {space} LOCATION '{disk.space}'")
        )
        try:
            yield disk, space
        finally:
            disk.free()
            run_blocking(pg_exec(cluster.admin_dsn, f"DROP TABLESPACE IF EXISTS {space}"))
    finally:
        disk.close()


async def test_full_disk_is_503_red_and_loses_nothing(
    cluster: Cluster, small_disk: tuple[SmallDisk, str], pact: Any, tmp_path: Path
) -> None:
    disk, space = small_disk
    with cluster_database(cluster, tablespace=space) as url:
        env = _env(url, pact.provider.public_key_b58)
        migrate(env, tmp_path)
        server = SettlementProcess(env, tmp_path)
        try:
            server.start()
            async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
                await _disk_full(Service(server, http, pact), disk, url)
        except BaseException:
            print(server.output())
            raise
        finally:
            server.close()


async def _disk_full(svc: Service, disk: SmallDisk, url: str) -> None:
    assert (await svc.deposit("1")).status_code == 201
    acked = 0
    for _ in range(3):
        assert (await svc.create()).status_code == 201
        acked += 1
    assert disk.fill() > 0
    # Creates go on until one needs a new page (each writes seven tables and their indexes).
    refused: httpx.Response | None = None
    for _ in range(200):
        r = await svc.create()
        if r.status_code == 201:
            acked += 1
            continue
        refused = r
        break
    assert refused is not None, "200 creates fitted on a full disk"
    assert_refused(refused, "disk_full")
    ready = await svc.http.get("/readyz")
    assert ready.status_code == 503, ready.text
    assert (ready.json()["database"], ready.json()["reason"]) == ("refusing_writes", "disk_full")
    assert Decimal((await svc.account())["locked"]) == PRICE * acked  # reads still work

    disk.free()
    for _ in range(5):
        assert (await svc.create()).status_code == 201
        acked += 1
    await wait_for(svc.http, "/readyz", 200, within=HOLD_S + MARGIN_S)

    assert await _states(asyncpg_dsn(url)) == {"locked": acked}  # nothing half-done
    account = await svc.account()
    assert Decimal(account["locked"]) == PRICE * acked
    assert Decimal(account["available"]) + Decimal(account["locked"]) == 1
    totals = await ledger_totals(asyncpg_dsn(url))
    assert totals["all"] == 0, totals
    assert totals["agents"] == totals["deposits"] == 1, totals
