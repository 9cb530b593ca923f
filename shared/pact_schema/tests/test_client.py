from __future__ import annotations

import base64
from decimal import Decimal
from typing import Any

import httpx
import pytest
from pact_schema import commit_hash_hex
from pact_schema.client import NegotiationResult, PactClient, ProviderHTTPError
from pact_schema.envelope import sign_message, verify_envelope
from pact_schema.keys import Keypair
from pact_schema.quote import quote_binding_fields

PROVIDER = Keypair(bytes([7] * 32))
BUYER = Keypair(bytes([9] * 32))


def _fake_provider(*, tamper_delivery: bool = False) -> httpx.MockTransport:
    """A provider double that quotes and acknowledges with a hash_reveal delivery."""

    def handle(request: httpx.Request) -> httpx.Response:
        envelope = verify_envelope(httpx.Response(200, content=request.content).json())
        msg = envelope.message_raw
        now = msg["sent_at_ms"]
        base = {"protocol_version": "pact/1.0", "intent_id": msg["intent_id"], "sent_at_ms": now}
        if msg["type"] == "INTENT":
            reply: dict[str, Any] = {
                **base,
                "type": "ASK",
                "price": 0.00008,
                "unit": "request",
                "latency_ms": 50,
                "valid_for_ms": 20_000,
                "bond_required": 0.00016,
                "expires_at_ms": now + 20_000,
                **quote_binding_fields(
                    buyer_key=envelope.signer,
                    round_number=1,
                    intent_type=msg["intent"],
                    settlement_mode="hash_reveal",
                    list_price=Decimal("0.00008"),
                ),
            }
        else:
            assert msg["quote"]["message"]["type"] == "ASK"
            payload, nonce = b"forecast: sunny", b"n0nce"
            commitment = commit_hash_hex(
                base64.b64encode(payload).decode(), base64.b64encode(nonce).decode()
            )
            if tamper_delivery:
                payload = b"forecast: rain"
            reply = {
                **base,
                "type": "ACCEPT",
                "agreed_price": msg["agreed_price"],
                "settlement_mode": "hash_reveal",
                "proof_type": "hash_reveal",
                "challenge_window_ms": 0,
                "delivery_deadline_ms": msg["delivery_deadline_ms"],
                "expires_at_ms": now + 1_000,
                "settlement": {"id": "stl_1", "state": "delivered", "rail": "ledger"},
                "delivery": {
                    "status": "delivered",
                    "commit_hash_hex": commitment,
                    "payload_b64": base64.b64encode(payload).decode(),
                    "nonce_b64": base64.b64encode(nonce).decode(),
                },
            }
        return httpx.Response(200, json=sign_message(reply, PROVIDER))

    return httpx.MockTransport(handle)


async def _negotiate(transport: httpx.MockTransport) -> NegotiationResult:
    async with httpx.AsyncClient(transport=transport) as http:
        client = PactClient("http://provider", BUYER, http=http)
        return await client.negotiate(
            intent="weather.data", scope="NYC", max_price=Decimal("0.0002"), accept=True
        )


async def test_accept_carries_the_quote_and_the_delivery_is_checked() -> None:
    result = await _negotiate(_fake_provider())
    assert result.outcome == "ACCEPTED"
    assert result.price == Decimal("0.00008")
    assert result.settlement == {"id": "stl_1", "state": "delivered", "rail": "ledger"}
    assert result.payload == b"forecast: sunny"
    assert result.delivery_verified is True
    assert [e["message"]["type"] for e in result.transcript] == [
        "INTENT",
        "ASK",
        "ACCEPT",
        "ACCEPT",
    ]


async def test_a_payload_that_does_not_match_its_commitment_is_flagged() -> None:
    result = await _negotiate(_fake_provider(tamper_delivery=True))
    assert result.delivery_verified is False


async def test_a_quote_above_max_price_is_not_accepted() -> None:
    async with httpx.AsyncClient(transport=_fake_provider()) as http:
        client = PactClient("http://provider", BUYER, http=http)
        result = await client.negotiate(
            intent="weather.data", scope="NYC", max_price=Decimal("0.00005"), accept=True
        )
    assert result.outcome == "REJECTED"
    assert "exceeds max_price" in (result.reason or "")
    assert len(result.transcript) == 2


async def test_a_bid_at_or_above_the_ask_is_not_sent_and_the_result_says_so() -> None:
    async with httpx.AsyncClient(transport=_fake_provider()) as http:
        client = PactClient("http://provider", BUYER, http=http)
        result = await client.negotiate(
            intent="weather.data",
            scope="NYC",
            max_price=Decimal("0.0002"),
            bids=[Decimal("0.0001"), Decimal("0.00008")],
        )
    assert result.outcome == "QUOTED"
    assert [e["message"]["type"] for e in result.transcript] == ["INTENT", "ASK"]
    assert result.notes == [
        "BID 0.0001 not sent: the ASK is already 0.00008, at or below it",
        "BID 0.00008 not sent: the ASK is already 0.00008, at or below it",
    ]
    assert result.to_json()["notes"] == result.notes


async def test_a_problem_document_that_is_not_json_is_still_an_http_error() -> None:
    transport = httpx.MockTransport(
        lambda _: httpx.Response(
            503, content=b"{oops", headers={"content-type": "application/problem+json"}
        )
    )
    async with httpx.AsyncClient(transport=transport) as http:
        client = PactClient("http://provider", BUYER, http=http)
        with pytest.raises(ProviderHTTPError) as raised:
            await client.negotiate(intent="weather.data", scope="NYC", max_price=Decimal("1"))
    assert raised.value.status_code == 503
    assert raised.value.problem is None


async def test_the_client_stamps_every_message_with_its_clock() -> None:
    seen: list[tuple[int, int]] = []
    provider = _fake_provider()

    def spy(request: httpx.Request) -> httpx.Response:
        envelope = httpx.Response(200, content=request.content).json()
        seen.append((envelope["message"]["sent_at_ms"], envelope["signed_at_ms"]))
        return provider.handler(request)  # type: ignore[no-any-return]

    frozen = 1_900_000_000_000  # years from the wall clock, so a wall-clock read would show
    async with httpx.AsyncClient(transport=httpx.MockTransport(spy)) as http:
        client = PactClient("http://provider", BUYER, http=http, clock=lambda: frozen)
        result = await client.negotiate(
            intent="weather.data", scope="NYC", max_price=Decimal("0.0002"), accept=True
        )
    assert result.outcome == "ACCEPTED"
    assert seen == [(frozen, frozen), (frozen, frozen)]  # the INTENT and the ACCEPT
