"""Settlement down or slow, over real sockets (the provider's own HTTP client, no mock transport).

Proves: an ACCEPT is answered by the ``SETTLEMENT_TIMEOUT_S`` budget, before a slow settlement
would have answered, with a clear refusal (503 ``SETTLEMENT_UNAVAILABLE`` problem +
``Retry-After``) whether settlement's port is closed, it accepts the connection and never
answers, or it answers too slowly; and INTENTs sent meanwhile are answered with an ASK without
waiting for that budget. The bounds come from the settings, not from how fast this machine is.
"""

from __future__ import annotations

import asyncio
import io
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fixtures.provider import (
    PROVIDER,
    FakeClock,
    accept_message,
    body,
    intent_message,
    reply_of,
    settings,
    signed,
)
from pact_provider.app import create_app

pytestmark = [pytest.mark.faults]

TIMEOUT_S = 1.0
#: When the slow settlement answers: an ACCEPT answered earlier was cut by the budget.
LATE_S = TIMEOUT_S * 4


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@asynccontextmanager
async def _server(handler: Callable[..., Awaitable[None]]) -> AsyncIterator[str]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


async def _never_answers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        await asyncio.sleep(30)
    except asyncio.CancelledError:
        pass  # the loop ends with the test; a cancelled handler task would be logged as an error
    finally:
        writer.close()


async def _answers_slowly(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Reads the request, then answers 201 long after the provider's budget."""
    try:
        await reader.readuntil(b"\r\n\r\n")
        await asyncio.sleep(LATE_S)
        payload = b'{"id": "late", "state": "locked", "rail": "ledger"}'
        writer.write(
            b"HTTP/1.1 201 Created\r\ncontent-type: application/json\r\n"
            + f"content-length: {len(payload)}\r\n\r\n".encode()
            + payload
        )
        await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


@asynccontextmanager
async def _provider(settlement_url: str, clock: FakeClock) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(
        settings(
            settlement_url=settlement_url,
            settlement_timeout_s=TIMEOUT_S,
            settlement_connect_timeout_s=0.5,
            settlement_backoff_s=0.05,
            settlement_retry_after_s=3,
        ),
        keypair=PROVIDER,
        clock=clock,
        log_stream=io.StringIO(),
    )
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://provider") as http,
    ):
        yield http


async def _post(http: httpx.AsyncClient, envelope: Any) -> httpx.Response:
    return await http.post(
        "/pact", content=body(envelope), headers={"content-type": "application/json"}
    )


@pytest.mark.parametrize("mode", ["closed_port", "never_answers", "answers_too_late"])
async def test_accept_is_refused_in_time_and_intents_flow_meanwhile(mode: str) -> None:
    clock = FakeClock()
    if mode == "closed_port":
        url_cm: Any = _closed_port()
    elif mode == "never_answers":
        url_cm = _server(_never_answers)
    else:
        url_cm = _server(_answers_slowly)
    async with url_cm as settlement_url, _provider(settlement_url, clock) as http:
        ask = await _post(http, signed(intent_message(clock.now)))
        assert reply_of(ask)["type"] == "ASK"
        accept = signed(accept_message(ask.json(), clock.now))

        accept_answered = asyncio.Event()

        async def timed_accept() -> tuple[httpx.Response, float]:
            started = time.monotonic()
            r = await _post(http, accept)
            accept_answered.set()
            return r, time.monotonic() - started

        async def intents() -> list[bool]:
            """For each INTENT: was it answered while the ACCEPT was still waiting?"""
            answered_first = []
            for i in range(10):
                r = await _post(
                    http, signed(intent_message(clock.now, intent_id=f"intent-side-{i}"))
                )
                answered_first.append(not accept_answered.is_set())
                assert r.status_code == 200, r.text
                assert reply_of(r)["type"] == "ASK"
                await asyncio.sleep(TIMEOUT_S / 20)
            return answered_first

        (response, elapsed), answered_first = await asyncio.gather(timed_accept(), intents())

    assert elapsed < LATE_S, elapsed
    if response.status_code == 503:
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "SETTLEMENT_UNAVAILABLE"
        assert int(response.headers["retry-after"]) >= 1
    else:  # a signed refusal is the other clear answer
        reply = reply_of(response)
        assert reply["type"] == "REJECT"
        assert reply["code"] == "SETTLEMENT_FAILED"
    # None waited behind the ACCEPT: the first INTENT, sent with it, was answered before it.
    # (Ordered by events, not timed: a stalled worker on a loaded machine delays both alike.)
    assert answered_first[0], answered_first


@asynccontextmanager
async def _closed_port() -> AsyncIterator[str]:
    yield f"http://127.0.0.1:{_free_port()}"
