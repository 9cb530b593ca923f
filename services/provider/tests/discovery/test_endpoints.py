"""Identity and operations endpoints."""

from __future__ import annotations

import httpx
from fixtures.provider import (
    PROVIDER,
    FakeClock,
    FakeSettlement,
    intent_message,
    running_provider,
    settings,
    signed,
)


async def test_well_known_publishes_key_prices_policy_and_versions() -> None:
    async with running_provider(settings(previous_keys="11111111111111111111111111111111")) as p:
        doc = (await p.http.get("/.well-known/pact-provider")).json()
    assert doc["public_key_b58"] == PROVIDER.public_key_b58
    assert doc["previous_keys_b58"] == ["11111111111111111111111111111111"]
    assert doc["protocol_versions"] == ["pact/1.0"]
    assert doc["envelope_versions"] == ["pact-envelope/1.0"]
    assert doc["intents"] == {
        "compute.inference": "0.00012",
        "data.query": "0.00005",
        "weather.data": "0.00008",
    }
    assert doc["default_price"] == "0.0001"
    assert doc["negotiation"] == {
        "max_rounds": 3,
        "strategy": "meet-halfway",
        "price_floor_ratio": "0.8",
        "quote_field": "quote",
    }
    assert doc["policy"]["quote_valid_for_ms"] == 20_000
    assert doc["policy"]["max_clock_skew_ms"] == 5_000
    assert doc["policy"]["lenient_accept"] is False


async def test_well_known_hides_the_default_price_when_intents_are_restricted() -> None:
    async with running_provider(settings(restrict_intents=True)) as p:
        doc = (await p.http.get("/.well-known/pact-provider")).json()
    assert doc["default_price"] is None
    assert doc["restrict_intents"] is True


async def test_healthz_is_always_ok() -> None:
    async with running_provider(settings(settlement_url=None)) as p:
        response = await p.http.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_is_ready_when_settlement_answers(settlement: FakeSettlement) -> None:
    async with running_provider(settlement=settlement) as p:
        response = await p.http.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"] == {"config": "ok", "signing_key": "ok", "settlement": "ok"}


async def test_readyz_is_503_when_settlement_is_unhealthy(settlement: FakeSettlement) -> None:
    settlement.healthy = False
    async with running_provider(settlement=settlement) as p:
        response = await p.http.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["settlement"] == "settlement answered HTTP 503"


async def test_readyz_is_503_with_the_reason_when_settlement_refuses_the_token(
    settlement: FakeSettlement,
) -> None:
    settlement.provider_token = "the-token-settlement-really-has"
    async with running_provider(settlement=settlement) as p:
        required = await p.http.get("/readyz")
        optional = await p.http.get("/readyz", params={"settlement": "optional"})
    reason = "settlement refused the provider's token (HTTP 401)"
    assert required.status_code == 503
    assert required.headers["content-type"] == "application/problem+json"
    assert required.headers["retry-after"] == "1"
    assert required.json() == {
        "type": "urn:pact-provider:problem:not-ready",
        "title": "Service Unavailable",
        "status": 503,
        "detail": f"not ready: settlement: {reason}",
        "code": "NOT_READY",
        "checks": {"config": "ok", "signing_key": "ok", "settlement": reason},
    }
    # ?settlement=optional keeps its meaning: negotiation stays in rotation, reason reported.
    assert optional.status_code == 200
    assert optional.json()["checks"]["settlement"] == reason


async def test_readyz_is_503_when_the_token_is_settlements_admin_token(
    settlement: FakeSettlement,
) -> None:
    async with running_provider(
        settings(settlement_token=settlement.admin_token), settlement=settlement
    ) as p:
        response = await p.http.get("/readyz")
    assert response.status_code == 503
    assert "admin token, not its provider token" in response.json()["checks"]["settlement"]


async def test_readyz_with_settlement_optional_stays_ready_through_a_settlement_outage(
    settlement: FakeSettlement,
) -> None:
    settlement.healthy = False
    async with running_provider(settlement=settlement) as p:
        optional = await p.http.get("/readyz", params={"settlement": "optional"})
        required = await p.http.get("/readyz")
    assert optional.status_code == 200
    assert optional.json() == {
        "status": "ready",
        "checks": {
            "config": "ok",
            "signing_key": "ok",
            "settlement": "settlement answered HTTP 503",
        },
    }
    assert required.status_code == 503


async def test_readyz_refuses_an_unknown_settlement_scope(settlement: FakeSettlement) -> None:
    async with running_provider(settlement=settlement) as p:
        response = await p.http.get("/readyz", params={"settlement": "sometimes"})
    assert response.status_code == 422


async def test_readyz_is_503_when_settlement_cannot_be_reached() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    async with running_provider(transport=httpx.MockTransport(refuse)) as p:
        response = await p.http.get("/readyz")
    assert response.status_code == 503


async def test_readyz_reports_unconfigured_settlement_and_ephemeral_key() -> None:
    async with running_provider(settings(settlement_url=None), keypair=None) as p:
        response = await p.http.get("/readyz")
        events = p.log_events()
    assert response.status_code == 503
    assert response.json()["checks"] == {
        "config": "ok",
        "signing_key": "ephemeral",
        "settlement": "not configured",
    }
    assert any(e["event"] == "pact.key.ephemeral" and e["level"] == "warning" for e in events)


async def test_metrics_count_messages_by_type_outcome_and_code(clock: FakeClock) -> None:
    async with running_provider(clock=clock) as p:
        await p.post(signed(intent_message(clock.now)))
        await p.post(signed(intent_message(clock.now, max_price=0.00001)))
        await p.post({"garbage": True})
        response = await p.http.get("/metrics")
    text = response.text
    assert response.headers["content-type"].startswith("text/plain")
    assert 'pact_provider_messages_total{code="",message_type="INTENT",outcome="ASK"} 1.0' in text
    assert (
        'pact_provider_messages_total{code="PRICE_ABOVE_MAX",message_type="INTENT",'
        'outcome="REJECT"} 1.0'
    ) in text
    assert 'code="ENVELOPE_MALFORMED",message_type="UNVERIFIED",outcome="PROBLEM"' in text
    assert 'pact_provider_message_duration_seconds_count{message_type="INTENT"} 2.0' in text
    assert 'pact_provider_http_requests_total{method="POST",route="/pact",status="200"} 2.0' in text
