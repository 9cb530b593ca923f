from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from pact_schema import commit_hash_hex
from pact_schema.cli import EXIT_OK, EXIT_REFUSED, main
from pact_schema.envelope import sign_message
from pact_schema.keys import Keypair
from pact_schema.transcript import verify_transcript
from pact_schema_testkit import NOW, accept_envelope, ask_envelope

PROVIDER = Keypair(bytes([7] * 32))
BUYER = Keypair(bytes([9] * 32))
SETTLEMENT = Keypair(bytes([11] * 32))
PAYLOAD, NONCE = b'{"temp_c": 21.5}', b"0123456789abcdef"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _timed(kind: str, **fields: Any) -> dict[str, Any]:
    return {
        "protocol_version": "pact/1.0",
        "type": kind,
        "intent_id": "intent-1",
        "sent_at_ms": NOW,
        "expires_at_ms": NOW + 60_000,
        **fields,
    }


def _transcript(payload: bytes = PAYLOAD) -> dict[str, Any]:
    quote = ask_envelope(PROVIDER, BUYER)
    commit = _timed("COMMIT", commit_hash_hex=commit_hash_hex(_b64(PAYLOAD), _b64(NONCE)))
    reveal = _timed(
        "REVEAL",
        payload_b64=_b64(payload),
        nonce_b64=_b64(NONCE),
    )
    receipt = {
        "protocol_version": "pact/1.0",
        "type": "RECEIPT",
        "intent_id": "intent-1",
        "buyer_agent_id": BUYER.public_key_b58,
        "seller_agent_id": PROVIDER.public_key_b58,
        "agreed_price": 0.00008,
        "fulfilled": True,
        "timestamp_ms": NOW + 5,
    }
    return {
        "intent_id": "intent-1",
        "settlement_public_key_b58": SETTLEMENT.public_key_b58,
        "envelopes": [
            {"kind": "quote", "envelope": quote},
            {"kind": "accept", "envelope": accept_envelope(BUYER, quote)},
            {"kind": "commit", "envelope": sign_message(commit, PROVIDER)},
            {"kind": "reveal", "envelope": sign_message(reveal, PROVIDER)},
            {"kind": "receipt", "envelope": sign_message(receipt, SETTLEMENT)},
        ],
    }


def test_a_faithful_transcript_verifies_end_to_end() -> None:
    check = verify_transcript(_transcript())
    assert check.ok, check.lines
    assert any("REVEAL matches the COMMIT" in text for _, text in check.lines)


def test_a_reveal_that_does_not_match_the_commit_fails() -> None:
    check = verify_transcript(_transcript(payload=b"something else"))
    assert not check.ok


def test_a_receipt_by_another_key_than_the_pinned_one_fails() -> None:
    other = Keypair.generate().public_key_b58
    assert not verify_transcript(_transcript(), settlement_key=other).ok


def test_a_tampered_envelope_fails_with_its_reason() -> None:
    doc = _transcript()
    doc["envelopes"][1]["envelope"]["message"]["agreed_price"] = 0.00001
    check = verify_transcript(doc)
    assert not check.ok
    assert any("hash_mismatch" in text for good, text in check.lines if not good)


def test_cli_verify_transcript_exit_codes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps(_transcript()))
    assert main(["verify-transcript", str(good)]) == EXIT_OK
    assert capsys.readouterr().out.strip().endswith("transcript verifies")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(_transcript(payload=b"x")))
    assert main(["verify-transcript", str(bad)]) == EXIT_REFUSED
