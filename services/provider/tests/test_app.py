"""The provider app's one request path: every middleware, the provider's own and any added
later (auth, CORS, tracing), wraps ``POST /pact`` as it wraps every other route."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fixtures.provider import (
    FakeClock,
    Provider,
    body,
    intent_message,
    reply_of,
    running_provider,
    settings,
    signed,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

JSON = {"content-type": "application/json"}
QUOTE_REQUEST = {
    "intent_id": "intent-path-1",
    "intent_type": "weather.data",
    "max_price": 0.0002,
    "constraints": {"latency_ms": 100, "freshness_sec": 30},
}


class BreakableClock(FakeClock):
    """A clock that raises once ``broken``: an unexpected error inside the negotiator."""

    broken = False

    def __call__(self) -> int:
        if self.broken:
            raise RuntimeError("the clock broke")
        return self.now


class Recorder:
    """What an embedder's middleware sees: each request's method, path, route template (as a
    tracing middleware reads it once the app returns) and response status."""

    seen: list[tuple[str, str, str | None, int | None]]

    def __init__(self, app: ASGIApp, *, seen: list[tuple[str, str, str | None, int | None]]):
        self.app = app
        self.seen = seen

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status: int | None = None

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", None)
            self.seen.append((scope["method"], scope["path"], route, status))


def recorded(app: FastAPI) -> list[tuple[str, str, str | None, int | None]]:
    seen: list[tuple[str, str, str | None, int | None]] = []
    app.add_middleware(Recorder, seen=seen)
    return seen


def _access_line(provider: Provider, request_id: str) -> dict[str, Any]:
    [line] = [e for e in provider.log_events() if e.get("request_id") == request_id]
    return line


def _metric(provider: Provider, name: str, **labels: str) -> float:
    value = provider.app.state.provider.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else float(value)


async def test_a_middleware_added_to_the_app_sees_post_pact_and_the_other_routes(
    clock: FakeClock,
) -> None:
    async with running_provider(clock=clock) as provider:
        seen = recorded(provider.app)
        pact = await provider.post(
            signed(intent_message(clock.now)), headers={"x-request-id": "r-1"}
        )
        quote = await provider.http.post("/quote", json=QUOTE_REQUEST)
        health = await provider.http.get("/health")
        ready = await provider.http.get("/healthz")
    assert reply_of(pact)["type"] == "ASK"
    assert (quote.status_code, health.status_code, ready.status_code) == (200, 200, 200)
    assert seen == [
        ("POST", "/pact", "/pact", 200),
        ("POST", "/quote", "/quote", 200),
        ("GET", "/health", "/health", 200),
        ("GET", "/healthz", "/healthz", 200),
    ]


async def test_post_pact_gets_the_request_id_one_access_line_and_metrics(
    clock: FakeClock,
) -> None:
    async with running_provider(clock=clock) as provider:
        response = await provider.post(
            signed(intent_message(clock.now)), headers={"x-request-id": "r-1"}
        )
        assert reply_of(response)["type"] == "ASK"
        assert response.headers["x-request-id"] == "r-1"
        line = _access_line(provider, "r-1")
        assert (line["event"], line["status"], line["path"]) == ("pact.intent.quoted", 200, "/pact")
        labels = {"method": "POST", "route": "/pact", "status": "200"}
        assert _metric(provider, "pact_provider_http_requests_total", **labels) == 1
        assert (
            _metric(
                provider,
                "pact_provider_messages_total",
                message_type="INTENT",
                outcome="ASK",
                code="",
            )
            == 1
        )


@pytest.mark.parametrize(
    ("content", "headers", "status", "code"),
    [
        (b" " * 2000, JSON, 413, "PAYLOAD_TOO_LARGE"),
        (b"{}", {"content-type": "text/plain"}, 415, "UNSUPPORTED_MEDIA_TYPE"),
    ],
)
async def test_413_and_415_at_pact_carry_the_request_id_and_one_line_through_the_middleware(
    clock: FakeClock, content: bytes, headers: dict[str, str], status: int, code: str
) -> None:
    async with running_provider(settings(max_body_bytes=1024), clock=clock) as provider:
        seen = recorded(provider.app)
        response = await provider.http.post(
            "/pact", content=content, headers={**headers, "x-request-id": "r-2"}
        )
        assert seen == [("POST", "/pact", "/pact", status)]
        assert response.status_code == status
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == code
        assert response.headers["x-request-id"] == "r-2"
        line = _access_line(provider, "r-2")
        assert (line["event"], line["status"]) == ("http.request", status)
        labels = {"message_type": "UNVERIFIED", "outcome": "PROBLEM", "code": code}
        assert _metric(provider, "pact_provider_messages_total", **labels) == 1


async def test_an_unexpected_error_at_pact_is_a_500_problem_logged_and_raised_to_the_server() -> (
    None
):
    clock = BreakableClock()
    async with running_provider(clock=clock) as provider:
        seen = recorded(provider.app)
        clock.broken = True
        transport = httpx.ASGITransport(provider.app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://provider") as http:
            response = await http.post(
                "/pact",
                content=body(signed(intent_message(clock.now))),
                headers={**JSON, "x-request-id": "r-3"},
            )
        # As ServerErrorMiddleware does it: the exception goes on to the server, which logs it.
        with pytest.raises(RuntimeError, match="the clock broke"):
            await provider.post(signed(intent_message(clock.now)))
        events = provider.log_events()
    # The added middleware saw the error pass (no response had started inside it).
    assert seen == [("POST", "/pact", "/pact", None), ("POST", "/pact", "/pact", None)]
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json() == {
        "type": "urn:pact-provider:problem:internal-error",
        "title": "Internal Server Error",
        "status": 500,
        "detail": "internal error",
        "code": "INTERNAL_ERROR",
    }
    [access] = [e for e in events if e.get("request_id") == "r-3"]
    assert (access["event"], access["status"], access["path"]) == ("http.request", 500, "/pact")
    errors = [e for e in events if e["event"] == "http.unhandled_error"]
    assert len(errors) == 2
    assert "the clock broke" in errors[0]["exception"]


async def test_other_methods_and_near_misses_of_pact_go_to_the_router(clock: FakeClock) -> None:
    async with running_provider(clock=clock) as provider:
        wrong_method = await provider.http.get("/pact", headers={"x-request-id": "r-4"})
        near_miss = await provider.http.post("/pact/", content=b"{}", headers=JSON)
        assert wrong_method.status_code == 405
        assert wrong_method.headers["x-request-id"] == "r-4"
        assert _access_line(provider, "r-4")["event"] == "http.request"
        assert near_miss.status_code in (307, 404)


async def test_pact_under_a_root_path_is_served_by_the_fastapi_route(clock: FakeClock) -> None:
    async with running_provider(clock=clock) as provider:
        seen = recorded(provider.app)
        transport = httpx.ASGITransport(provider.app, root_path="/api")
        async with httpx.AsyncClient(transport=transport, base_url="http://provider") as http:
            response = await http.post(
                "/api/pact",
                content=body(signed(intent_message(clock.now))),
                headers={**JSON, "x-request-id": "r-5"},
            )
        assert reply_of(response)["type"] == "ASK"
        assert response.headers["x-request-id"] == "r-5"
        assert _access_line(provider, "r-5")["event"] == "pact.intent.quoted"
        assert seen == [("POST", "/api/pact", "/pact", 200)]


async def test_the_pact_route_stays_in_the_openapi_document(clock: FakeClock) -> None:
    async with running_provider(clock=clock) as provider:
        document = (await provider.http.get("/openapi.json")).json()
    assert "post" in document["paths"]["/pact"]
