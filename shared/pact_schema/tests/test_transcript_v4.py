"""pact-transcript/4.0: the reference's published transcripts (copies made by an independent
JavaScript model) verify and their tampered copies do not; our exports validate against the
v4 JSON Schema and replay in that model."""

from __future__ import annotations

import base64
import copy
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from fixtures.schema import NOW, accept_envelope, ask_envelope
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pact_schema.cli import main
from pact_schema.commit import commit_hash_hex
from pact_schema.envelope import sign_message
from pact_schema.keys import Keypair
from pact_schema.taxonomy import v4_failure
from pact_schema.transcript_v4 import (
    export_v4,
    final_hash,
    genesis_hash,
    round_hash,
    transcript_id,
    verify_v4,
)

HERE = Path(__file__).parent
FIXTURES = sorted((HERE / "vectors" / "v4").glob("*.json"))
SCHEMA = json.loads((HERE / "v4" / "pact_transcript_v4.schema.json").read_text(encoding="utf-8"))
PROVIDER = Keypair(bytes([7] * 32))
BUYER = Keypair(bytes([9] * 32))
SETTLEMENT = Keypair(bytes([11] * 32))


def _fixture(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _schema_errors(transcript: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft202012Validator(SCHEMA)
    return [error.message for error in validator.iter_errors(transcript)]


# ------------------------------------------------------------- the reference's transcripts


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_the_published_transcripts_verify(path: Path) -> None:
    check = verify_v4(_fixture(path))
    assert check.ok, check.lines


def _retamper(transcript: dict[str, Any]) -> dict[str, Any]:
    """Recompute every hash after an edit (a forger who knows the rules): only a signature
    can still tell."""
    previous = genesis_hash(transcript["intent_id"], transcript["created_at_ms"])
    for round_ in transcript["rounds"]:
        round_["previous_round_hash"] = previous
        round_["round_hash"] = previous = round_hash(round_)
    transcript["final_hash"] = final_hash(transcript)
    return transcript


def _price_lowered(t: dict[str, Any]) -> None:
    t["rounds"][-1]["content_summary"]["price"] = 0.00001


def _round_dropped(t: dict[str, Any]) -> None:
    del t["rounds"][1]


def _time_reversed(t: dict[str, Any]) -> None:
    t["rounds"][-1]["timestamp_ms"] = t["rounds"][0]["timestamp_ms"] - 1


def _other_intent(t: dict[str, Any]) -> None:
    t["intent_id"] = "intent-other"


def _final_hash_edited(t: dict[str, Any]) -> None:
    t["final_hash"] = "0" * 64


def _signature_swapped(t: dict[str, Any]) -> None:
    t["rounds"][0]["signature"]["signature_b58"] = t["rounds"][1]["signature"]["signature_b58"]


def _signer_claimed(t: dict[str, Any]) -> None:
    t["rounds"][1]["public_key_b58"] = t["rounds"][0]["public_key_b58"]


def _envelope_hash_rewritten(t: dict[str, Any]) -> None:
    t["rounds"][0]["envelope_hash"] = t["rounds"][1]["envelope_hash"]


TAMPERS: dict[str, Callable[[dict[str, Any]], None]] = {
    "price_lowered": _price_lowered,
    "round_dropped": _round_dropped,
    "time_reversed": _time_reversed,
    "other_intent": _other_intent,
    "final_hash_edited": _final_hash_edited,
    "signature_swapped": _signature_swapped,
    "signer_claimed": _signer_claimed,
    "envelope_hash_rewritten": _envelope_hash_rewritten,
}
#: Tampers a forger can cover by recomputing the hashes; the signatures still catch these.
RESEALABLE = ("signature_swapped", "signer_claimed", "envelope_hash_rewritten")


def _tampered() -> list[tuple[str, str, dict[str, Any]]]:
    cases = []
    for path in FIXTURES:
        for name, tamper in TAMPERS.items():
            transcript = copy.deepcopy(_fixture(path))
            tamper(transcript)
            cases.append((path.stem, name, transcript))
            if name in RESEALABLE:
                cases.append((path.stem, f"{name}_resealed", _retamper(copy.deepcopy(transcript))))
    return cases


TAMPERED = _tampered()


@pytest.mark.parametrize(("fixture", "tamper", "transcript"), TAMPERED, ids=lambda v: str(v)[:40])
def test_a_tampered_published_transcript_does_not_verify(
    fixture: str, tamper: str, transcript: dict[str, Any]
) -> None:
    check = verify_v4(transcript)
    assert not check.ok, (fixture, tamper)


@pytest.mark.node
def test_the_javascript_replayer_agrees_on_every_published_and_tampered_copy(
    js_replay_v4: Any,
) -> None:
    published = [_fixture(p) for p in FIXTURES]
    tampered = [t for _, _, t in TAMPERED]
    results = js_replay_v4(published + tampered)
    assert [r["ok"] for r in results] == [True] * len(published) + [False] * len(tampered)
    ours = [verify_v4(t).ok for t in published + tampered]
    assert ours == [r["ok"] for r in results]


@pytest.mark.node
def test_the_committed_fixtures_are_what_the_javascript_model_generates(tmp_path: Path) -> None:
    subprocess.run(
        ["node", str(HERE / "vectors" / "transcript_v4.mjs"), "generate", str(tmp_path)],
        check=True,
        timeout=60,
    )
    for path in FIXTURES:
        assert json.loads((tmp_path / path.name).read_text()) == _fixture(path), path.name


def test_the_transcript_id_and_genesis_follow_the_reference_rules() -> None:
    for path in FIXTURES:
        t = _fixture(path)
        assert t["transcript_id"] == transcript_id(t["intent_id"], t["created_at_ms"])
        assert t["rounds"][0]["previous_round_hash"] == genesis_hash(
            t["intent_id"], t["created_at_ms"]
        )


# ------------------------------------------------------------------------ our exports


def _envelope(kind: str, key: Keypair, at: int, **fields: Any) -> dict[str, Any]:
    message = {
        "protocol_version": "pact/1.0",
        "type": kind,
        "intent_id": "intent-1",
        "sent_at_ms": at,
        "expires_at_ms": at + 60_000,
        **fields,
    }
    return sign_message(message, key, signed_at_ms=at)


def settlement_transcript(
    state: str = "released",
    *,
    failure_code: str | None = None,
    buyer_lag_ms: int = 0,
    price: str = "0.00008",
    abort: bool = False,
    challenge: bool = False,
) -> dict[str, Any]:
    """A pact-settlement-transcript/1 document as settlement serves it."""
    ask = ask_envelope(PROVIDER, BUYER, price=price, sent_at_ms=NOW)
    ask = sign_message(ask["message"], PROVIDER, signed_at_ms=NOW)
    accepted_at = NOW + 1_000 - buyer_lag_ms
    accept = accept_envelope(BUYER, ask, sent_at_ms=accepted_at)
    accept = sign_message(accept["message"], BUYER, signed_at_ms=accepted_at)
    payload = base64.b64encode(b'{"temp_c": 12.5}').decode()
    nonce = base64.b64encode(b"nonce-1").decode()
    entries = [("quote", ask), ("accept", accept)]
    if abort:
        entries.append(
            (
                "abort",
                _envelope("REJECT", PROVIDER, NOW + 2_000, code="FULFILMENT_FAILED", reason="x"),
            )
        )
    else:
        entries.append(
            (
                "commit",
                _envelope(
                    "COMMIT", PROVIDER, NOW + 2_000, commit_hash_hex=commit_hash_hex(payload, nonce)
                ),
            )
        )
        entries.append(
            (
                "reveal",
                _envelope("REVEAL", PROVIDER, NOW + 3_000, payload_b64=payload, nonce_b64=nonce),
            )
        )
    if challenge:
        entries.append(
            (
                "challenge",
                _envelope("REJECT", BUYER, NOW + 4_000, code="LATENCY_BREACH", reason="y"),
            )
        )
    fulfilled = state == "released"
    receipt_fields: dict[str, Any] = {
        "buyer_agent_id": BUYER.public_key_b58,
        "seller_agent_id": PROVIDER.public_key_b58,
        "agreed_price": float(price),
        "fulfilled": fulfilled,
        "timestamp_ms": NOW + 9_000,
    }
    if not fulfilled:
        receipt_fields["failure_code"] = failure_code
    receipt = sign_message(
        {
            "protocol_version": "pact/1.0",
            "type": "RECEIPT",
            "intent_id": "intent-1",
            **receipt_fields,
        },
        SETTLEMENT,
        signed_at_ms=NOW + 9_000,
    )
    if state in ("released", "refunded", "slashed", "failed"):
        entries.append(("receipt", receipt))
    return {
        "format": "pact-settlement-transcript/1",
        "intent_id": "intent-1",
        "settlement": {
            "id": "st_01m8y3j7zj4ej97a9gvmz0a09r",
            "intent_id": "intent-1",
            "state": state,
            "rail": "ledger",
            "amount": price,
            "bond": "0.00016",
            "bond_locked": "0.00016",
            "buyer": BUYER.public_key_b58,
            "seller": PROVIDER.public_key_b58,
            "failure_code": failure_code,
        },
        "envelopes": [
            {"kind": kind, "envelope": env, "message_hash_hex": env["message_hash_hex"]}
            for kind, env in entries
        ],
        "omitted": [],
        "events": [],
        "settlement_public_key_b58": SETTLEMENT.public_key_b58,
    }


def test_a_released_settlement_exports_a_valid_verifiable_v4_transcript() -> None:
    exported = export_v4(settlement_transcript())
    assert _schema_errors(exported) == []
    assert verify_v4(exported, settlement_key=SETTLEMENT.public_key_b58).ok
    assert [(r["round_type"], r["agent_id"]) for r in exported["rounds"]] == [
        ("ASK", "seller"),
        ("ACCEPT", "buyer"),
    ]
    assert exported["intent_type"] == "weather.data"
    assert "failure_event" not in exported
    assert exported["final_hash"] == final_hash(exported)
    kinds = [e["kind"] for e in exported["metadata"]["settlement_envelopes"]]
    assert kinds == ["commit", "reveal", "receipt"]


@pytest.mark.parametrize(
    ("state", "code", "abort", "expected"),
    [
        ("slashed", "FAILED_PROOF", False, ("PACT-403", "reveal", "PROVIDER_AT_FAULT")),
        ("refunded", "FULFILMENT_FAILED", True, ("PACT-500", "fulfillment", "PROVIDER_AT_FAULT")),
        ("refunded", "COMMIT_WINDOW_MISSED", False, ("PACT-402", "commitment", "settlement")),
        ("failed", "INSUFFICIENT_ESCROW", False, ("PACT-404", "settlement", "settlement")),
        ("refunded", "SOMETHING_NEW", False, ("PACT-400", "settlement", "settlement")),
    ],
)
def test_refunds_slashes_and_failures_carry_a_v4_failure_event(
    state: str, code: str, abort: bool, expected: tuple[str, str, str]
) -> None:
    exported = export_v4(settlement_transcript(state, failure_code=code, abort=abort))
    assert _schema_errors(exported) == []
    check = verify_v4(exported, settlement_key=SETTLEMENT.public_key_b58)
    assert check.ok, check.lines
    assert not [text for _, text in check.lines if text.startswith("warning")]
    event = exported["failure_event"]
    assert (event["code"], event["stage"], event["fault_domain"]) == expected
    assert event["terminality"] == "terminal"
    assert exported["transcript_id"] in event["evidence_refs"]
    if abort:
        assert exported["rounds"][-1]["round_type"] == "REJECT"
        assert exported["rounds"][-1]["agent_id"] == "seller"


def test_an_open_settlement_has_no_final_hash_yet() -> None:
    exported = export_v4(settlement_transcript("delivered"))
    assert "final_hash" not in exported
    assert "failure_event" not in exported
    assert _schema_errors(exported) == []
    assert verify_v4(exported).ok


def test_a_buyer_clock_behind_the_provider_keeps_the_times_non_decreasing() -> None:
    exported = export_v4(settlement_transcript(buyer_lag_ms=3_000))
    accept = exported["rounds"][1]
    assert accept["signature"]["signed_at_ms"] < exported["rounds"][0]["timestamp_ms"]
    assert accept["timestamp_ms"] == exported["rounds"][0]["timestamp_ms"]
    assert verify_v4(exported).ok


def test_a_challenge_is_a_buyer_round() -> None:
    exported = export_v4(
        settlement_transcript("refunded", failure_code="LATENCY_BREACH", challenge=True)
    )
    assert [(r["round_type"], r["agent_id"]) for r in exported["rounds"]][-1] == ("REJECT", "buyer")
    assert exported["failure_event"]["code"] == v4_failure("LATENCY_BREACH").code == "PACT-407"


@pytest.mark.parametrize(
    "edit",
    [
        lambda t: t["metadata"]["settlement"].update(state="released"),
        lambda t: t["metadata"]["settlement_envelopes"].pop(),
        lambda t: t["metadata"]["hashed"]["policy"].update(challenge_window_ms=0),
        lambda t: t["failure_event"].update(code="PACT-101"),
    ],
    ids=["state", "evidence_dropped", "policy", "failure_code"],
)
def test_an_edited_export_does_not_verify(edit: Callable[[dict[str, Any]], None]) -> None:
    exported = export_v4(settlement_transcript("slashed", failure_code="FAILED_PROOF"))
    edit(exported)
    assert not verify_v4(exported).ok


def test_a_receipt_by_another_key_than_the_pinned_one_fails() -> None:
    exported = export_v4(settlement_transcript())
    check = verify_v4(exported, settlement_key=Keypair.generate().public_key_b58)
    assert not check.ok


@pytest.mark.node
def test_our_exports_replay_in_the_javascript_model(js_replay_v4: Any) -> None:
    exports = [
        export_v4(settlement_transcript()),
        export_v4(settlement_transcript("slashed", failure_code="FAILED_PROOF")),
        export_v4(settlement_transcript("refunded", failure_code="FULFILMENT_FAILED", abort=True)),
        export_v4(settlement_transcript(buyer_lag_ms=3_000)),
    ]
    results = js_replay_v4(exports)
    assert all(r["ok"] and not r["warnings"] for r in results), results


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    state=st.sampled_from(["released", "refunded", "slashed", "failed", "locked"]),
    code=st.sampled_from(["FAILED_PROOF", "DELIVERY_DEADLINE_MISSED", "INSUFFICIENT_ESCROW", None]),
    lag=st.integers(min_value=0, max_value=5_000),
    price=st.sampled_from(["0.00008", "0.000096", "1", "12345.00000001"]),
)
def test_every_export_is_schema_valid_and_verifies(
    state: str, code: str | None, lag: int, price: str
) -> None:
    exported = export_v4(
        settlement_transcript(state, failure_code=code, buyer_lag_ms=lag, price=price)
    )
    assert _schema_errors(exported) == []
    check = verify_v4(exported, settlement_key=SETTLEMENT.public_key_b58)
    assert check.ok, check.lines
    assert ("failure_event" in exported) == (state in ("refunded", "slashed", "failed"))


def test_export_is_deterministic() -> None:
    document = settlement_transcript("slashed", failure_code="FAILED_PROOF")
    assert export_v4(document) == export_v4(copy.deepcopy(document))


# ---------------------------------------------------------------------------------- CLI


def test_cli_exports_then_verifies(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "transcript.json"
    source.write_text(json.dumps(settlement_transcript("slashed", failure_code="FAILED_PROOF")))
    out = tmp_path / "v4.json"
    assert main(["transcript", "export", "--format", "v4", str(source), "--out", str(out)]) == 0
    assert json.loads(out.read_text())["transcript_version"] == "pact-transcript/4.0"
    assert main(["verify-transcript", str(out)]) == 0
    assert "transcript verifies" in capsys.readouterr().out
    assert main(["transcript", "export", "--format", "v4", str(source)]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(out.read_text())


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_cli_verifies_the_published_transcripts(path: Path) -> None:
    assert main(["verify-transcript", str(path)]) == 0


def test_cli_refuses_a_tampered_transcript(tmp_path: Path) -> None:
    tampered = tmp_path / "t.json"
    tampered.write_text(json.dumps(TAMPERED[0][2]))
    assert main(["verify-transcript", str(tampered)]) == 1


@pytest.mark.parametrize(
    "content",
    ['{"format": "something-else"}', "[]", '{"format": "pact-settlement-transcript/1"}', "{"],
)
def test_cli_export_of_something_else_is_a_usage_error(
    tmp_path: Path, content: str, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "x.json"
    source.write_text(content)
    assert main(["transcript", "export", "--format", "v4", str(source)]) == 2
    assert "pact: error:" in capsys.readouterr().err


def test_cli_module_runs_as_a_program(tmp_path: Path) -> None:
    source = tmp_path / "transcript.json"
    source.write_text(json.dumps(settlement_transcript()))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pact_schema.cli",
            "transcript",
            "export",
            "--format",
            "v4",
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert verify_v4(json.loads(done.stdout)).ok
