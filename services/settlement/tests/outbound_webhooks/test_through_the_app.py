"""Outbound webhooks through the running app, on SQLite and Postgres: registration, events
written with the state changes that caused them (and only when those commit), signed
delivery, retries, failure, replay, and two dispatchers sharing the outbox."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from pact_schema import Keypair
from pact_settlement.outbound_webhooks.models import WebhookDelivery
from pact_settlement.outbound_webhooks.signing import SIGNATURE_HEADER, verify
from pact_settlement.outbound_webhooks.worker import WebhookDispatcher
from pact_settlement.runtime import runtime_of
from pact_settlement.settlements import state_machine
from pact_settlement.settlements.repository import SettlementRepository
from pact_settlement.settlements.state_machine import SettlementEventType
from sqlalchemy import func, select

ADMIN = {"Authorization": "Bearer test-admin-token-0123456789abcdef"}
PROVIDER = {"Authorization": "Bearer test-provider-token-0123456789abcdef"}
HOOK = "https://integrator.example/pact-events"
UNKNOWN_ENDPOINT = "whe_01kb0ybq0g7m4n6p8r0s2t4v6w"
UNKNOWN_EVENT = "evt_01kb0ybq0g7m4n6p8r0s2t4v6w"


@dataclass
class Receiver:
    """An integrator's endpoint: verifies each signature, keeps events by id."""

    secret: str
    clock: Any
    answer: int = 200
    received: list[dict[str, Any]] = field(default_factory=list)
    bad_signatures: int = 0

    def handle(self, request: httpx.Request) -> httpx.Response:
        body = request.content
        if not verify(
            self.secret, request.headers[SIGNATURE_HEADER], body, now=self.clock() // 1000
        ):
            self.bad_signatures += 1
            return httpx.Response(400)
        event = json.loads(body)
        assert request.headers["Pact-Event-Id"] == event["id"]
        self.received.append(event)
        return httpx.Response(self.answer)

    @property
    def ids(self) -> list[str]:
        return [e["id"] for e in self.received]


async def register(client: httpx.AsyncClient, **extra: Any) -> dict[str, Any]:
    r = await client.post("/v1/webhook-endpoints", json={"url": HOOK, **extra}, headers=ADMIN)
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


async def settle_one(api: Any, pact: Any) -> str:
    buyer = Keypair.generate()
    await api.deposit(buyer.public_key_b58, "1")
    r = await api.create(pact.accept(buyer=buyer))
    assert r.status_code == 201, r.text
    assert r.json()["state"] == "locked"
    return str(r.json()["id"])


def dispatcher(app: Any, receiver: Receiver) -> WebhookDispatcher:
    runtime = runtime_of(app)
    return WebhookDispatcher(
        runtime.sessionmaker,
        settings=runtime.settings,
        clock=runtime.clock,
        transport=httpx.MockTransport(receiver.handle),
    )


async def deliveries(app: Any) -> list[WebhookDelivery]:
    async with runtime_of(app).sessionmaker() as session:
        rows = await session.execute(select(WebhookDelivery).order_by(WebhookDelivery.id))
        return list(rows.scalars())


async def test_registration_shows_the_secret_once_and_needs_the_admin_token(
    client: httpx.AsyncClient,
) -> None:
    r = await client.post("/v1/webhook-endpoints", json={"url": HOOK}, headers=PROVIDER)
    assert r.status_code == 403
    created = await register(client, description="ours", event_types=["settlement.released"])
    assert created["secret"].startswith("whsec_")
    assert len(created["secret"]) > 40
    one = await client.get(f"/v1/webhook-endpoints/{created['id']}", headers=ADMIN)
    listed = await client.get("/v1/webhook-endpoints", headers=ADMIN)
    assert one.status_code == 200
    assert listed.status_code == 200
    assert "secret" not in one.json()
    assert created["secret"] not in listed.text
    assert one.json()["event_types"] == ["settlement.released"]
    bad = await client.post(
        "/v1/webhook-endpoints", json={"url": "ftp://x.example/"}, headers=ADMIN
    )
    assert bad.status_code == 422, bad.text
    missing = await client.get(
        f"/v1/webhook-endpoints/{UNKNOWN_ENDPOINT}/deliveries", headers=ADMIN
    )
    assert missing.status_code == 404
    malformed = await client.get("/v1/webhook-endpoints/whe_../deliveries", headers=ADMIN)
    assert malformed.status_code in (404, 422)
    malformed = await client.get("/v1/webhook-endpoints/whe_nope", headers=ADMIN)
    assert malformed.status_code == 422


