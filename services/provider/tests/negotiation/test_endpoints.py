"""``POST /pact`` over HTTP: body handling, problems, transcripts, and a whole negotiation."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fixtures.provider import (
    BUYER,
    PROVIDER,
    FakeClock,
    FakeSettlement,
    accept_message,
    body,
    intent_message,
    reply_of,
    running_provider,
    settings,
    signed,
)
from pact_schema import Keypair, now_ms, sign_message, verify_envelope
from pact_schema.client import PactClient
from pact_schema.keys import b58encode


def _problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    doc = response.json()
    assert doc["code"] == code
    assert doc["status"] == status
    assert doc["type"].startswith("urn:pact-provider:problem:")
    assert doc["title"]
    assert doc["detail"]
    return doc


async def test_intent_over_http_answers_a_signed_ask_as_json(clock: FakeClock) -> None:
    async with running_provider(clock=clock) as provider:
        response = await provider.post(signed(intent_message(clock.now)))
    assert response.headers["content-type"] == "application/json"
    assert reply_of(response)["type"] == "ASK"


async def test_pact_client_negotiates_bids_and_accepts_end_to_end(
    clock: FakeClock, settlement: FakeSettlement
) -> None:
    async with running_provider(settings(), clock=clock, settlement=settlement) as provider:
        clock.now = now_ms()  # the client stamps real time
        client = PactClient("http://provider", BUYER, http=provider.http)
        result = await client.negotiate(
            intent="weather.data",
            scope={"city": "Zürich", "emoji": "🏔️"},
            max_price=Decimal("0.0002"),
            bids=[Decimal("0.00007"), Decimal("0.00007")],
            accept=True,
        )
    assert result.outcome == "ACCEPTED", result.reason
    assert result.price == Decimal("0.0000725")  # 0.00008 → 0.000075 → 0.0000725
    assert result.settlement is not None
    assert result.settlement["state"] == "locked"
    assert client.provider_key == PROVIDER.public_key_b58
    asks = [e["message"] for e in result.transcript if e["message"]["type"] == "ASK"]
    assert [a["round"] for a in asks] == [1, 2, 3]
    # Every round's signed quote carries the INTENT's scope, so any replica can fulfil it.
    assert all(a["scope"] == {"city": "Zürich", "emoji": "🏔️"} for a in asks)


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (lambda e: {**e, "message": {**e["message"], "max_price": 1}}, "ENVELOPE_HASH_MISMATCH"),
        (lambda e: {**e, "envelope_version": "pact-envelope/2.0"}, "ENVELOPE_BAD_VERSION"),
        (lambda e: {**e, "message_hash_hex": "zz"}, "ENVELOPE_BAD_HASH"),
        (lambda e: {**e, "signer_public_key_b58": "0OIl"}, "ENVELOPE_BAD_KEY"),
        (
            lambda e: {**e, "signer_public_key_b58": Keypair.generate().public_key_b58},
            "ENVELOPE_BAD_SIGNATURE",
        ),
        (lambda e: {k: v for k, v in e.items() if k != "signature_b58"}, "ENVELOPE_MALFORMED"),
        (lambda e: {**e, "message": "INTENT"}, "ENVELOPE_MALFORMED"),
        (lambda e: e["message"], "ENVELOPE_MALFORMED"),
    ],
)
async def test_forged_tampered_or_malformed_envelopes_are_400_problems(
    clock: FakeClock,
    mutate,
    code: str,  # type: ignore[no-untyped-def]
) -> None:
    async with running_provider(clock=clock) as provider:
        response = await provider.post(mutate(signed(intent_message(clock.now))))
    _problem(response, 400, code)


@pytest.mark.parametrize("raw", [b"", b"null", b"{", b'"pact"', b"\x00\x01", b"1e999"])
async def test_bodies_that_are_not_json_objects_are_400(clock: FakeClock, raw: bytes) -> None:
    async with running_provider(clock=clock) as provider:
        response = await provider.http.post(
            "/pact", content=raw, headers={"content-type": "application/json"}
        )
    _problem(response, 400, "ENVELOPE_MALFORMED")


async def test_oversized_body_is_413_by_declared_length(clock: FakeClock) -> None:
    async with running_provider(settings(max_body_bytes=1024), clock=clock) as provider:
        response = await provider.http.post(
            "/pact", content=b" " * 2000, headers={"content-type": "application/json"}
        )
    _problem(response, 413, "PAYLOAD_TOO_LARGE")


async def test_oversized_streamed_body_without_length_is_413(clock: FakeClock) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b" " * 512

    async with running_provider(settings(max_body_bytes=1024), clock=clock) as provider:
        response = await provider.http.post(
            "/pact", content=chunks(), headers={"content-type": "application/json"}
        )
    _problem(response, 413, "PAYLOAD_TOO_LARGE")


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
async def test_non_json_content_type_is_415(clock: FakeClock, content_type: str) -> None:
    async with running_provider(clock=clock) as provider:
        response = await provider.http.post(
            "/pact",
            content=body(signed(intent_message(clock.now))),
            headers={"content-type": content_type},
        )
    _problem(response, 415, "UNSUPPORTED_MEDIA_TYPE")


@pytest.mark.parametrize("content_type", [None, "application/json; charset=utf-8", "a/b+json"])
async def test_json_media_types_and_a_missing_content_type_are_accepted(
    clock: FakeClock, content_type: str | None
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    async with running_provider(clock=clock) as provider:
        response = await provider.http.post(
            "/pact", content=body(signed(intent_message(clock.now))), headers=headers
        )
    assert reply_of(response)["type"] == "ASK"


async def test_unknown_routes_and_methods_are_problem_documents(clock: FakeClock) -> None:
    async with running_provider(clock=clock) as provider:
        missing = await provider.http.get("/nope")
        wrong_method = await provider.http.get("/pact")
    _problem(missing, 404, "NOT_FOUND")
    _problem(wrong_method, 405, "METHOD_NOT_ALLOWED")


async def test_lone_surrogates_get_a_signed_reject_that_does_not_echo_them(
    clock: FakeClock,
) -> None:
    async with running_provider(clock=clock) as provider:
        in_id = await provider.post(signed(intent_message(clock.now, intent_id="i-\ud800")))
        in_scope = await provider.post(signed(intent_message(clock.now, scope="x\udc00y")))
    reject = reply_of(in_id)
    assert reject["intent_id"] == "unknown"  # an id outside the alphabet is never echoed
    assert reject["code"] == "SCHEMA_VALIDATION_FAILED"
    reject = reply_of(in_scope)
    assert reject["intent_id"] == "intent-1"
    assert reject["code"] == "SCHEMA_VALIDATION_FAILED"
    assert "lone UTF-16 surrogate" in reject["reason"]


async def test_integers_beyond_64_bits_are_quoted_and_forwarded_exactly(
    clock: FakeClock, settlement: FakeSettlement
) -> None:
    async with running_provider(clock=clock, settlement=settlement) as provider:
        ask = await provider.post(signed(intent_message(clock.now, scope={"n": 2**70})))
        assert reply_of(ask)["type"] == "ASK"
        accept = signed(accept_message(ask.json(), clock.now, note=2**70))
        ack = reply_of(await provider.post(accept))
    assert ack["type"] == "ACCEPT"
    assert settlement.requests[0].body["accept"] == accept
    verify_envelope(settlement.requests[0].body["accept"])


async def test_request_id_is_echoed_or_generated_and_bound_to_the_transcript(
    clock: FakeClock,
) -> None:
    async with running_provider(clock=clock) as provider:
        given = await provider.post(
            signed(intent_message(clock.now)), headers={"x-request-id": "req-123"}
        )
        generated = await provider.post(
            signed(intent_message(clock.now)), headers={"x-request-id": "bad id\n"}
        )
        events = provider.log_events()
    assert given.headers["x-request-id"] == "req-123"
    assert generated.headers["x-request-id"] not in ("req-123", "bad id\n")
    quoted = [e for e in events if e["event"] == "pact.intent.quoted"]
    assert quoted[0]["request_id"] == "req-123"
    assert quoted[0]["intent_id"] == "intent-1"
    assert quoted[0]["outcome"] == "ASK"
    assert quoted[0]["price"] == "0.00008"
    assert quoted[0]["round"] == 1
    assert quoted[1]["request_id"] == generated.headers["x-request-id"]


async def test_a_pact_request_logs_one_line_its_transcript_event_with_the_http_fields(
    clock: FakeClock,
) -> None:
    async with running_provider(clock=clock) as provider:
        await provider.post(signed(intent_message(clock.now)), headers={"x-request-id": "r-1"})
        await provider.post({"not": "an envelope"}, headers={"x-request-id": "r-2"})
        await provider.http.get("/healthz", headers={"x-request-id": "r-3"})
        events = provider.log_events()
    by_request = {
        rid: [e for e in events if e.get("request_id") == rid] for rid in ("r-1", "r-2", "r-3")
    }
    [quoted] = by_request["r-1"]
    assert quoted["event"] == "pact.intent.quoted"
    assert (quoted["outcome"], quoted["round"], quoted["price"]) == ("ASK", 1, "0.00008")
    assert (quoted["method"], quoted["path"], quoted["status"]) == ("POST", "/pact", 200)
    assert quoted["duration_ms"] >= 0
    [refused] = by_request["r-2"]
    assert refused["event"] == "pact.envelope.refused"
    assert (refused["code"], refused["status"]) == ("ENVELOPE_MALFORMED", 400)
    [health] = by_request["r-3"]
    assert health["event"] == "http.request"
    assert (health["method"], health["path"], health["status"]) == ("GET", "/healthz", 200)


async def test_every_decision_is_a_transcript_event(
    clock: FakeClock, settlement: FakeSettlement
) -> None:
    async with running_provider(clock=clock, settlement=settlement) as provider:
        ask = await provider.post(signed(intent_message(clock.now)))
        await provider.post(signed(intent_message(clock.now, max_price=0.00001)))
        await provider.post(signed(accept_message(ask.json(), clock.now)))
        await provider.post(signed(intent_message(clock.now, sent_at_ms="x")))
        await provider.post({"not": "an envelope"})
        events = {e["event"]: e for e in provider.log_events()}
    assert events["pact.intent.rejected"]["code"] == "PRICE_ABOVE_MAX"
    assert events["pact.intent.rejected"]["price"] == "0.00008"
    assert events["pact.accept.forwarded"]["idempotency_key"].startswith("accept-")
    assert events["pact.accept.settled"]["settlement_id"] == "stl-intent-1"
    assert events["pact.message.invalid"]["code"] == "SCHEMA_VALIDATION_FAILED"
    assert events["pact.envelope.refused"]["code"] == "ENVELOPE_MALFORMED"
    assert all(json.dumps(e) for e in events.values())


async def test_reply_signed_with_key_from_env_secret(clock: FakeClock) -> None:
    secret = b58encode(PROVIDER.seed)
    async with running_provider(
        settings(signing_key=secret), keypair=None, clock=clock
    ) as provider:
        response = await provider.post(sign_message(intent_message(clock.now), BUYER))
    assert verify_envelope(response.json()).signer == PROVIDER.public_key_b58
