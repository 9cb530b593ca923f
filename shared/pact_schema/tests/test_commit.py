"""The hash_reveal commitment is the reference SDK's: sha256 of the base64 *texts*."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from fixtures.schema import NOW
from hypothesis import given
from hypothesis import strategies as st
from pact_schema import Keypair, commit_hash_hex, parse_message, reveal_matches, sign_message
from pact_schema.envelope import verify_envelope

SELLER = Keypair(bytes(range(0x21, 0x21 + 32)))


def test_commitment_equals_the_javascript_models(vectors: dict[str, Any]) -> None:
    for case in vectors["commit_reveal"]:
        assert commit_hash_hex(case["payload_b64"], case["nonce_b64"]) == case["commit_hash_hex"]


def test_commitment_is_not_the_hash_of_the_decoded_bytes(vectors: dict[str, Any]) -> None:
    case = next(c for c in vectors["commit_reveal"] if c["name"] == "reference_rule")
    assert case["commit_hash_hex"] != case["decoded_bytes_sha256_hex"]
    assert not reveal_matches(
        case["decoded_bytes_sha256_hex"], case["payload_b64"], case["nonce_b64"]
    )


def test_js_commit_and_reveal_envelopes_verify_and_prove_each_other(
    vectors: dict[str, Any],
) -> None:
    by_name = {e["name"]: e["envelope"] for e in vectors["envelopes"]}
    commit = parse_message(verify_envelope(by_name["commit"]).message_raw)
    reveal = parse_message(verify_envelope(by_name["reveal"]).message_raw)
    assert commit.type == "COMMIT"
    assert reveal.type == "REVEAL"
    assert reveal_matches(commit.commit_hash_hex, reveal.payload_b64, reveal.nonce_b64)


def test_hex_case_is_ignored_and_other_reveals_fail(vectors: dict[str, Any]) -> None:
    case = vectors["commit_reveal"][0]
    upper = case["commit_hash_hex"].upper()
    assert reveal_matches(upper, case["payload_b64"], case["nonce_b64"])
    assert not reveal_matches(case["commit_hash_hex"], case["payload_b64"] + "A", case["nonce_b64"])
    assert not reveal_matches(case["commit_hash_hex"], case["nonce_b64"], case["payload_b64"])
    assert not reveal_matches("not hex at all", case["payload_b64"], case["nonce_b64"])


@given(payload=st.binary(max_size=256), nonce=st.binary(min_size=1, max_size=32))
def test_commitment_is_sha256_of_the_concatenated_base64_text(payload: bytes, nonce: bytes) -> None:
    payload_b64 = base64.b64encode(payload).decode()
    nonce_b64 = base64.b64encode(nonce).decode()
    expected = hashlib.sha256((payload_b64 + nonce_b64).encode()).hexdigest()
    assert commit_hash_hex(payload_b64, nonce_b64) == expected
    assert reveal_matches(expected, payload_b64, nonce_b64)


def test_our_commit_and_reveal_verify_in_javascript(js_verify: Any) -> None:
    payload_b64 = base64.b64encode('{"temp_c": 21.5, "city": "Zürich"}'.encode()).decode()
    nonce_b64 = base64.b64encode(bytes(range(16))).decode()
    timed = {"protocol_version": "pact/1.0", "intent_id": "intent-ours-1", "sent_at_ms": NOW}
    commit = sign_message(
        {
            **timed,
            "type": "COMMIT",
            "commit_hash_hex": commit_hash_hex(payload_b64, nonce_b64),
            "expires_at_ms": NOW + 60_000,
        },
        SELLER,
    )
    reveal = sign_message(
        {
            **timed,
            "type": "REVEAL",
            "payload_b64": payload_b64,
            "nonce_b64": nonce_b64,
            "expires_at_ms": NOW + 60_000,
        },
        SELLER,
    )
    forged = sign_message({**reveal["message"], "nonce_b64": "AAAA"}, SELLER)
    results = js_verify([commit, reveal, forged])
    assert [r["ok"] for r in results] == [True, True, True]
    assert results[1]["reveal_matches_commit"] is True
    assert results[2]["reveal_matches_commit"] is False
