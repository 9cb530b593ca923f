"""Buyers written against the reference SDK's envelope format, signed by an independent
JavaScript model (never by our serializer): unicode scopes and JS-formatted numbers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from fixtures.provider import (
    PROVIDER,
    FakeClock,
    FakeSettlement,
    reply_of,
    running_provider,
    settings,
)
from pact_schema import Keypair, verify_envelope

HERE = Path(__file__).resolve().parent.parent / "vectors"
SCHEMA_VECTORS = Path(__file__).resolve().parents[4] / "shared/pact_schema/tests/vectors"
JS_BODIES = json.loads((HERE / "js_bodies.json").read_text(encoding="utf-8"))
SCHEMA = json.loads((SCHEMA_VECTORS / "vectors.json").read_text(encoding="utf-8"))


def _schema_envelope(name: str) -> dict[str, Any]:
    return next(e["envelope"] for e in SCHEMA["envelopes"] if e["name"] == name)


def _post_text(text: str) -> dict[str, Any]:
    return {"content": text.encode(), "headers": {"content-type": "application/json"}}


@pytest.fixture(scope="module")
def js_sign() -> Any:
    """Sign message *text* with the JavaScript model; CI requires node (as pact_schema's)."""
    node = shutil.which("node")
    if node is None or not (SCHEMA_VECTORS / "node_modules").is_dir():
        if os.environ.get("CI"):
            pytest.fail("node and `npm ci` in shared/pact_schema/tests/vectors are required in CI")
        pytest.skip("node or the vectors' node_modules missing (run `make install`)")

    def sign(requests: list[dict[str, Any]]) -> list[str]:
        out = subprocess.run(
            [node, str(HERE / "js_sign.mjs")],
            input=json.dumps(requests),
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        )
        bodies: list[str] = json.loads(out.stdout)
        return bodies

    return sign


@pytest.mark.parametrize("case", JS_BODIES["bodies"], ids=lambda c: c["name"])
async def test_js_signed_intents_with_js_numbers_and_unicode_get_verifiable_answers(
    case: dict[str, Any],
) -> None:
    clock = FakeClock(JS_BODIES["now_ms"])
    async with running_provider(clock=clock) as provider:
        response = await provider.http.post("/pact", **_post_text(case["body_text"]))
    reply = reply_of(response)
    sent = json.loads(case["body_text"])["message"]
    assert reply["type"] == case["expect"]["type"]
    assert reply["intent_id"] == sent["intent_id"]
    if reply["type"] == "ASK":
        assert reply["price"] == case["expect"]["price"]
        assert (
            reply["buyer_public_key_b58"] == json.loads(case["body_text"])["signer_public_key_b58"]
        )
    else:
        assert reply["code"] == case["expect"]["code"]


async def test_reference_vector_intent_with_unicode_scope_gets_an_ask() -> None:
    envelope = _schema_envelope("intent_string_scope")
    clock = FakeClock(envelope["message"]["sent_at_ms"] + 100)
    async with running_provider(clock=clock) as provider:
        reply = reply_of(await provider.post(envelope))
    assert reply["type"] == "ASK"
    assert reply["intent_id"] == "intent-7f3c2a9e-4b1d-4c3e-9f00-6a5b4c3d2e1f"
    assert reply["price"] == 0.00008  # latency 50 and freshness 10 are not "tight"


async def test_reference_vector_intent_with_1e_minus_7_budget_is_refused() -> None:
    envelope = _schema_envelope("intent_object_scope")
    clock = FakeClock(envelope["message"]["sent_at_ms"] + 100)
    async with running_provider(clock=clock) as provider:
        reply = reply_of(await provider.post(envelope))
    assert reply["code"] == "PRICE_ABOVE_MAX"


async def test_reference_vector_accept_carrying_a_js_signed_unbound_ask_is_refused() -> None:
    """The nested JS-signed quote verifies, but carries no buyer binding: refused, not 400."""
    envelope = _schema_envelope("accept_with_nested_quote")
    seller = next(s for s in SCHEMA["signers"] if s["name"] == "seller")
    clock = FakeClock(envelope["message"]["sent_at_ms"] + 100)
    seller_key = Keypair(bytes.fromhex(seller["seed_hex"]))
    async with running_provider(keypair=seller_key, clock=clock) as provider:
        reply = reply_of(await provider.post(envelope), provider=seller_key)
    assert reply["code"] == "QUOTE_INVALID"
    assert "binding" in reply["reason"]


@pytest.mark.parametrize(
    "vector", [v for v in SCHEMA["tampered"] if not v["valid"]], ids=lambda v: v["name"]
)
async def test_reference_tampered_vectors_are_400_problems(vector: dict[str, Any]) -> None:
    expected = {
        "hash_mismatch": {"ENVELOPE_HASH_MISMATCH"},
        "bad_signature": {"ENVELOPE_BAD_SIGNATURE"},
        "unsupported_envelope_version": {"ENVELOPE_BAD_VERSION"},
        "malformed_envelope": {"ENVELOPE_MALFORMED", "ENVELOPE_BAD_HASH"},
        "bad_public_key": {"ENVELOPE_BAD_KEY"},
        "bad_signature_encoding": {"ENVELOPE_BAD_KEY", "ENVELOPE_BAD_SIGNATURE"},
    }[vector["reason"]]
    async with running_provider() as provider:
        response = await provider.post(vector["envelope"])
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] in expected


