from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pact_schema.cli import EXIT_OK, EXIT_REFUSED, EXIT_UNAVAILABLE, EXIT_USAGE, main
from pact_schema.keys import Keypair


def test_keygen_writes_a_loadable_key_and_prints_its_public_key_last(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "buyer.json"
    assert main(["keygen", "--out", str(out)]) == EXIT_OK
    printed = capsys.readouterr().out.strip().splitlines()[-1]
    assert Keypair.load(out).public_key_b58 == printed


def test_keygen_refuses_to_overwrite_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "k.json"
    out.write_text("keep me")
    assert main(["keygen", "--out", str(out)]) == EXIT_USAGE
    assert "exists" in capsys.readouterr().err
    assert out.read_text() == "keep me"
    assert main(["keygen", "--out", str(out), "--force"]) == EXIT_OK


def test_verify_accepts_a_js_signed_envelope(
    tmp_path: Path, vectors: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "env.json"
    path.write_text(json.dumps(vectors["envelopes"][0]["envelope"], ensure_ascii=False))
    assert main(["verify", str(path)]) == EXIT_OK
    assert capsys.readouterr().out.startswith("ok: INTENT")


def test_verify_says_why_a_tampered_envelope_fails(
    tmp_path: Path, vectors: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    tampered = next(t for t in vectors["tampered"] if t["reason"] == "hash_mismatch")
    path = tmp_path / "env.json"
    path.write_text(json.dumps(tampered["envelope"]))
    assert main(["verify", str(path)]) == EXIT_REFUSED
    assert "hash_mismatch" in capsys.readouterr().out


def test_verify_reports_unreadable_input_on_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["verify", str(tmp_path / "missing.json")]) == EXIT_USAGE
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    assert main(["verify", str(bad)]) == EXIT_USAGE
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2
    assert all(line.startswith("pact: error:") for line in err)


def test_negotiate_refuses_a_bad_price_before_any_network_call(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = ["negotiate", "http://127.0.0.1:9", "--intent", "x", "--scope", "s"]
    assert main([*args, "--max-price", "abc"]) == EXIT_USAGE
    assert main([*args, "--max-price", "-1"]) == EXIT_USAGE


def test_negotiate_against_nothing_fails_fast_with_unavailable(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(
        [
            "negotiate",
            "http://127.0.0.1:9",
            "--intent",
            "weather.data",
            "--scope",
            "NYC",
            "--max-price",
            "0.001",
            "--timeout",
            "2",
        ]
    )
    assert code == EXIT_UNAVAILABLE
    assert "cannot reach provider" in capsys.readouterr().err


@pytest.mark.parametrize(
    "price", ["1_000", "\u0661", "\uff11", "+1", " 0.1", "1e-4", "NaN", "Infinity", "1" * 70]
)
def test_negotiate_takes_only_plain_decimal_max_prices_and_bids(
    capsys: pytest.CaptureFixture[str], price: str
) -> None:
    args = ["negotiate", "http://127.0.0.1:9", "--intent", "x", "--scope", "s"]
    assert main([*args, "--max-price", price]) == EXIT_USAGE
    assert "--max-price:" in capsys.readouterr().err
    assert main([*args, "--max-price", "0.1", "--bid", price]) == EXIT_USAGE
    assert "--bid:" in capsys.readouterr().err


def test_verify_transcript_takes_only_an_exact_settlement_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "t.json"
    path.write_text("[]")
    key = Keypair(bytes(range(32))).public_key_b58
    for bad in [key + "\n", "1" + key, "z" * 1_000_000]:
        assert main(["verify-transcript", str(path), "--settlement-key", bad]) == EXIT_USAGE
        assert "--settlement-key" in capsys.readouterr().err
