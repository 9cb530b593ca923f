"""SIGKILL the settlement process while payouts of one balance are in flight, restart it,
retry every request.

A real ``pact-settlement serve`` on Postgres (workers on: the webhook dispatcher delivers)
takes concurrent payouts of one seller's balance, each under its own ``Idempotency-Key``, and
is killed with -9 after the first answers, while others are mid-request. After the restart the
operator's script sends every payout again, same key and body. Proves: each key is paid out
exactly once (never twice, never lost), the balance never goes below zero, money is conserved
per asset (the ledger recomputed from its legs), and a receiver that verifies signatures and
dedups by event id processes each payout's ``payout.created`` and ``payout.paid`` exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from fixtures.faults import ADMIN_AUTH, Stack, http_receiver, ledger_problems, running_stack
from pact_schema import Keypair, now_ms
from pact_settlement.outbound_webhooks.signing import SIGNATURE_HEADER, verify
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

pytestmark = [pytest.mark.faults, pytest.mark.postgres, pytest.mark.processes]

PAYOUTS = 24
AMOUNT = Decimal("0.4")
FUNDS = Decimal(10)  # 24 * 0.4 = 9.6: every payout fits, none more than once
KILL_AFTER = 4  # answers received before the kill


class DedupReceiver:
    def __init__(self) -> None:
        self.secret = ""
        self.processed: Counter[str] = Counter()
        self.types: dict[str, str] = {}
        self.bad_signatures = 0

    async def hook(self, request: Request) -> Response:
        try:
            body = await request.body()
        except ClientDisconnect:
            return Response(status_code=499)
        if not verify(
            self.secret, request.headers.get(SIGNATURE_HEADER, ""), body, now=now_ms() // 1000
        ):
            self.bad_signatures += 1
            return Response(status_code=400)
        event_id = request.headers["Pact-Event-Id"]
        if event_id not in self.processed:  # dedup by event id
            self.processed[event_id] += 1
            event = json.loads(body)
            self.types[event_id] = f"{event['type']}:{event['data']['object']['id']}"
        return Response(status_code=204)


async def _payout(http: httpx.AsyncClient, seller: str, i: int) -> httpx.Response:
    return await http.post(
        f"/v1/accounts/{seller}/payouts",
        json={"amount": str(AMOUNT)},
        headers={**ADMIN_AUTH, "Idempotency-Key": f"kill-po-{i}"},
    )


async def test_sigkill_mid_payouts_pays_each_once_and_announces_each_once(
    fault_database: str, pact: Any, tmp_path: Path
) -> None:
    receiver = DedupReceiver()
    settings = {
        "PACT_SETTLEMENT_WORKERS_ENABLED": "true",
        "PACT_SETTLEMENT_WEBHOOK_INTERVAL_S": "0.1",
        "PACT_SETTLEMENT_WEBHOOK_TIMEOUT_S": "2",
        "PACT_SETTLEMENT_WEBHOOK_RETRY_BASE_S": "0.2",
    }
    async with (
        http_receiver(receiver.hook) as hook_url,
        running_stack(fault_database, tmp_path, pact.provider, settings=settings) as stack,
    ):
        expected = await _kill_mid_payouts_and_retry(stack, receiver, hook_url)
    assert receiver.bad_signatures == 0
    assert sorted(receiver.types.values()) == sorted(expected)  # each event once, none lost
    assert set(receiver.processed.values()) == {1}


async def _kill_mid_payouts_and_retry(
    stack: Stack, receiver: DedupReceiver, hook_url: str
) -> set[str]:
    """The payouts, the kill, the restart and the retries; the events the receiver must get."""
    server = stack.settlement
    seller = Keypair.generate().public_key_b58
    answers: dict[int, httpx.Response] = {}
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        r = await http.post(
            "/v1/webhook-endpoints",
            json={
                "url": hook_url,
                "event_types": ["payout.created", "payout.paid", "payout.failed"],
            },
            headers=ADMIN_AUTH,
        )
        assert r.status_code == 201, r.text
        receiver.secret = r.json()["secret"]
        r = await http.post(
            f"/v1/accounts/{seller}/deposits",
            json={"amount": str(FUNDS)},
            headers={**ADMIN_AUTH, "Idempotency-Key": "kill-funds"},
        )
        assert r.status_code == 201, r.text

        async def one(i: int) -> None:
            # cut off by the kill: the operator's script sends it again after the restart
            with contextlib.suppress(httpx.HTTPError):
                answers[i] = await _payout(http, seller, i)

        tasks = [asyncio.create_task(one(i)) for i in range(PAYOUTS)]
        deadline = time.monotonic() + 60
        while len(answers) < KILL_AFTER and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.005)
        await asyncio.to_thread(server.kill)
        await asyncio.gather(*tasks)
    assert server.proc is not None
    assert server.proc.returncode == -9
    before_kill = {i: r.json()["id"] for i, r in answers.items() if r.status_code == 201}
    assert KILL_AFTER <= len(answers) < PAYOUTS, "the kill came after every answer"

    await asyncio.to_thread(server.start)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        again = await asyncio.gather(*(_payout(http, seller, i) for i in range(PAYOUTS)))
        for i, r in enumerate(again):
            assert r.status_code in (200, 201), r.text
            assert r.json()["status"] == "paid"
            if i in before_kill:
                assert (r.status_code, r.json()["id"]) == (200, before_kill[i])
        ids = {r.json()["id"] for r in again}
        account = (await http.get(f"/v1/accounts/{seller}", headers=ADMIN_AUTH)).json()
        listed = (await http.get(f"/v1/accounts/{seller}/payouts", headers=ADMIN_AUTH)).json()
    assert len(ids) == PAYOUTS  # one payout per key
    assert {p["id"] for p in listed} == ids
    assert Decimal(account["available"]) == FUNDS - PAYOUTS * AMOUNT
    assert Decimal(account["locked"]) == 0

    assert await ledger_problems(stack.dsn) == {
        "assets not summing to zero": [],
        "unbalanced transactions": [],
        "balances off their legs": [],
    }
    conn = await asyncpg.connect(stack.dsn)
    try:
        assets = await conn.fetch("SELECT DISTINCT asset FROM ledger_accounts")
        paid_out = await conn.fetchval(
            "SELECT available FROM ledger_accounts WHERE owner = 'system:payouts'"
        )
    finally:
        await conn.close()
    assert [row["asset"] for row in assets] == ["USD"]
    assert paid_out == PAYOUTS * AMOUNT

    expected = {f"payout.{kind}:{pid}" for pid in ids for kind in ("created", "paid")}
    deadline = time.monotonic() + 60
    while set(receiver.types.values()) != expected and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.2)
    return expected
