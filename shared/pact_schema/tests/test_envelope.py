from __future__ import annotations

import copy
from typing import Any

import pytest
from pact_schema.envelope import EnvelopeError, EnvelopeFailure, sign_message, verify_envelope
from pact_schema.keys import Keypair
from pact_schema.messages import Intent, parse_message

REASON_TO_FAILURE = {
    "hash_mismatch": EnvelopeFailure.HASH_MISMATCH,
    "bad_signature": EnvelopeFailure.BAD_SIGNATURE,
    "unsupported_envelope_version": EnvelopeFailure.BAD_VERSION,
}


def _keypair(vectors: dict[str, Any], name: str) -> Keypair:
    signer = next(s for s in vectors["signers"] if s["name"] == name)
    return Keypair(bytes.fromhex(signer["seed_hex"]))


def test_seeds_derive_the_same_public_keys_as_tweetnacl(vectors: dict[str, Any]) -> None:
    for signer in vectors["signers"]:
        assert Keypair(bytes.fromhex(signer["seed_hex"])).public_key_b58 == signer["public_key_b58"]


def test_js_signed_envelopes_verify_here(vectors: dict[str, Any]) -> None:
    for case in vectors["envelopes"]:
        verified = verify_envelope(case["envelope"])
        assert verified.signer == case["public_key_b58"], case["name"]
        parse_message(verified.message_raw)  # and they are valid pact/1.0 messages


def test_we_produce_the_same_signature_as_the_js_sdk(vectors: dict[str, Any]) -> None:
    # Ed25519 is deterministic: same key + same message → the same envelope bytes.
    for case in vectors["envelopes"]:
        theirs = case["envelope"]
        ours = sign_message(
            theirs["message"],
            _keypair(vectors, case["signer"]),
            signed_at_ms=theirs["signed_at_ms"],
        )
        assert ours["message_hash_hex"] == theirs["message_hash_hex"], case["name"]
        assert ours["signature_b58"] == theirs["signature_b58"], case["name"]


def test_tampered_envelopes_fail_for_the_reason_js_gives(vectors: dict[str, Any]) -> None:
    for case in vectors["tampered"]:
        if case["valid"]:
            verify_envelope(case["envelope"])
            continue
        with pytest.raises(EnvelopeError) as caught:
            verify_envelope(case["envelope"])
        expected = REASON_TO_FAILURE.get(case["reason"])
        if expected is not None:
            assert caught.value.failure == expected, case["name"]


def test_our_envelopes_verify_in_javascript(vectors: dict[str, Any], js_verify: Any) -> None:
    buyer = _keypair(vectors, "buyer")
    tricky_messages: list[dict[str, Any]] = [
        case["envelope"]["message"] for case in vectors["envelopes"]
    ]
    tricky_messages.append(
        {
            "protocol_version": "pact/1.0",
            "type": "REJECT",
            "intent_id": "ünïcode-\U0001f600-\U0001d11e",
            "reason": 'ctl \x00\x01\x1f\x7f \u2028 "q" \\ done',
            "sent_at_ms": 1,
            "expires_at_ms": 2,
            "numbers": [5.0, 0.00008, 1e-7, 1e21, 1e20, 1.5e300, 5e-324, -0.0, 2**60],
            "keys": {"\uff61": 1, "\U0001f600": 2, "10": 3, "9": 4},
        }
    )
    ours = [sign_message(m, buyer) for m in tricky_messages]
    results = js_verify(ours)
    assert [r["ok"] for r in results] == [True] * len(ours), results
    broken = copy.deepcopy(ours[-1])
    broken["message"]["numbers"][0] = 6
    assert js_verify([broken])[0]["reason"] == "hash_mismatch"


def test_verification_reasons_are_precise() -> None:
    key = Keypair.generate()
    intent = Intent.model_validate(
        {
            "protocol_version": "pact/1.0",
            "type": "INTENT",
            "intent_id": "i-1",
            "intent": "weather.data",
            "scope": "NYC",
            "constraints": {"latency_ms": 10, "freshness_sec": 5},
            "max_price": 0.0002,
            "settlement_mode": "hash_reveal",
            "sent_at_ms": 1,
            "expires_at_ms": 2,
        }
    )
    good = sign_message(intent, key)

    def failure_of(envelope: Any) -> EnvelopeFailure:
        with pytest.raises(EnvelopeError) as caught:
            verify_envelope(envelope)
        return caught.value.failure

    assert failure_of("not an object") == EnvelopeFailure.MALFORMED
    assert failure_of({**good, "message": "x"}) == EnvelopeFailure.MALFORMED
    assert failure_of({k: v for k, v in good.items() if k != "signature_b58"}) == (
        EnvelopeFailure.MALFORMED
    )
    assert failure_of({**good, "envelope_version": "pact-envelope/2.0"}) == (
        EnvelopeFailure.BAD_VERSION
    )
    assert failure_of({**good, "message_hash_hex": "zz"}) == EnvelopeFailure.BAD_HASH
    assert failure_of({**good, "message": {**good["message"], "max_price": 1}}) == (
        EnvelopeFailure.HASH_MISMATCH
    )
    assert failure_of({**good, "signer_public_key_b58": "0OIl"}) == EnvelopeFailure.BAD_KEY
    assert failure_of({**good, "signer_public_key_b58": "abc"}) == EnvelopeFailure.BAD_KEY
    other = Keypair.generate().public_key_b58
    assert failure_of({**good, "signer_public_key_b58": other}) == EnvelopeFailure.BAD_SIGNATURE
    assert verify_envelope({**good, "message_hash_hex": good["message_hash_hex"].upper()})
