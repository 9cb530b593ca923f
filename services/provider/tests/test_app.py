"""``ProviderApp``: ``POST /pact`` answered by the outermost layer, everything else by FastAPI."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
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
from starlette.types import ASGIApp, Receive, Scope, Send

JSON = {"content-type": "application/json"}


class BreakableClock(FakeClock):
    """A clock that raises once ``broken``: an unexpected error inside the negotiator."""

    broken = False

    def __call__(self) -> int:
        if self.broken:
            raise RuntimeError("the clock broke")
        return self.now


class CountingStack:
    """Wraps ``ProviderApp.pact_stack`` and counts the requests it is given."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.paths: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.paths.append(scope["path"])
        await self.app(scope, receive, send)


@asynccontextmanager
async def counted(provider: Provider) -> AsyncIterator[CountingStack]:
    counter = CountingStack(provider.app.pact_stack)
    provider.app.pact_stack = counter
    try:
        yield counter
    finally:
        provider.app.pact_stack = counter.app


def _access_line(provider: Provider, request_id: str) -> dict[str, Any]:
    [line] = [e for e in provider.log_events() if e.get("request_id") == request_id]
    return line


def _metric(provider: Provider, name: str, **labels: str) -> float:
    value = provider.app.state.provider.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else float(value)


async def test_post_pact_is_answered_by_the_outer_layer_with_request_id_line_and_metrics(
    clock: FakeClock,
) -> None:
    async with running_provider(clock=clock) as provider, counted(provider) as stack:
        response = await provider.post(
            signed(intent_message(clock.now)), headers={"x-request-id": "r-1"}
        )
        assert stack.paths == ["/pact"]
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
async def test_413_and_415_from_the_outer_layer_carry_the_request_id_and_one_line(
    clock: FakeClock, content: bytes, headers: dict[str, str], status: int, code: str
) -> None:
    async with (
        running_provider(settings(max_body_bytes=1024), clock=clock) as provider,
        counted(provider) as stack,
    ):
        response = await provider.http.post(
            "/pact", content=content, headers={**headers, "x-request-id": "r-2"}
        )
        assert stack.paths == ["/pact"]
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
    async with running_provider(clock=clock) as provider, counted(provider) as stack:
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
        assert stack.paths == ["/pact", "/pact"]
        events = provider.log_events()
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


async def test_other_routes_and_methods_go_through_fastapi(clock: FakeClock) -> None:
    async with running_provider(clock=clock) as provider, counted(provider) as stack:
        health = await provider.http.get("/healthz", headers={"x-request-id": "r-4"})
        wrong_method = await provider.http.get("/pact")
        near_miss = await provider.http.post("/pact/", content=b"{}", headers=JSON)
        assert stack.paths == []
        assert health.status_code == 200
        assert health.headers["x-request-id"] == "r-4"
        assert _access_line(provider, "r-4")["event"] == "http.request"
        assert wrong_method.status_code == 405
        assert near_miss.status_code in (307, 404)


async def test_pact_under_a_root_path_is_served_by_the_fastapi_route(clock: FakeClock) -> None:
    async with running_provider(clock=clock) as provider, counted(provider) as stack:
        transport = httpx.ASGITransport(provider.app, root_path="/api")
        async with httpx.AsyncClient(transport=transport, base_url="http://provider") as http:
            response = await http.post(
                "/api/pact",
                content=body(signed(intent_message(clock.now))),
                headers={**JSON, "x-request-id": "r-5"},
            )
        assert stack.paths == []
        assert reply_of(response)["type"] == "ASK"
        assert response.headers["x-request-id"] == "r-5"
        assert _access_line(provider, "r-5")["event"] == "pact.intent.quoted"


async def test_the_pact_route_stays_in_the_openapi_document(clock: FakeClock) -> None:
    async with running_provider(clock=clock) as provider:
        document = (await provider.http.get("/openapi.json")).json()
    assert "post" in document["paths"]["/pact"]
