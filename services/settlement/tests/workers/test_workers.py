"""The sweeper and reconciler as workers: racing replicas, crashes, the app's own loop, the
RECEIPT key — on SQLite and Postgres."""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pact_schema import (
    PROTOCOL_VERSION,
    Keypair,
    commit_hash_hex,
    now_ms,
    sign_message,
    verify_envelope,
)
from pact_settlement.app import create_app
from pact_settlement.config import Environment, SettlementSettings
from pact_settlement.kit.observability import Metrics
from pact_settlement.kit.time import from_ms
from pact_settlement.rails import registry
from pact_settlement.rails.base import RailOpStatus, RailResult, RailSettlement, RailStep
from pact_settlement.rails.repository import RailOperationRepository
from pact_settlement.receipts.keys import SigningKeyError, dev_key_path, load_signing_key
from pact_settlement.settlements.lookup import find_settlement
from pact_settlement.settlements.repository import (
    SettlementEventRepository,
    SettlementRepository,
)
from pact_settlement.workers.reconciler import Reconciler
from pact_settlement.workers.sweeper import Sweeper
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

PAYLOAD, NONCE = b"payload", b"nonce"


class Crash(BaseException):
    pass


@dataclass
class CrashingRail:
    """A non-transactional rail that keeps its own records and can crash the caller."""

    name: str = "memory"
    transactional: bool = False
    supports_bond: bool = True
    asset: str = "USD"
    records: dict[str, RailResult] = field(default_factory=dict)
    moves: list[str] = field(default_factory=list)
    crash_before: set[str] = field(default_factory=set)

    async def _act(self, step: str, key: str) -> RailResult:
        if step in self.crash_before:
            self.crash_before.discard(step)
            raise Crash
        if key not in self.records:
            self.records[key] = RailResult(RailStep(step), RailOpStatus.SUCCEEDED, f"ref-{key}")
            self.moves.append(key)
        return self.records[key]

    async def lock(self, s: RailSettlement, *, idempotency_key: str) -> RailResult:
        return await self._act("lock", idempotency_key)

    async def release(self, s: RailSettlement, *, idempotency_key: str) -> RailResult:
        return await self._act("release", idempotency_key)

    async def refund(self, s: RailSettlement, *, idempotency_key: str) -> RailResult:
        return await self._act("refund", idempotency_key)

    async def slash(self, s: RailSettlement, *, idempotency_key: str) -> RailResult:
        return await self._act("slash", idempotency_key)

    async def status(self, s: RailSettlement, *, idempotency_key: str) -> RailResult:
        step = RailStep(idempotency_key.rsplit("-", 1)[-1])
        return self.records.get(idempotency_key) or RailResult(step, RailOpStatus.NOT_FOUND)


def _signed(kind: str, intent_id: str, signer: Keypair, **fields: Any) -> dict[str, Any]:
    sent = now_ms()
    message = {
        "protocol_version": PROTOCOL_VERSION,
        "type": kind,
        "intent_id": intent_id,
        "sent_at_ms": sent,
        "expires_at_ms": sent + 60_000,
        **fields,
    }
    return sign_message(message, signer)


async def _commit(api: Any, pact: Any, intent_id: str) -> None:
    headers = {**api.provider_auth, "Idempotency-Key": f"c-{intent_id}"}
    commit = _signed(
        "COMMIT",
        intent_id,
        pact.provider,
        commit_hash_hex=commit_hash_hex(
            base64.b64encode(PAYLOAD).decode(), base64.b64encode(NONCE).decode()
        ),
    )
    response = await api.client.post(
        f"/v1/settlements/{intent_id}/commit", json={"commit": commit}, headers=headers
    )
    assert response.status_code == 200, response.text


async def _deliver(api: Any, pact: Any, intent_id: str) -> None:
    await _commit(api, pact, intent_id)
    headers = {**api.provider_auth, "Idempotency-Key": f"r-{intent_id}"}
    reveal = _signed(
        "REVEAL",
        intent_id,
        pact.provider,
        payload_b64=base64.b64encode(PAYLOAD).decode(),
        nonce_b64=base64.b64encode(NONCE).decode(),
    )
    response = await api.client.post(
        f"/v1/settlements/{intent_id}/reveal", json={"reveal": reveal}, headers=headers
    )
    assert response.json()["state"] == "delivered", response.text


def _sweeper(app: Any) -> Sweeper:
    s = app.state.settlement
    return Sweeper(
        s.sessionmaker, settings=s.settings, metrics=s.metrics, applier=s.applier, clock=s.clock
    )