async def test_each_state_change_is_delivered_signed_once(
    app: Any, client: httpx.AsyncClient, api: Any, pact: Any, clock: Any
) -> None:
    endpoint = await register(client)
    only_released = await register(client, event_types=["settlement.released"])
    settlement_id = await settle_one(api, pact)

    receiver = Receiver(endpoint["secret"], clock)
    rows = await deliveries(app)
    # The second endpoint subscribed to settlement.released only: nothing queued for it yet.
    assert {(d.endpoint_id, d.event_type) for d in rows} == {
        (endpoint["id"], "settlement.created"),
        (endpoint["id"], "settlement.locked"),
    }
    assert only_released["id"] != endpoint["id"]
    worker = dispatcher(app, receiver)
    assert await worker.run_once() == 2
    assert await worker.run_once() == 0  # nothing is sent twice
    assert receiver.bad_signatures == 0
    assert [e["type"] for e in receiver.received] == ["settlement.created", "settlement.locked"]
    locked = receiver.received[1]
    assert locked["data"]["object"]["id"] == settlement_id
    assert locked["data"]["object"]["state"] == "locked"
    assert locked["data"]["object"]["previous_state"] == "pending"
    assert locked["data"]["object"]["amount"] == "0.00008"

    listed = await client.get(f"/v1/webhook-endpoints/{endpoint['id']}/deliveries", headers=ADMIN)
    assert listed.status_code == 200
    assert {d["status"] for d in listed.json()["data"]} == {"delivered"}
    assert all(d["attempts"] == 1 for d in listed.json()["data"])


async def test_an_event_exists_only_if_its_state_change_committed(
    app: Any, client: httpx.AsyncClient, api: Any, pact: Any
) -> None:
    await register(client)
    settlement_id = await settle_one(api, pact)
    maker = runtime_of(app).sessionmaker

    async def count() -> int:
        async with maker() as session:
            return int(await session.scalar(select(func.count()).select_from(WebhookDelivery)))

    before = await count()
    async with maker() as session:
        settlement = await SettlementRepository.from_session(session).get(settlement_id)
        assert settlement is not None
        await state_machine.transition(
            session, settlement, SettlementEventType.REFUNDED, actor="test"
        )
        await session.rollback()
    assert await count() == before
    async with maker() as session:
        settlement = await SettlementRepository.from_session(session).get(settlement_id)
        assert settlement is not None
        await state_machine.transition(
            session, settlement, SettlementEventType.REFUNDED, actor="test"
        )
        await session.commit()
    assert await count() == before + 1


@pytest.mark.parametrize("settings_overrides", [{"webhook_max_attempts": 3}])
async def test_failures_are_retried_with_backoff_then_failed_then_replayed(
    app: Any, client: httpx.AsyncClient, api: Any, pact: Any, clock: Any
) -> None:
    endpoint = await register(client, event_types=["settlement.locked"])
    await settle_one(api, pact)
    receiver = Receiver(endpoint["secret"], clock, answer=503)
    worker = dispatcher(app, receiver)

    assert await worker.run_once() == 1
    [row] = await deliveries(app)
    assert row.status == "pending"
    assert row.attempts == 1
    assert row.last_status_code == 503
    assert await worker.run_once() == 0  # not due yet: the retry waits
    clock.offset_ms += 5_000  # the first pause is at most WEBHOOK_RETRY_BASE_S (5 s)
    assert await worker.run_once() == 1
    clock.offset_ms += 10_000
    assert await worker.run_once() == 1
    [row] = await deliveries(app)
    assert row.status == "failed"
    assert row.attempts == 3
    clock.offset_ms += 3_600_000
    assert await worker.run_once() == 0  # failed is final until replayed

    receiver.answer = 204
    r = await client.post(
        f"/v1/webhook-endpoints/{endpoint['id']}/events/{row.event_id}/replay", headers=ADMIN
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "pending"
    assert r.json()["attempts"] == 0
    assert await worker.run_once() == 1
    [row] = await deliveries(app)
    assert row.status == "delivered"
    assert receiver.ids == [row.event_id] * 4  # three refused, one accepted: same event id
    unknown = await client.post(
        f"/v1/webhook-endpoints/{endpoint['id']}/events/{UNKNOWN_EVENT}/replay", headers=ADMIN
    )
    assert unknown.status_code == 404


async def test_an_unreachable_endpoint_is_retried(
    app: Any, client: httpx.AsyncClient, api: Any, pact: Any, clock: Any
) -> None:
    await register(client, event_types=["settlement.locked"])
    await settle_one(api, pact)

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    runtime = runtime_of(app)
    worker = WebhookDispatcher(
        runtime.sessionmaker,
        settings=runtime.settings,
        clock=runtime.clock,
        transport=httpx.MockTransport(refuse),
    )
    assert await worker.run_once() == 1
    [row] = await deliveries(app)
    assert row.status == "pending"
    assert row.last_status_code is None
    assert row.last_error is not None
    assert "ConnectError" in row.last_error


async def test_two_dispatchers_send_each_event_once(
    app: Any, client: httpx.AsyncClient, api: Any, pact: Any, clock: Any
) -> None:
    endpoint = await register(client)
    for _ in range(5):
        await settle_one(api, pact)
    receiver = Receiver(endpoint["secret"], clock)
    first, second = dispatcher(app, receiver), dispatcher(app, receiver)
    sent = await asyncio.gather(first.run_once(), second.run_once())
    assert sum(sent) == 10
    assert sorted(receiver.ids) == sorted({d.event_id for d in await deliveries(app)})
    assert len(set(receiver.ids)) == len(receiver.ids) == 10
