"""The reference adapter's endpoints over HTTP (the app in process, a fake settlement that
records COMMIT/REVEAL as the real one does): shapes, and the two promises — no payload unless
settlement recorded the delivery, no goods without a locked payment."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fixtures.provider import (
    BUYER,
    NOW,
    OTHER_BUYER,
    PROVIDER,
    FakeClock,
    FakeSettlement,
    accept_message,
    bid_message,
    running_provider,
    settings,
)
from pact_schema import Keypair, commit_hash_hex, reveal_matches, verify_envelope

QUOTE_REQUEST = {
    "intent_id": "intent-ref-1",
    "intent_type": "weather.data",
    "max_price": 0.0002,
    "constraints": {"latency_ms": 100, "freshness_sec": 30},
}


def _envelope_of(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    envelope = response.json()["envelope"]
    verified = verify_envelope(envelope)
    assert verified.signer == PROVIDER.public_key_b58
    return verified.message_raw


def _problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    return body


async def _delivered(provider: Any, clock: FakeClock, buyer: Keypair = BUYER) -> dict[str, Any]:
    """/quote, then an ACCEPT carrying the open quote: the ack with the delivery."""
    response = await provider.http.post("/quote", json=QUOTE_REQUEST)
    assert response.status_code == 200
    quote = response.json()["envelope"]
    clock.advance(100)
    ack = await provider.send(accept_message(quote, now=clock()), key=buyer)
    assert ack["type"] == "ACCEPT", ack
    assert ack["settlement"]["state"] == "delivered"
    return ack


async def test_health_names_the_seller() -> None:
    async with running_provider() as provider:
        body = (await provider.http.get("/health")).json()
    assert body == {
        "ok": True,
        "sellerId": PROVIDER.public_key_b58,
        "seller_pubkey_b58": PROVIDER.public_key_b58,
    }


async def test_a_quote_is_an_open_ask_priced_as_the_intent() -> None:
    clock = FakeClock()
    async with running_provider(clock=clock) as provider:
        ask = _envelope_of(await provider.http.post("/quote", json=QUOTE_REQUEST))
        from_intent = await provider.send(
            {
                "protocol_version": "pact/1.0",
                "type": "INTENT",
                "intent_id": "intent-ref-2",
                "intent": "weather.data",
                "scope": "",
                "constraints": QUOTE_REQUEST["constraints"],
                "max_price": 0.0002,
                "settlement_mode": "hash_reveal",
                "sent_at_ms": NOW,
                "expires_at_ms": NOW + 60_000,
            }
        )
    assert ask["type"] == "ASK"
    assert ask["intent_id"] == "intent-ref-1"
    assert ask["open_quote"] is True
    assert "buyer_public_key_b58" not in ask
    assert ask["round"] == 1
    assert ask["price"] == from_intent["price"]
    assert ask["negotiation_started_ms"] == NOW
    assert ask["settlement_mode"] == "hash_reveal"


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"max_price": 0.00000001}, "PRICE_ABOVE_MAX"),
        ({"max_price": "0.0002"}, "SCHEMA_VALIDATION_FAILED"),
        ({"constraints": {"latency_ms": -1, "freshness_sec": 30}}, "SCHEMA_VALIDATION_FAILED"),
        ({"intent_type": ""}, "SCHEMA_VALIDATION_FAILED"),
        ({"intent_id": "a/b"}, "SCHEMA_VALIDATION_FAILED"),
        ({"urgent": "yes"}, "SCHEMA_VALIDATION_FAILED"),
        ({"settlement_mode": "streaming"}, "SETTLEMENT_MODE_NOT_ALLOWED"),
        ({"intent_type": None}, "SCHEMA_VALIDATION_FAILED"),
    ],
)
async def test_a_quote_request_it_cannot_honour_gets_a_signed_reject(
    change: dict[str, Any], code: str
) -> None:
    request = {k: v for k, v in {**QUOTE_REQUEST, **change}.items() if v is not None}
    async with running_provider(settings(settlement_modes=["hash_reveal"])) as provider:
        reply = _envelope_of(await provider.http.post("/quote", json=request))
    assert reply["type"] == "REJECT"
    assert reply["code"] == code
    assert reply["intent_id"] in (request.get("intent_id"), "unknown")
    assert reply["intent_id"] != "a/b"  # what is refused is never echoed


@pytest.mark.parametrize(
    ("content", "status"),
    [(b"not json", 400), (b"[1, 2]", 400), (b"{" * 20_000, 413)],
)
async def test_a_body_that_is_no_request_is_a_problem(content: bytes, status: int) -> None:
    async with running_provider(settings(max_body_bytes=16_384)) as provider:
        for path in ("/quote", "/commit", "/reveal"):
            response = await provider.http.post(
                path, content=content, headers={"content-type": "application/json"}
            )
            assert response.status_code == status, (path, response.text)
            assert response.headers["content-type"] == "application/problem+json"


async def test_any_buyer_may_accept_an_open_quote_by_carrying_it() -> None:
    clock = FakeClock()
    async with running_provider(clock=clock, after_settlement=None) as provider:
        first = await _delivered(provider, clock, BUYER)
        second = await _delivered(provider, clock, OTHER_BUYER)
    for ack in (first, second):
        delivery = ack["delivery"]
        assert reveal_matches(
            delivery["commit_hash_hex"], delivery["payload_b64"], delivery["nonce_b64"]
        )
    assert first["delivery"]["nonce_b64"] != second["delivery"]["nonce_b64"]  # per buyer


async def test_a_bid_against_an_open_quote_is_answered_with_a_quote_bound_to_the_bidder() -> None:
    clock = FakeClock()
    async with running_provider(clock=clock) as provider:
        open_quote = (await provider.http.post("/quote", json=QUOTE_REQUEST)).json()["envelope"]
        counter = await provider.send(bid_message(open_quote, 0.00007), key=OTHER_BUYER)
    assert counter["type"] == "ASK"
    assert counter["round"] == 2
    assert counter["buyer_public_key_b58"] == OTHER_BUYER.public_key_b58
    assert "open_quote" not in counter
    assert counter["negotiation_started_ms"] == open_quote["message"]["negotiation_started_ms"]


async def test_commit_and_reveal_answer_for_the_delivered_trade_only() -> None:
    clock = FakeClock()
    async with running_provider(clock=clock, after_settlement=None) as provider:
        ack = await _delivered(provider, clock)
        delivery = ack["delivery"]
        request = {
            "intent_id": QUOTE_REQUEST["intent_id"],
            "payload_b64": delivery["payload_b64"],
            "nonce_b64": delivery["nonce_b64"],
        }
        commit = _envelope_of(await provider.http.post("/commit", json=request))
        assert commit["type"] == "COMMIT"
        assert commit["commit_hash_hex"] == delivery["commit_hash_hex"]
        assert commit["commit_hash_hex"] == commit_hash_hex(
            delivery["payload_b64"], delivery["nonce_b64"]
        )

        response = await provider.http.post(
            "/reveal", json={**request, "commit_hash_hex": commit["commit_hash_hex"]}
        )
        assert response.json()["ok"] is True
        reveal = _envelope_of(response)
        assert reveal["type"] == "REVEAL"
        assert reveal_matches(commit["commit_hash_hex"], reveal["payload_b64"], reveal["nonce_b64"])

        stale = await provider.http.post("/reveal", json={**request, "commit_hash_hex": "ab" * 32})
        assert stale.json()["ok"] is False
        assert stale.json()["code"] == "FAILED_PROOF"
        assert _envelope_of(stale)["payload_b64"] == delivery["payload_b64"]


async def test_reveal_never_hands_a_delivery_to_a_caller_who_does_not_hold_it() -> None:
    clock = FakeClock()
    async with running_provider(clock=clock, after_settlement=None) as provider:
        ack = await _delivered(provider, clock)
        guesses = [
            {"payload_b64": "eyJkYXRhIjoiZGVsaXZlcmVkIn0=", "nonce_b64": "bm9uY2UtMQ=="},
            {"payload_b64": ack["delivery"]["payload_b64"], "nonce_b64": "bm9uY2UtMQ=="},
        ]
        for guess in guesses:
            response = await provider.http.post(
                "/reveal",
                json={
                    "intent_id": QUOTE_REQUEST["intent_id"],
                    "commit_hash_hex": ack["delivery"]["commit_hash_hex"],
                    **guess,
                },
            )
            body = _problem(response, 403, "REVEAL_NOT_PROVEN")
            assert ack["delivery"]["payload_b64"] not in response.text
            assert "envelope" not in body


async def test_nothing_is_committed_or_revealed_before_settlement_records_it() -> None:
    clock = FakeClock()
    settlement = FakeSettlement()
    async with running_provider(clock=clock, settlement=settlement) as provider:  # no delivery
        request = {"intent_id": "intent-ref-1", "payload_b64": "eA==", "nonce_b64": "eQ=="}
        _problem(await provider.http.post("/commit", json=request), 404, "NOT_FOUND")
        quote = (await provider.http.post("/quote", json=QUOTE_REQUEST)).json()["envelope"]
        ack = await provider.send(accept_message(quote, now=clock()))
        assert ack["settlement"]["state"] == "locked"
        assert "delivery" not in ack
        body = _problem(await provider.http.post("/commit", json=request), 409, "NOT_DELIVERED")
        assert "locked" in body["detail"]
        reveal = {**request, "commit_hash_hex": "ab" * 32}
        _problem(await provider.http.post("/reveal", json=reveal), 409, "NOT_DELIVERED")
        settlement.records[f"stl-{request['intent_id']}"].update(
            state="refunded", failure_code="COMMIT_WINDOW_MISSED"
        )
        _problem(await provider.http.post("/commit", json=request), 409, "COMMIT_WINDOW_MISSED")


async def test_another_sellers_trade_is_not_ours_to_speak_for() -> None:
    clock = FakeClock()
    settlement = FakeSettlement()
    async with running_provider(clock=clock, settlement=settlement, after_settlement=None) as p:
        ack = await _delivered(p, clock)
        settlement.records[f"stl-{QUOTE_REQUEST['intent_id']}"]["seller"] = (
            Keypair.generate().public_key_b58
        )
        request = {
            "intent_id": QUOTE_REQUEST["intent_id"],
            **{k: ack["delivery"][k] for k in ("payload_b64", "nonce_b64")},
        }
        _problem(await p.http.post("/commit", json=request), 404, "NOT_FOUND")


@pytest.mark.parametrize(
    "body",
    [
        {"intent_id": "../x", "payload_b64": "", "nonce_b64": ""},
        {"payload_b64": "", "nonce_b64": ""},
        {
            "intent_id": "intent-1",
            "payload_b64": "",
            "nonce_b64": "",
            "buyer_public_key_b58": "0OIl",
        },
    ],
)
async def test_commit_requests_are_checked_before_any_lookup(body: dict[str, Any]) -> None:
    settlement = FakeSettlement()
    async with running_provider(settlement=settlement) as provider:
        _problem(await provider.http.post("/commit", json=body), 400, "REQUEST_MALFORMED")
    assert settlement.requests == []


async def test_stream_chunk_of_no_running_stream_is_a_signed_refusal() -> None:
    async with running_provider() as provider:
        reply = _envelope_of(
            await provider.http.post("/stream/chunk", json={"intent_id": "intent-1", "seq": 0})
        )
    assert reply["type"] == "REJECT"
    assert reply["code"] == "SETTLEMENT_MODE_NOT_ALLOWED"
    assert "POST /pact/stream" in reply["reason"]


async def test_the_openapi_page_documents_the_reference_surface() -> None:
    async with running_provider() as provider:
        spec = (await provider.http.get("/openapi.json")).json()
    for path in ("/quote", "/commit", "/reveal", "/stream/chunk"):
        operation = spec["paths"][path]["post"]
        assert operation["tags"] == ["reference adapter"]
        assert "requestBody" in operation
        assert "200" in operation["responses"]
    assert "/health" in spec["paths"]
    assert "403" in spec["paths"]["/reveal"]["post"]["responses"]


def test_every_reference_route_is_a_known_metrics_route() -> None:
    from pact_provider.app import ROUTES

    assert {"/quote", "/commit", "/reveal", "/stream/chunk", "/health"} <= set(ROUTES)