async def _terminal_events(maker: async_sessionmaker[AsyncSession], intent_id: str) -> list[str]:
    async with maker() as session:
        row = await find_settlement(SettlementRepository.from_session(session), intent_id)
        assert row is not None
        events = await SettlementEventRepository.from_session(session).for_settlement(row.id)
    return [e.event for e in events if e.to_state in ("released", "refunded", "slashed")]


@pytest.mark.parametrize("settings_overrides", [{"require_seller_bond": True}])
async def test_racing_sweepers_end_each_settlement_exactly_once(
    api: Any, pact: Any, app: Any, clock: Any
) -> None:
    await api.deposit(pact.buyer.public_key_b58, "1")
    await api.deposit(pact.provider.public_key_b58, "1")
    intents = []
    for i in range(8):
        accept = pact.accept(delivery_in_ms=10_000)
        assert (await api.create(accept)).status_code == 201
        intents.append(accept["message"]["intent_id"])
        if i % 2:
            await _deliver(api, pact, intents[-1])  # window 5 s, deadline 10 s
        else:
            await _commit(api, pact, intents[-1])  # committed, then never revealed
    clock.offset_ms = 11_000
    sweepers = [_sweeper(app) for _ in range(3)]
    reports = await asyncio.gather(*(s.run_once() for s in sweepers))
    ended: dict[str, str] = {}
    for report in reports:
        assert report.errors == 0
        assert not set(report.ended) & set(ended)  # no settlement ended by two sweepers
        ended.update(report.ended)
    assert ended == {intent: "released" if i % 2 else "slashed" for i, intent in enumerate(intents)}
    for intent_id in intents:
        assert len(await _terminal_events(app.state.settlement.sessionmaker, intent_id)) == 1
        body = await api.settlement(intent_id)
        assert verify_envelope(body["receipt"]).message_raw["outcome"] == body["state"]
    assert all(r.handled == 0 for r in await asyncio.gather(*(s.run_once() for s in sweepers)))
    # 4 released (price to the seller, bond back), 4 slashed (price back + bond to the buyer)
    assert await api.balances(pact.buyer.public_key_b58) == (Decimal("1.00032"), Decimal(0))
    assert await api.balances(pact.provider.public_key_b58) == (Decimal("0.99968"), Decimal(0))


