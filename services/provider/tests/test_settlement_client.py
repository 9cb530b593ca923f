"""Forwarding ACCEPTs to settlement: contract, retries with one idempotency key, mapping."""

from __future__ import annotations

import time

import httpx
import pytest
from fixtures.provider import (
    BUYER,
    SETTLEMENT_TOKEN,
    FakeClock,
    FakeSettlement,
    Provider,
    Scripted,
    accept_message,
    intent_message,
    reply_of,
    running_provider,
    settings,
    signed,
)
from pact_provider.settlement_client import HttpSettlementClient
from pact_schema import message_hash_hex


async def _accept(provider: Provider, clock: FakeClock) -> tuple[dict, httpx.Response]:
    ask = await provider.post(signed(intent_message(clock.now)))
    assert reply_of(ask)["type"] == "ASK"
    accept = signed(accept_message(ask.json(), clock.now))
    return accept, await provider.post(accept)


def _problem(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == code
    assert problem["status"] == status
    assert {"type", "title", "detail"} <= problem.keys()
    return problem


async def test_accept_is_posted_with_bearer_token_idempotency_key_and_the_envelope_as_received(
    clock: FakeClock, settlement: FakeSettlement
) -> None:
    async with running_provider(clock=clock, settlement=settlement) as provider:
        accept, response = await _accept(provider, clock)
    ack = reply_of(response)
    assert ack["type"] == "ACCEPT"
    assert ack["settlement"]["id"] == "stl-intent-1"
    assert ack["settlement"]["state"] == "locked"
    (seen,) = settlement.requests
    assert seen.headers["authorization"] == f"Bearer {SETTLEMENT_TOKEN}"
    assert seen.headers["idempotency-key"] == f"accept-{message_hash_hex(accept['message'])}"
    assert seen.body == {"accept": accept, "rail": None}


async def test_a_lock_still_in_flight_202_is_answered_pending_without_retries_or_payload(
    clock: FakeClock, settlement: FakeSettlement
) -> None:
    """Settlement answers 202 while an external rail's lock is in flight (and to a replay of
    it): the buyer is told the trade is pending, gets no goods, and resends later."""
    pending = {"id": "st_x", "state": "pending", "rail": "stripe", "amount": "0.00008"}
    settlement.then(Scripted(202, pending))
    async with running_provider(
        settings(fulfilment="demo"), clock=clock, settlement=settlement, after_settlement=None
    ) as provider:
        _, response = await _accept(provider, clock)
    ack = reply_of(response)
    assert ack["type"] == "ACCEPT"
    assert ack["settlement"]["state"] == "pending"
    assert len(settlement.requests) == 1
    assert ack["delivery"]["status"] == "pending"
    assert "payload_b64" not in ack["delivery"]


@pytest.mark.parametrize("status", [500, 502, 503, 429, 408])
async def test_transient_settlement_failures_are_retried_with_the_same_idempotency_key(
    clock: FakeClock, settlement: FakeSettlement, status: int
) -> None:
    settlement.then(Scripted(status, {"code": "X", "detail": "busy"}), Scripted(status, {}))
    async with running_provider(clock=clock, settlement=settlement) as provider:
        _, response = await _accept(provider, clock)
    assert reply_of(response)["type"] == "ACCEPT"
    keys = {seen.headers["idempotency-key"] for seen in settlement.requests}
    assert len(settlement.requests) == 3
    assert len(keys) == 1


async def test_settlement_failing_every_attempt_gives_503_with_retry_after(
    clock: FakeClock, settlement: FakeSettlement
) -> None:
    settlement.then(*[Scripted(500, {"detail": "db down"})] * 3)
    async with running_provider(
        settings(settlement_retry_after_s=4), clock=clock, settlement=settlement
    ) as provider:
        _, response = await _accept(provider, clock)
        again = await provider.post(settlement.requests[0].body["accept"])
    problem = _problem(response, 503, "SETTLEMENT_UNAVAILABLE")
    assert response.headers["retry-after"] == "4"
    assert "same ACCEPT" in problem["detail"]
    assert len(settlement.requests) == 4  # three attempts, then the resent ACCEPT
    assert reply_of(again)["type"] == "ACCEPT"
    assert len({seen.headers["idempotency-key"] for seen in settlement.requests}) == 1


async def test_retry_after_from_settlement_is_passed_on(
    clock: FakeClock, settlement: FakeSettlement
) -> None:
    settlement.then(*[Scripted(429, {"detail": "slow down"}, headers={"Retry-After": "7"})] * 3)
    async with running_provider(clock=clock, settlement=settlement) as provider:
        _, response = await _accept(provider, clock)
    _problem(response, 503, "SETTLEMENT_UNAVAILABLE")
    assert response.headers["retry-after"] == "7"


async def test_hanging_settlement_gives_503_within_the_time_budget(
    clock: FakeClock, settlement: FakeSettlement
) -> None:
    hang_s = 30
    settlement.then(*[Scripted(delay_s=hang_s)] * 3)
    async with running_provider(
        settings(settlement_timeout_s=0.3), clock=clock, settlement=settlement
    ) as provider:
        started = time.monotonic()
        _, response = await _accept(provider, clock)
        elapsed = time.monotonic() - started
    _problem(response, 503, "SETTLEMENT_UNAVAILABLE")
    assert elapsed < hang_s  # the budget answered: the settlement never did


async def test_unreachable_settlement_gives_503_not_500(clock: FakeClock) -> None:
    attempts: list[httpx.Request] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        attempts.append(request)
        raise httpx.ConnectError("connection refused", request=request)

    async with running_provider(clock=clock, transport=httpx.MockTransport(refuse)) as provider:
        _, response = await _accept(provider, clock)
    _problem(response, 503, "SETTLEMENT_UNAVAILABLE")
    assert len(attempts) == 3


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (402, "INSUFFICIENT_ESCROW", "INSUFFICIENT_ESCROW"),
        (422, "FAILED_ESCROW", "FAILED_ESCROW"),
        (422, "QUOTE_EXPIRED", "QUOTE_EXPIRED"),
        (422, "UNTRUSTED_ISSUER", "UNTRUSTED_ISSUER"),
        (400, "NOT_A_FAILURE_CODE", "SETTLEMENT_FAILED"),
        (409, "INSUFFICIENT_ESCROW", "SETTLEMENT_FAILED"),
    ],
)
async def test_settlement_refusals_become_signed_rejects_with_the_settlement_code(
    clock: FakeClock, settlement: FakeSettlement, status: int, code: str, expected: str
) -> None:
    settlement.then(Scripted(status, {"code": code, "detail": "refused for a reason"}))
    async with running_provider(clock=clock, settlement=settlement) as provider:
        _, response = await _accept(provider, clock)
    reject = reply_of(response)
    assert reject["type"] == "REJECT"
    assert reject["code"] == expected
    assert reject["reason"] == "refused for a reason"
    assert len(settlement.requests) == 1