@pytest.mark.parametrize(
    "vector", [v for v in SCHEMA["tampered"] if v["valid"]], ids=lambda v: v["name"]
)
async def test_reference_changes_outside_the_hash_still_verify(vector: dict[str, Any]) -> None:
    clock = FakeClock(vector["envelope"]["message"]["sent_at_ms"] + 100)
    async with running_provider(clock=clock) as provider:
        reply = reply_of(await provider.post(vector["envelope"]))
    assert reply["intent_id"] == vector["envelope"]["message"]["intent_id"]


@pytest.mark.node
def test_committed_js_bodies_match_the_javascript_model(js_sign: Any) -> None:
    subprocess.run(["node", str(HERE / "generate.mjs")], check=True, timeout=60, cwd=HERE)
    assert json.loads((HERE / "js_bodies.json").read_text(encoding="utf-8")) == JS_BODIES


@pytest.mark.node
async def test_js_buyer_negotiates_and_accepts_end_to_end(js_sign: Any) -> None:
    """INTENT and ACCEPT both signed in JavaScript; the ACCEPT carries our ASK verbatim and
    writes agreed_price as JavaScript would print it."""
    case = JS_BODIES["bodies"][0]
    clock = FakeClock(JS_BODIES["now_ms"])
    settlement = FakeSettlement()
    async with running_provider(settings(), clock=clock, settlement=settlement) as provider:
        ask_response = await provider.http.post("/pact", **_post_text(case["body_text"]))
        ask = reply_of(ask_response)
        accept_text = (
            '{"protocol_version":"pact/1.0","type":"ACCEPT","intent_id":'
            + json.dumps(ask["intent_id"])
            + ',"agreed_price":8e-5,"settlement_mode":"hash_reveal","proof_type":"hash_reveal",'
            + '"challenge_window_ms":5000,"delivery_deadline_ms":1800000060000,'
            + '"sent_at_ms":1800000000100,"expires_at_ms":1800000010000,"quote":'
            + ask_response.text
            + "}"
        )
        (accept_body,) = js_sign(
            [
                {
                    "seed_hex": JS_BODIES["buyer_seed_hex"],
                    "message_text": accept_text,
                    "signed_at_ms": 1800000000100,
                }
            ]
        )
        clock.advance(150)
        ack = reply_of(await provider.http.post("/pact", **_post_text(accept_body)))
    assert ack["type"] == "ACCEPT"
    assert ack["settlement"]["state"] == "locked"
    forwarded = settlement.requests[0].body["accept"]
    assert verify_envelope(forwarded).signer == json.loads(accept_body)["signer_public_key_b58"]
    assert PROVIDER.public_key_b58 == forwarded["message"]["quote"]["signer_public_key_b58"]