@pytest.mark.parametrize(
    "settings_overrides",
    [{"enabled_rails": ["ledger", "memory"], "require_seller_bond": True}],
)
async def test_crash_between_recording_and_the_rail_call_is_finished_by_the_reconciler(
    api: Any, pact: Any, app: Any, clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    rail = CrashingRail()
    monkeypatch.setitem(registry.RAIL_FACTORIES, "memory", lambda _s, _db, _clients: rail)
    accept = pact.accept(delivery_in_ms=10_000)
    assert (await api.create(accept, rail="memory")).status_code == 201
    intent_id = accept["message"]["intent_id"]
    await _commit(api, pact, intent_id)
    clock.offset_ms = 11_000
    rail.crash_before.add("slash")
    with pytest.raises(Crash):
        await _sweeper(app).run_once()
    body = await api.settlement(intent_id)
    assert body["state"] == "committed"
    async with app.state.settlement.sessionmaker() as session:
        [pending] = await RailOperationRepository.from_session(session).pending()
    assert (pending.step, pending.idempotency_key) == ("slash", f"settlement-{body['id']}-slash")
    # The next sweep does not call the rail again: the step is in flight, the reconciler's,
    # so the settlement is not even a candidate (it must not hold up the ones behind it).
    report = await _sweeper(app).run_once()
    assert (report.handled, report.skipped, report.errors) == (0, 0, 0)
    assert rail.moves == [f"settlement-{body['id']}-lock"]
    reconciler = Reconciler(
        app.state.settlement.sessionmaker,
        settings=app.state.settlement.settings,
        metrics=Metrics(),
        applier=app.state.settlement.applier,
    )
    # The lease was written on the service's clock (11 s ahead): later is on that clock too.
    later = from_ms(clock()) + timedelta(
        seconds=app.state.settlement.settings.reconcile_grace_s + 1
    )
    assert await reconciler.run_once(now=later) == 1
    body = await api.settlement(intent_id)
    assert body["state"] == "slashed"
    assert body["failure_code"] == "DELIVERY_DEADLINE_MISSED"
    assert body["events"][-1]["actor"] == "sweeper"
    receipt = verify_envelope(body["receipt"])
    assert receipt.message_raw["failure_code"] == "DELIVERY_DEADLINE_MISSED"
    assert rail.moves == [f"settlement-{body['id']}-lock", f"settlement-{body['id']}-slash"]
    assert await reconciler.run_once(now=later) == 0


@pytest.mark.parametrize(
    "settings_overrides",
    [{"enabled_rails": ["ledger", "memory"], "require_seller_bond": True}],
)
async def test_reconciler_leases_are_written_and_read_on_the_service_clock(
    api: Any, pact: Any, app: Any, clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The step left in flight is leased on the service's clock, and the reconciler (given no
    time of its own) claims it when that clock, not the wall clock, passes the lease."""
    rail = CrashingRail()
    monkeypatch.setitem(registry.RAIL_FACTORIES, "memory", lambda _s, _db, _clients: rail)
    accept = pact.accept(delivery_in_ms=10_000)
    assert (await api.create(accept, rail="memory")).status_code == 201
    intent_id = accept["message"]["intent_id"]
    await _commit(api, pact, intent_id)
    clock.fixed_ms = now_ms() + 3_600_000  # an hour ahead of the wall clock, then frozen
    rail.crash_before.add("slash")
    with pytest.raises(Crash):
        await _sweeper(app).run_once()
    grace = timedelta(seconds=app.state.settlement.settings.reconcile_grace_s)
    async with app.state.settlement.sessionmaker() as session:
        [pending] = await RailOperationRepository.from_session(session).pending()
    assert pending.lease_until == from_ms(clock.fixed_ms) + grace
    reconciler = Reconciler(
        app.state.settlement.sessionmaker,
        settings=app.state.settlement.settings,
        metrics=Metrics(),
        applier=app.state.settlement.applier,
    )
    assert await reconciler.run_once() == 0  # the lease has not run out on the service's clock
    clock.fixed_ms += int(grace.total_seconds() * 1000) + 1
    assert await reconciler.run_once() == 1
    body = await api.settlement(intent_id)
    assert body["state"] == "slashed"
    assert datetime.fromisoformat(body["closed_at"]) == from_ms(clock.fixed_ms)


@pytest.mark.parametrize(
    "settings_overrides", [{"workers_enabled": True, "sweep_interval_s": 0.05}]
)
async def test_the_app_runs_the_sweeper_and_stops_it_on_shutdown(
    settings: SettlementSettings, api: Any, pact: Any, app: Any, clock: Any
) -> None:
    await api.deposit(pact.buyer.public_key_b58, "1")
    accept = pact.accept(delivery_in_ms=10_000)
    assert (await api.create(accept)).status_code == 201
    clock.offset_ms = 11_000
    for _ in range(100):
        body = await api.settlement(accept["message"]["intent_id"])
        if body["state"] != "locked":
            break
        await asyncio.sleep(0.05)
    assert body["state"] == "refunded"
    assert body["failure_code"] == "COMMIT_WINDOW_MISSED"
    runner = app.state.settlement.workers
    assert runner is not None
    await runner.stop()
    assert all(task.done() for task in runner._tasks)


def test_receipt_key_production_needs_one_development_keeps_one(tmp_path: Path) -> None:
    base: dict[str, Any] = {
        "api_token": "aT4vQ9xL2mR7cK0pZ5wN8bE3yH6jU1sD",
        "admin_token": "bG7nW2qX9kF4tM0vJ5rC8zL3hS6pY1dA",
        "provider_keys": [Keypair.generate().public_key_b58],
        "sqlite_path": tmp_path / "dev" / "settlement.sqlite3",
    }
    production = {**base, "database_url": "postgresql+asyncpg://pact:pw@db.internal:5432/pact"}
    with pytest.raises(SigningKeyError, match="required in production"):
        create_app(SettlementSettings(env=Environment.PRODUCTION, **production))
    dev = SettlementSettings(env=Environment.DEVELOPMENT, **base)
    first = load_signing_key(dev)
    assert dev_key_path(dev).exists()
    assert load_signing_key(dev).public_key_b58 == first.public_key_b58
    explicit = Keypair.generate()
    from pact_schema.keys import b58encode

    chosen = SettlementSettings(
        env=Environment.PRODUCTION, signing_key=b58encode(explicit.seed), **production
    )
    create_app(chosen)  # the explicit key satisfies production, and is the one loaded:
    assert load_signing_key(chosen).public_key_b58 == explicit.public_key_b58


async def test_well_known_publishes_the_receipt_key_without_auth(client: Any, app: Any) -> None:
    response = await client.get("/.well-known/pact-settlement")
    assert response.status_code == 200
    body = response.json()
    assert body["public_key_b58"] == app.state.settlement.receipts.public_key_b58
    assert body["protocol_versions"] == ["pact/1.0"]
    assert "ledger" in body["rails"]
    assert "amount_released" in body["receipt_format"]["extra_fields"]
