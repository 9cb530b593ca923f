"""Issue 12, wire hygiene at the provider: every malformed identifier, key, text or amount gets
a signed REJECT (or, for an envelope that does not verify, a 400 problem) — never a 500, never
an echo of what was refused, and never a long decode on the event loop."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from fixtures.provider import (
    BUYER,
    NOW,
    FakeClock,
    FakeSettlement,
    Scripted,
    accept_message,
    bid_message,
    body,
    intent_message,
    reject_message,
    reply_of,
    running_provider,
    settings,
    signed,
)
from pact_schema import keys, parse_message
from pact_schema.keys import MAX_SIGNATURE_CHARS

BAD_IDS = ["", "a/b", "..", "../etc", "a b", "a\n", "a\x00b", "ünï", "a\ud800", "x" * 129]


def _commit(now: int, **overrides: Any) -> dict[str, Any]:
    return {
        "protocol_version": "pact/1.0",
        "type": "COMMIT",
        "intent_id": "intent-1",
        "commit_hash_hex": "ab" * 32,
        "sent_at_ms": now,
        "expires_at_ms": now + 1,
        **overrides,
    }


def _templates(ask: dict[str, Any], now: int) -> dict[str, dict[str, Any]]:
    return {
        "INTENT": intent_message(now),
        "BID": bid_message(ask, 0.00007, now),
        "ACCEPT": accept_message(ask, now),
        "REJECT": reject_message(now),
        "COMMIT": _commit(now),
        "ASK": {**ask["message"]},
        "REVEAL": {
            **_commit(now),
            "type": "REVEAL",
            "payload_b64": "eA==",
            "nonce_b64": "eA==",
            "commit_hash_hex": ...,
        },
    }


@pytest.mark.parametrize("kind", ["INTENT", "BID", "ACCEPT", "REJECT", "COMMIT", "ASK", "REVEAL"])
@pytest.mark.parametrize("bad_id", BAD_IDS, ids=repr)
async def test_every_message_type_with_a_bad_intent_id_gets_a_signed_schema_reject(
    kind: str, bad_id: str
) -> None:
    clock = FakeClock(NOW)
    settlement = FakeSettlement()
    async with running_provider(clock=clock, settlement=settlement) as provider:
        ask = await provider.post(signed(intent_message(clock.now)))
        message = _templates(ask.json(), clock.now)[kind]
        message = {k: v for k, v in message.items() if v is not ...}
        response = await provider.post(signed({**message, "intent_id": bad_id}))
    reply = reply_of(response)
    assert reply["type"] == "REJECT"
    assert reply["code"] == "SCHEMA_VALIDATION_FAILED"
    assert reply["intent_id"] == "unknown"  # never echoed
    assert "intent_id" in reply["reason"]
    assert settlement.requests == []  # nothing was forwarded
    parse_message(reply)  # our own reply keeps the contract


async def test_a_key_with_a_trailing_newline_is_not_the_key() -> None:
    clock = FakeClock(NOW)
    async with running_provider(clock=clock) as provider:
        envelope = signed(intent_message(clock.now))
        response = await provider.post(
            {**envelope, "signer_public_key_b58": BUYER.public_key_b58 + "\n"}
        )
    assert response.status_code == 400
    assert response.json()["code"] == "ENVELOPE_BAD_KEY"


@pytest.mark.parametrize(
    ("field", "code"),
    [("signer_public_key_b58", "ENVELOPE_BAD_KEY"), ("signature_b58", "ENVELOPE_BAD_SIGNATURE")],
)
async def test_a_megabyte_key_or_signature_is_refused_without_being_decoded(
    monkeypatch: pytest.MonkeyPatch, field: str, code: str
) -> None:
    decoded: list[int] = []
    real = keys.b58decode

    def spy(text: str, *, max_bytes: int) -> bytes:
        decoded.append(len(text))
        return real(text, max_bytes=max_bytes)

    monkeypatch.setattr(keys, "b58decode", spy)
    keys._public_key_bytes.cache_clear()
    clock = FakeClock(NOW)
    big = settings(max_body_bytes=2 * 1024 * 1024)
    async with running_provider(big, clock=clock) as provider:
        envelope = signed(intent_message(clock.now))
        huge = {**envelope, field: "z" * 1_000_000}
        # The refusal and a health check run concurrently; both are answered.
        refused, health = await asyncio.gather(provider.post(huge), provider.http.get("/healthz"))
        assert reply_of(await provider.post(envelope))["type"] == "ASK"
    assert refused.status_code == 400
    assert refused.json()["code"] == code
    assert health.status_code == 200
    assert decoded, "the good envelope went through the decoder"
    assert max(decoded) <= MAX_SIGNATURE_CHARS  # the megabyte never reached it


@pytest.mark.parametrize(
    "scope",
    ["NYC\x00", "x\ud800", {"city": "a\udfff"}, {"k\x00": 1}, {"deep": ["ok", ["\x00"]]}],
    ids=repr,
)
async def test_nul_or_lone_surrogates_in_the_scope_get_a_signed_reject(scope: Any) -> None:
    clock = FakeClock(NOW)
    async with running_provider(clock=clock) as provider:
        response = await provider.post(signed(intent_message(clock.now, scope=scope)))
    reply = reply_of(response)
    assert (reply["type"], reply["code"]) == ("REJECT", "SCHEMA_VALIDATION_FAILED")
    assert reply["intent_id"] == "intent-1"


async def test_a_reject_with_a_lone_surrogate_reason_is_not_echoed() -> None:
    clock = FakeClock(NOW)
    async with running_provider(clock=clock) as provider:
        response = await provider.post(signed(reject_message(clock.now, reason="no \ud83d")))
    reply = reply_of(response)
    assert reply["code"] == "SCHEMA_VALIDATION_FAILED"
    assert "\ud83d" not in json.dumps(reply, ensure_ascii=False, default=str)


@pytest.mark.parametrize(
    "number_text", ["1e308", "-1e308", "1e20", "1e-400", "-0", "-0.0", "123456789012345678901234"]
)
async def test_extreme_bid_prices_get_a_signed_reject(number_text: str) -> None:
    clock = FakeClock(NOW)
    async with running_provider(clock=clock) as provider:
        ask = await provider.post(signed(intent_message(clock.now)))
        # The buyer signs the message as a JSON parser reads the number (1e-400 is 0).
        value = json.loads(number_text)
        envelope = signed(bid_message(ask.json(), value, clock.now))
        signed_text = f'"price": {json.dumps(value)},'.encode()
        assert body(envelope).count(signed_text) == 1
        text = body(envelope).replace(signed_text, f'"price": {number_text},'.encode())
        response = await provider.http.post(
            "/pact", content=text, headers={"content-type": "application/json"}
        )
    reply = reply_of(response)
    assert (reply["type"], reply["code"]) == ("REJECT", "SCHEMA_VALIDATION_FAILED")


async def test_an_infinite_number_is_not_an_envelope() -> None:
    clock = FakeClock(NOW)
    async with running_provider(clock=clock) as provider:
        text = body(signed(intent_message(clock.now))).replace(
            b'"max_price": 0.0002', b'"max_price": 1e400'
        )
        response = await provider.http.post(
            "/pact", content=text, headers={"content-type": "application/json"}
        )
    assert response.status_code == 400
    assert response.json()["code"] == "ENVELOPE_MALFORMED"


async def test_a_rail_that_cannot_settle_the_price_exactly_is_a_signed_reject() -> None:
    clock = FakeClock(NOW)
    settlement = FakeSettlement().then(
        Scripted(
            422,
            {
                "code": "AMOUNT_NOT_IN_RAIL_UNITS",
                "detail": "cannot charge 0.000096 USD on stripe exactly",
            },
        )
    )
    async with running_provider(clock=clock, settlement=settlement) as provider:
        ask = await provider.post(signed(intent_message(clock.now)))
        reply = await provider.send(accept_message(ask.json(), clock.now, rail="stripe"))
    assert (reply["type"], reply["code"]) == ("REJECT", "AMOUNT_NOT_IN_RAIL_UNITS")
    assert "0.000096 USD" in reply["reason"]


async def test_reject_reasons_write_amounts_in_plain_decimal() -> None:
    clock = FakeClock(NOW)
    async with running_provider(clock=clock) as provider:
        reply = await provider.send(intent_message(clock.now, max_price=1e-7))
    assert reply["code"] == "PRICE_ABOVE_MAX"
    assert reply["reason"] == "the price 0.00008 exceeds max_price 0.0000001"
