from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from fixtures.schema import NOW, accept_envelope, ask_envelope
from pact_schema import commit_hash_hex
from pact_schema.cli import EXIT_OK, EXIT_REFUSED, main
from pact_schema.envelope import sign_message
from pact_schema.keys import Keypair
from pact_schema.transcript import verify_transcript

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
    assert any("#3 reveal matches #2 commit" in text for _, text in check.lines)
    assert any("protocol order" in text for _, text in check.lines)


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


def _failures(document: Any) -> list[str]:
    check = verify_transcript(document)
    assert not check.ok
    return [text for good, text in check.lines if not good]


def _without(document: dict[str, Any], kind: str) -> dict[str, Any]:
    envelopes = [e for e in document["envelopes"] if e["kind"] != kind]
    return {**document, "envelopes": envelopes}


def test_a_fulfilled_receipt_without_its_reveal_names_the_missing_reveal() -> None:
    failures = _failures(_without(_transcript(), "reveal"))
    assert failures == ["missing: the reveal that #3 receipt (fulfilled) needs"]


def test_a_fulfilled_receipt_without_its_commit_names_both_gaps() -> None:
    failures = _failures(_without(_transcript(), "commit"))
    assert "#2 reveal: a REVEAL without the COMMIT it must match" in failures
    assert "missing: the commit that #3 receipt (fulfilled) needs" in failures


@pytest.mark.parametrize(
    ("kind", "named"),
    [
        ("quote", "missing: the quote (the provider-signed ASK the ACCEPT took)"),
        ("accept", "missing: the accept (the buyer-signed ACCEPT)"),
    ],
)
def test_a_missing_quote_or_accept_is_named(kind: str, named: str) -> None:
    assert named in _failures(_without(_transcript(), kind))


def test_reordered_envelopes_name_each_misplaced_piece() -> None:
    document = _transcript()
    quote, accept, commit, reveal, receipt = document["envelopes"]
    document["envelopes"] = [quote, accept, reveal, commit, receipt]
    assert _failures(document) == [
        "#3 commit is out of order: it comes after #2 reveal "
        "(protocol order: quote, accept, commit, abort, reveal, challenge, checkpoint, stop, "
        "receipt)"
    ]
    document["envelopes"] = [receipt, quote, accept, commit, reveal]
    failures = _failures(document)
    assert [f.split(" is out of order")[0] for f in failures] == [
        "#1 quote",
        "#2 accept",
        "#3 commit",
        "#4 reveal",
    ]


def test_a_bare_list_of_envelopes_is_checked_by_message_type_and_signer() -> None:
    envelopes = [e["envelope"] for e in _transcript()["envelopes"]]
    assert verify_transcript(envelopes).ok
    quote, accept, commit, reveal, receipt = envelopes
    failures = _failures([quote, accept, reveal, commit, receipt])
    assert any(f.startswith("#3 commit is out of order") for f in failures)
    assert _failures([quote, accept, commit, receipt]) == [
        "missing: the reveal that #3 receipt (fulfilled) needs"
    ]


def test_a_kind_that_holds_another_message_type_is_named() -> None:
    document = _transcript()
    document["envelopes"][2]["kind"] = "reveal"
    failures = _failures(document)
    assert "#2 reveal: holds a COMMIT, a reveal is a REVEAL" in failures


def test_a_commit_signed_by_the_buyer_is_not_the_sellers_proof() -> None:
    document = _transcript()
    message = document["envelopes"][2]["envelope"]["message"]
    document["envelopes"][2]["envelope"] = sign_message(message, BUYER)
    failures = _failures(document)
    assert any(f.startswith("#2 commit: signed by " + BUYER.public_key_b58) for f in failures)


def test_a_second_receipt_and_a_receipt_for_another_buyer_are_named() -> None:
    document = _transcript()
    document["envelopes"].append(document["envelopes"][-1])
    assert "#5 receipt: a second receipt (a transcript has one)" in _failures(document)
    other = Keypair.generate()
    document = _transcript()
    receipt = dict(document["envelopes"][-1]["envelope"]["message"])
    receipt["buyer_agent_id"] = other.public_key_b58
    document["envelopes"][-1]["envelope"] = sign_message(receipt, SETTLEMENT)
    assert any(f.startswith("#4 receipt: buyer_agent_id") for f in _failures(document))


def test_a_seller_abort_before_any_reveal_is_a_complete_refund() -> None:
    document = _transcript()
    quote, accept, _commit, _reveal, _receipt = document["envelopes"]
    abort = _timed("REJECT", reason="handler failed", code="FULFILMENT_FAILED")
    refund = dict(_receipt["envelope"]["message"], fulfilled=False)
    refund["failure_code"] = "FULFILMENT_FAILED"
    document["envelopes"] = [
        quote,
        accept,
        {"kind": "abort", "envelope": sign_message(abort, PROVIDER)},
        {"kind": "receipt", "envelope": sign_message(refund, SETTLEMENT)},
    ]
    document["settlement"] = {"state": "refunded"}
    check = verify_transcript(document)
    assert check.ok, check.lines
    # ... but an abort beside a REVEAL, or a fulfilled RECEIPT, is not a story that happened.
    document["envelopes"].insert(3, _transcript()["envelopes"][3])
    assert "#2 abort: the seller aborted, yet a REVEAL is recorded" in _failures(document)


def test_a_terminal_settlement_needs_its_receipt() -> None:
    document = {**_without(_transcript(), "receipt"), "settlement": {"state": "released"}}
    assert _failures(document) == ["missing: the receipt (the settlement is released)"]
    live = {**_without(_transcript(), "receipt"), "settlement": {"state": "delivered"}}
    assert verify_transcript(live).ok


def test_an_omitted_reveal_is_checked_by_its_recorded_hash() -> None:
    document = _without(_transcript(), "reveal")
    commit_hash = document["envelopes"][2]["envelope"]["message"]["commit_hash_hex"]
    document["omitted"] = [
        {"kind": "reveal", "detail": {"reveal_hash_hex": commit_hash, "envelope_bytes": 90_000}}
    ]
    check = verify_transcript(document)
    assert check.ok, check.lines
    document["omitted"][0]["detail"]["reveal_hash_hex"] = "00" * 32
    assert any("differs from #2 commit" in f for f in _failures(document))


def test_cli_names_the_missing_reveal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "t.json"
    path.write_text(json.dumps(_without(_transcript(), "reveal")))
    assert main(["verify-transcript", str(path)]) == EXIT_REFUSED
    out = capsys.readouterr().out
    assert "FAIL missing: the reveal that #3 receipt (fulfilled) needs" in out
    assert out.strip().endswith("transcript does NOT verify")
