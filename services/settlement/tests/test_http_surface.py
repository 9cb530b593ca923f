"""Authentication, health, readiness, metrics, docs, request ids, 503 on a dead database."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from pact_settlement.app import create_app
from pact_settlement.config import SettlementSettings

READS = ["/v1/settlements", "/v1/settlements/intent-x", f"/v1/accounts/{'1' * 32}"]


@pytest.mark.parametrize("path", READS)
async def test_reads_need_a_token(client: Any, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["code"] == "UNAUTHORIZED"
    response = await client.get(path, headers={"Authorization": "Bearer wrong"})
    assert response.status_code == 401
    response = await client.get(path, headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert response.status_code == 401


async def test_create_needs_the_provider_token(api: Any, pact: Any, client: Any) -> None:
    accept = pact.accept()
    body = {"accept": accept}
    no_token = await client.post("/v1/settlements", json=body, headers={"Idempotency-Key": "k"})
    assert no_token.status_code == 401
    admin = await client.post(
        "/v1/settlements", json=body, headers={**api.admin_auth, "Idempotency-Key": "k"}
    )
    assert admin.status_code == 403
    assert admin.json()["code"] == "FORBIDDEN"


async def test_healthz_readyz_metrics(client: Any, api: Any, pact: Any) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    body = ready.json()
    assert body["ready"] is True
    assert body["migrations"]["at_head"] is True
    await api.deposit(pact.buyer.public_key_b58, "1")
    assert (await api.create(pact.accept())).status_code == 201
    metrics = await client.get("/metrics")
    assert metrics.status_code == 200
    text = metrics.text
    assert 'pact_settlement_settlements_total{outcome="created",rail="ledger"} 1.0' in text
    assert "pact_settlement_http_requests_total" in text
    assert 'route="/v1/settlements"' in text


async def test_docs_and_openapi_have_examples(client: Any) -> None:
    assert (await client.get("/docs")).status_code == 200
    spec = (await client.get("/openapi.json")).json()
    post = spec["paths"]["/v1/settlements"]["post"]
    assert {"201", "200", "402", "409", "422", "401", "403"} <= set(post["responses"])
    assert "examples" in spec["components"]["schemas"]["SettlementCreate"]
    assert "/v1/accounts/{agent_id}/deposits" in spec["paths"]


async def test_request_id_is_echoed_or_made(client: Any) -> None:
    response = await client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"
    response = await client.get("/healthz", headers={"X-Request-ID": "bad id with spaces"})
    assert response.headers["x-request-id"] != "bad id with spaces"
    assert len(response.headers["x-request-id"]) == 32


async def test_unknown_route_is_problem_json(client: Any) -> None:
    response = await client.get("/v2/nothing")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_dead_database_gives_503_with_retry_after_and_unready() -> None:
    settings = SettlementSettings(
        env="test",
        database_url="postgresql+asyncpg://nobody@127.0.0.1:1/none",
        api_token="t" * 30,
        admin_token="a" * 30,
        db_pool_timeout_s=1,
        # A budget this test is not about: at load 10 the default 5 s ran out before the
        # refused connection was told apart (DEADLINE_EXCEEDED instead of DATABASE_UNAVAILABLE).
        request_timeout_s=120,
        db_idle_in_transaction_timeout_ms=180_000,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://s") as client:
            response = await client.get(
                "/v1/settlements", headers={"Authorization": f"Bearer {'t' * 30}"}
            )
            assert response.status_code == 503
            assert response.headers["retry-after"] == "1"
            assert response.json()["code"] == "DATABASE_UNAVAILABLE"
            ready = await client.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["database"] == "unreachable"


async def test_readyz_is_503_until_migrated(fresh_database_url: str) -> None:
    settings = SettlementSettings(
        env="test",
        database_url=fresh_database_url,
        api_token="t" * 30,
        admin_token="a" * 30,
        auto_migrate=False,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://s") as client:
            ready = await client.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["migrations"]["current"] is None


async def test_oversized_bodies_are_413(api: Any, client: Any) -> None:
    big = {"accept": {"padding": "x" * 300_000}}
    response = await client.post(
        "/v1/settlements", json=big, headers={**api.provider_auth, "Idempotency-Key": "k"}
    )
    assert response.status_code == 413
    assert response.json()["code"] == "PAYLOAD_TOO_LARGE"

    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(40):
            yield b"x" * 10_000

    streamed = await client.post(
        "/v1/settlements",
        content=chunks(),
        headers={**api.provider_auth, "Idempotency-Key": "k", "content-type": "application/json"},
    )
    assert streamed.status_code == 413


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_postgres_sessions_carry_lock_and_statement_timeouts(settings: Any) -> None:
    from pact_settlement.config import SettlementSettings
    from pact_settlement.db.engine import create_engine
    from sqlalchemy import text

    defaults = SettlementSettings(  # the documented defaults, not the tests' wide bounds
        env="test",  # type: ignore[arg-type]
        database_url=settings.database_url,
        api_token="t" * 30,  # type: ignore[arg-type]
        admin_token="a" * 30,  # type: ignore[arg-type]
    )
    service_engine = create_engine(defaults)
    try:
        async with service_engine.connect() as conn:
            shown = [
                (await conn.execute(text(f"SHOW {name}"))).scalar_one()
                for name in (
                    "lock_timeout",
                    "statement_timeout",
                    "idle_in_transaction_session_timeout",
                )
            ]
            raw = await conn.get_raw_connection()
            command_timeout = raw.driver_connection._config.command_timeout  # type: ignore[union-attr]
    finally:
        await service_engine.dispose()
    assert shown == ["2s", "3s", "1min"]
    assert command_timeout == defaults.db_command_timeout_s == 4.0