async def test_refusal_without_a_problem_body_is_settlement_failed(
    clock: FakeClock, settlement: FakeSettlement
) -> None:
    settlement.then(Scripted(400, raw=b"nope"))
    async with running_provider(clock=clock, settlement=settlement) as provider:
        _, response = await _accept(provider, clock)
    reject = reply_of(response)
    assert reject["code"] == "SETTLEMENT_FAILED"
    assert reject["reason"] == "settlement answered HTTP 400"


@pytest.mark.parametrize("status", [401, 403])
async def test_settlement_refusing_our_token_is_503_without_retries(
    clock: FakeClock, settlement: FakeSettlement, status: int
) -> None:
    settlement.then(Scripted(status, {"detail": "bad token"}))
    async with running_provider(clock=clock, settlement=settlement) as provider:
        _, response = await _accept(provider, clock)
    _problem(response, 503, "SETTLEMENT_UNAVAILABLE")
    assert len(settlement.requests) == 1


@pytest.mark.parametrize("raw", [b"{}", b"not json", b'{"id": "x"}', b"[]"])
async def test_success_without_id_and_state_is_503(
    clock: FakeClock, settlement: FakeSettlement, raw: bytes
) -> None:
    settlement.then(Scripted(201, raw=raw))
    async with running_provider(clock=clock, settlement=settlement) as provider:
        _, response = await _accept(provider, clock)
    _problem(response, 503, "SETTLEMENT_UNAVAILABLE")


async def test_lenient_bare_accept_sends_the_provider_minted_quote(
    clock: FakeClock, settlement: FakeSettlement
) -> None:
    async with running_provider(
        settings(lenient_accept=True), clock=clock, settlement=settlement
    ) as provider:
        response = await provider.post(signed(accept_message(None, clock.now, agreed_price=0.0002)))
    assert reply_of(response)["type"] == "ACCEPT"
    minted = settlement.requests[0].body["provider_quote"]
    assert minted["message"]["buyer_public_key_b58"] == BUYER.public_key_b58
    assert minted["message"]["price"] == 0.0002


def _client(settlement: FakeSettlement, token: str | None) -> HttpSettlementClient:
    return HttpSettlementClient(
        "http://settlement.test",
        token,
        total_timeout_s=1,
        connect_timeout_s=1,
        attempts=1,
        backoff_s=0,
        retry_after_s=1,
        max_connections=2,
        transport=settlement.transport,
    )


async def test_readiness_proves_the_token_is_settlements_provider_token(
    settlement: FakeSettlement,
) -> None:
    good = _client(settlement, SETTLEMENT_TOKEN)
    assert await good.readiness() == "ok"
    settlement.healthy = False
    assert await good.readiness() == "settlement answered HTTP 503"
    settlement.healthy = True
    wrong = _client(settlement, "not-the-token")
    assert await wrong.readiness() == "settlement refused the provider's token (HTTP 401)"
    none = _client(settlement, None)
    assert await none.readiness() == "settlement refused the provider's token (HTTP 401)"
    admin = _client(settlement, settlement.admin_token)
    assert "admin token, not its provider token" in await admin.readiness()
    for client in (good, wrong, none, admin):
        await client.aclose()
