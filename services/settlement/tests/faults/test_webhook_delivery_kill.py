"""SIGKILL the settlement process while it is delivering outbound webhooks, restart it.

A real ``pact-settlement serve`` on Postgres delivers to a receiver in this test (uvicorn,
in-process) that verifies every ``Pact-Signature`` and dedups by event id, as the README tells
integrators to. The receiver is down (503) while the settlements are made, so their events
wait in the outbox being retried; then it comes back and kills the service in the middle of a
delivery (the request has arrived, the answer never reaches the sender); it also answers some
first deliveries with 500.
Each ACCEPT is also sent twice (the provider's retry). Proves: after the restart every event
in the outbox is delivered, each exactly once after dedup, none lost; the one in flight at the
kill arrived again (at least once, never zero times); retried requests add no events.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from fixtures.faults import ADMIN_AUTH, PROVIDER_AUTH, Stack, http_receiver, running_stack
from fixtures.waits import HANG_GUARD_S
from pact_schema import Keypair, now_ms
from pact_settlement.outbound_webhooks.signing import SIGNATURE_HEADER, verify
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

pytestmark = [pytest.mark.faults, pytest.mark.postgres, pytest.mark.processes]

BEFORE_KILL = 6  # settlements made before the kill, two events each (created, locked)
AFTER_RESTART = 2
KILL_ON_REQUEST = 2  # counted from when the receiver is back up


class DedupReceiver:
    """An integrator's endpoint, written as the README's recipe says."""

    def __init__(self) -> None:
        self.secret = ""
        self.processed: Counter[str] = Counter()  # what the integrator acted on
        self.arrivals: Counter[str] = Counter()  # every verified request
        self.bad_signatures = 0
        self.down = True
        self.up_requests = 0
        self.on_request: Any = None
        self.cut_off: str | None = None  # the event whose delivery the kill cut off
        self.after_kill: Counter[str] = Counter()
        self.refused_once: set[str] = set()

    async def hook(self, request: Request) -> Response:
        try:
            body = await request.body()
        except ClientDisconnect:  # the sender was killed mid-request
            return Response(status_code=499)
        header = request.headers.get(SIGNATURE_HEADER, "")
        if not verify(self.secret, header, body, now=now_ms() // 1000):
            self.bad_signatures += 1
            return Response(status_code=400)
        event_id = request.headers["Pact-Event-Id"]
        self.arrivals[event_id] += 1
        if self.down:
            return Response(status_code=503)
        self.up_requests += 1
        if self.cut_off is not None:
            self.after_kill[event_id] += 1
        elif self.on_request is not None and await self.on_request(self.up_requests):
            self.cut_off = event_id
        # Every third new event is refused once: the retry path runs alongside the crash.
        if len(self.arrivals) % 3 == 0 and event_id not in self.refused_once:
            self.refused_once.add(event_id)
            return Response(status_code=500)
        if event_id not in self.processed:  # dedup by event id
            self.processed[event_id] += 1
        return Response(status_code=204)


async def _outbox(dsn: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch("SELECT event_id, status, attempts FROM webhook_deliveries"))
    finally:
        await conn.close()


async def test_sigkill_mid_delivery_delivers_every_event_exactly_once_after_dedup(
    fault_database: str, pact: Any, tmp_path: Path
) -> None:
    receiver = DedupReceiver()
    settings = {
        "PACT_SETTLEMENT_WORKERS_ENABLED": "true",
        "PACT_SETTLEMENT_REQUIRE_SELLER_BOND": "false",
        "PACT_SETTLEMENT_WEBHOOK_INTERVAL_S": "0.1",
        "PACT_SETTLEMENT_WEBHOOK_TIMEOUT_S": "1",
        "PACT_SETTLEMENT_WEBHOOK_RETRY_BASE_S": "0.2",
    }
    async with (
        http_receiver(receiver.hook) as hook_url,
        running_stack(fault_database, tmp_path, pact.provider, settings=settings) as stack,
    ):
        rows = await _kill_mid_delivery_and_restart(stack, receiver, hook_url, pact)

    events = {row["event_id"] for row in rows}
    assert len(events) == len(rows) == 2 * (BEFORE_KILL + AFTER_RESTART)
    assert {row["status"] for row in rows} == {"delivered"}, rows
    assert receiver.bad_signatures == 0
    # Every event processed exactly once by the deduplicating receiver; none lost.
    assert set(receiver.processed) == events
    assert set(receiver.processed.values()) == {1}
    # At least once underneath: the delivery cut off by the kill came again after the restart.
    assert receiver.cut_off in events
    assert receiver.after_kill[receiver.cut_off] >= 1
    assert receiver.refused_once


async def _kill_mid_delivery_and_restart(
    stack: Stack, receiver: DedupReceiver, hook_url: str, pact: Any
) -> list[asyncpg.Record]:
    """Settlements while the receiver is down, the kill mid-delivery, the restart, the
    provider's retries and more settlements; the outbox once it is all delivered."""
    server = stack.settlement
    killed = asyncio.Event()

    async def kill_mid_delivery(arrived: int) -> bool:
        if arrived != KILL_ON_REQUEST or killed.is_set():
            return False
        await asyncio.to_thread(server.kill)  # this request's answer never reaches it
        killed.set()
        return True

    async with httpx.AsyncClient(base_url=server.url, timeout=15) as http:
        r = await http.post("/v1/webhook-endpoints", json={"url": hook_url}, headers=ADMIN_AUTH)
        assert r.status_code == 201, r.text
        receiver.secret = r.json()["secret"]
        accepts = [await _settle(http, pact) for _ in range(BEFORE_KILL)]
    receiver.on_request = kill_mid_delivery
    receiver.down = False

    deadline = time.monotonic() + HANG_GUARD_S
    while not killed.is_set() and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    assert killed.is_set(), f"the kill never happened: {receiver.arrivals}"
    assert server.proc is not None
    assert server.proc.returncode == -9

    await asyncio.to_thread(server.start)
    async with httpx.AsyncClient(base_url=server.url, timeout=15) as http:
        for accept in accepts:  # the provider's retries: the same settlements, no events
            r = await _create(http, accept)
            assert r.status_code == 200, r.text
        for _ in range(AFTER_RESTART):
            await _settle(http, pact)

    deadline = time.monotonic() + HANG_GUARD_S
    rows = await _outbox(stack.dsn)
    while time.monotonic() < deadline and any(row["status"] != "delivered" for row in rows):
        await asyncio.sleep(0.2)
        rows = await _outbox(stack.dsn)
    return rows


async def _create(http: httpx.AsyncClient, accept: dict[str, Any]) -> httpx.Response:
    return await http.post(
        "/v1/settlements",
        json={"accept": accept, "rail": None},
        headers={**PROVIDER_AUTH, "Idempotency-Key": f"accept-{accept['message_hash_hex']}"},
    )


async def _settle(http: httpx.AsyncClient, pact: Any) -> dict[str, Any]:
    buyer = Keypair.generate()
    r = await http.post(
        f"/v1/accounts/{buyer.public_key_b58}/deposits",
        json={"amount": "1"},
        headers={**ADMIN_AUTH, "Idempotency-Key": f"dep-{buyer.public_key_b58}"},
    )
    assert r.status_code == 201, r.text
    accept = pact.accept(buyer=buyer, delivery_in_ms=120_000, valid_for_ms=120_000)
    r = await _create(http, accept)
    assert r.status_code == 201, r.text
    assert r.json()["state"] == "locked"
    return accept
