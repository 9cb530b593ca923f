"""Every subcommand of ``pact`` over a table of bad inputs: one line on stderr, the documented
exit code, never a traceback (see the module docstring of ``pact_schema.cli``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures.examples import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pact_schema.cli import EXIT_REFUSED, EXIT_UNAVAILABLE, EXIT_USAGE, main
from pact_schema.keys import Keypair

PROVIDER = "http://127.0.0.1:9"  # the discard port: nothing listens, nothing is sent
NEGOTIATE = ["negotiate", PROVIDER, "--intent", "weather.data", "--scope", "NYC"]
PRICED = [*NEGOTIATE, "--max-price", "0.0002"]
KEY = Keypair(bytes(range(32)))
OTHER = Keypair(bytes(range(1, 33)))


def _files(root: Path) -> dict[str, str]:
    """Bad input files, by name; ``{name}`` in a table row is replaced by the file's path."""
    contents: dict[str, bytes] = {
        "binary": bytes(range(256)) * 4,
        "empty": b"",
        "not_json": b"{nope",
        "json_list": b"[]",
        "json_number": b"42",
        "json_string": b'"an envelope"',
        "deep": b"[" * 100_000 + b"]" * 100_000,
        "not_a_key": b'{"x": 1}',
        "secret_not_text": b'{"secret_key_b58": 5}',
        "secret_not_base58": b'{"secret_key_b58": "0OIl"}',
        "secret_too_short": b'{"secret_key_b58": "abc"}',
        "wrong_public": json.dumps(
            {"secret_key_b58": "", "public_key_b58": OTHER.public_key_b58}
        ).encode(),
        "transcript_bad_envelopes": b'{"envelopes": "none"}',
        "transcript_junk": b'{"envelopes": [1, "x", null, {"kind": 5, "envelope": []}]}',
        "envelope_junk": b'{"envelope_version": "pact-envelope/1.0", "message": []}',
    }
    paths = {}
    for name, data in contents.items():
        path = root / name
        path.write_bytes(data)
        paths[name] = str(path)
    good = root / "good_key.json"
    KEY.save(good)
    paths["good_key"] = str(good)
    doc = json.loads(good.read_text())
    mismatched = root / "mismatched_key.json"
    mismatched.write_text(json.dumps({**doc, "public_key_b58": OTHER.public_key_b58}))
    paths["mismatched_key"] = str(mismatched)
    (root / "a_directory").mkdir()
    paths["a_directory"] = str(root / "a_directory")
    paths["missing"] = str(root / "missing.json")
    link = root / "link.json"
    link.symlink_to(root / "elsewhere.json")
    paths["link"] = str(link)
    return paths


# (argv, exit code, text the one stderr line must contain); {name} = a file from _files.
TABLE: list[tuple[list[str], int, str]] = [
    # keygen
    (["keygen"], EXIT_USAGE, "--out"),
    (["keygen", "--out", "{good_key}"], EXIT_USAGE, "exists; pass --force"),
    (["keygen", "--out", "{binary}/k.json"], EXIT_USAGE, "cannot write"),
    (["keygen", "--out", "{link}", "--force"], EXIT_USAGE, "cannot write"),
    # negotiate: amounts
    ([*NEGOTIATE, "--max-price", "1e400"], EXIT_USAGE, "--max-price: not a plain decimal"),
    (
        [*NEGOTIATE, "--max-price", "0.1234567890123456789"],
        EXIT_USAGE,
        "--max-price: 0.1234567890123456789 has more precision",
    ),
    ([*NEGOTIATE, "--max-price", "-1"], EXIT_USAGE, "--max-price: must be greater than 0"),
    ([*NEGOTIATE, "--max-price", "0"], EXIT_USAGE, "--max-price: must be greater than 0"),
    ([*NEGOTIATE, "--max-price", ""], EXIT_USAGE, "--max-price: not a plain decimal"),
    ([*NEGOTIATE, "--max-price", "1" * 21], EXIT_USAGE, "--max-price: amount must be less"),
    ([*PRICED, "--bid", "-1"], EXIT_USAGE, "--bid: must be greater than 0"),
    ([*PRICED, "--bid", "0"], EXIT_USAGE, "--bid: must be greater than 0"),
    ([*PRICED, "--bid", "1e400"], EXIT_USAGE, "--bid: not a plain decimal"),
    ([*PRICED, "--bid", "0.1234567890123456789"], EXIT_USAGE, "--bid: 0.1234567890123456789"),
    # negotiate: counts, timeout, choices
    ([*PRICED, "--latency-ms", "-5"], EXIT_USAGE, "--latency-ms: expected a whole number"),
    ([*PRICED, "--latency-ms", "1.5"], EXIT_USAGE, "--latency-ms: expected a whole number"),
    ([*PRICED, "--latency-ms", str(2**53)], EXIT_USAGE, "--latency-ms: at most"),
    ([*PRICED, "--latency-ms", "\u0661"], EXIT_USAGE, "--latency-ms: expected a whole number"),
    ([*PRICED, "--freshness-sec", "-1"], EXIT_USAGE, "--freshness-sec: expected a whole"),
    ([*PRICED, "--timeout", "0"], EXIT_USAGE, "--timeout: seconds between"),
    ([*PRICED, "--timeout", "nan"], EXIT_USAGE, "--timeout: seconds between"),
    ([*PRICED, "--timeout", "soon"], EXIT_USAGE, "--timeout: expected seconds"),
    ([*PRICED, "--settlement-mode", "barter"], EXIT_USAGE, "--settlement-mode: invalid choice"),
    ([*PRICED, "--no-such-option"], EXIT_USAGE, "unrecognized arguments"),
    # negotiate: URL, intent, scope
    (
        ["negotiate", "notaurl", "--intent", "x", "--scope", "y", "--max-price", "1"],
        EXIT_USAGE,
        "provider_url: expected an http:// or https:// URL",
    ),
    (
        ["negotiate", "ftp://host/", "--intent", "x", "--scope", "y", "--max-price", "1"],
        EXIT_USAGE,
        "provider_url",
    ),
    (
        ["negotiate", "http://", "--intent", "x", "--scope", "y", "--max-price", "1"],
        EXIT_USAGE,
        "provider_url",
    ),
    (
        ["negotiate", "http://[::1", "--intent", "x", "--scope", "y", "--max-price", "1"],
        EXIT_USAGE,
        "provider_url",
    ),
    (
        ["negotiate", PROVIDER, "--intent", "", "--scope", "y", "--max-price", "1"],
        EXIT_USAGE,
        "--intent: 1 to 256 characters",
    ),
    (
        ["negotiate", PROVIDER, "--intent", "x" * 257, "--scope", "y", "--max-price", "1"],
        EXIT_USAGE,
        "--intent: 1 to 256 characters",
    ),
    (
        ["negotiate", PROVIDER, "--intent", "x", "--scope", "\udcff", "--max-price", "1"],
        EXIT_USAGE,
        "--scope: scope: text contains a lone UTF-16 surrogate",
    ),
    (
        ["negotiate", PROVIDER, "--intent", "x", "--scope", '{"a": ', "--max-price", "1"],
        EXIT_USAGE,
        "--scope: looks like JSON but is not valid",
    ),
    (
        ["negotiate", PROVIDER, "--intent", "x", "--scope", '{"a": "\\u0000"}', "--max-price", "1"],
        EXIT_USAGE,
        "--scope: scope.a: text contains NUL",
    ),
    # negotiate: key files (the error names the file, never its content)
    ([*PRICED, "--key-file", "{binary}"], EXIT_USAGE, "{binary}: not a key file (not UTF-8"),
    ([*PRICED, "--key-file", "{missing}"], EXIT_USAGE, "cannot read key file {missing}"),
    ([*PRICED, "--key-file", "{a_directory}"], EXIT_USAGE, "cannot read key file {a_directory}"),
    ([*PRICED, "--key-file", "/dev/zero"], EXIT_USAGE, "/dev/zero: larger than 4096 bytes"),
    ([*PRICED, "--key-file", "{empty}"], EXIT_USAGE, "{empty}: secret key must be"),
    ([*PRICED, "--key-file", "{not_a_key}"], EXIT_USAGE, "{not_a_key}: not a pact-keypair/1"),
    (
        [*PRICED, "--key-file", "{secret_not_text}"],
        EXIT_USAGE,
        "{secret_not_text}: secret_key_b58 is not a string",
    ),
    (
        [*PRICED, "--key-file", "{secret_not_base58}"],
        EXIT_USAGE,
        "{secret_not_base58}: secret key is not base58",
    ),
    (
        [*PRICED, "--key-file", "{secret_too_short}"],
        EXIT_USAGE,
        "{secret_too_short}: secret key must be",
    ),
    (
        [*PRICED, "--key-file", "{mismatched_key}"],
        EXIT_USAGE,
        "{mismatched_key}: public_key_b58 does not match",
    ),
    # negotiate: good input, nobody listening: unavailable (3), not bad input
    ([*PRICED, "--key-file", "{good_key}", "--timeout", "2"], EXIT_UNAVAILABLE, "cannot reach"),
    # verify
    (["verify"], EXIT_USAGE, "file"),
    (["verify", "{missing}"], EXIT_USAGE, "cannot read {missing}"),
    (["verify", "{a_directory}"], EXIT_USAGE, "cannot read {a_directory}"),
    (["verify", "{binary}"], EXIT_USAGE, "{binary} is not UTF-8 text"),
    (["verify", "{empty}"], EXIT_USAGE, "{empty} is not valid JSON"),
    (["verify", "{not_json}"], EXIT_USAGE, "{not_json} is not valid JSON"),
    (["verify", "{deep}"], EXIT_USAGE, "{deep} is not valid JSON: JSON nested deeper"),
    (["verify", "{json_list}"], EXIT_REFUSED, ""),
    (["verify", "{json_number}"], EXIT_REFUSED, ""),
    (["verify", "{json_string}"], EXIT_REFUSED, ""),
    (["verify", "{envelope_junk}"], EXIT_REFUSED, ""),
    # verify-transcript
    (["verify-transcript", "{binary}"], EXIT_USAGE, "{binary} is not UTF-8 text"),
    (["verify-transcript", "{missing}"], EXIT_USAGE, "cannot read {missing}"),
    (["verify-transcript", "{not_json}"], EXIT_USAGE, "is not valid JSON"),
    (["verify-transcript", "{json_number}"], EXIT_USAGE, "a transcript is a list of envelopes"),
    (["verify-transcript", "{transcript_bad_envelopes}"], EXIT_USAGE, "a transcript is a list"),
    (["verify-transcript", "{transcript_junk}"], EXIT_REFUSED, ""),
    (["verify-transcript", "{json_list}", "--settlement-key", "x"], EXIT_USAGE, "--settlement"),
    # no subcommand at all
    ([], EXIT_USAGE, "the following arguments are required: command"),
    (["teleport"], EXIT_USAGE, "invalid choice: 'teleport'"),
]


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    return _files(tmp_path)


def _fill(text: str, files: dict[str, str]) -> str:
    return text.format(**files) if "{" in text and not text.startswith('{"') else text


@pytest.mark.parametrize(
    ("argv", "code", "says"), TABLE, ids=[" ".join(row[0])[-60:] or "(none)" for row in TABLE]
)
def test_bad_input_is_one_line_and_the_documented_exit_code(
    argv: list[str],
    code: int,
    says: str,
    files: dict[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    exit_code = main([_fill(arg, files) for arg in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert exit_code == code, (out, err)
    if code == EXIT_REFUSED:  # a verdict on stdout, nothing on stderr
        assert err == ""
        assert out.strip()
        return
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(("pact: error:", "pact negotiate: error:", "pact "))
    assert _fill(says, files) in lines[0]


@pytest.mark.processes
def test_the_installed_entry_point_answers_bad_input_without_a_traceback(
    files: dict[str, str],
) -> None:
    """The same guarantee through the real ``pact`` executable (interpreter start-up, the
    console-script wrapper, a real exit status)."""
    pact = Path(sys.executable).with_name("pact")
    cases = [
        (["verify", files["binary"]], EXIT_USAGE),
        ([*PRICED, "--max-price", "0.1234567890123456789"], EXIT_USAGE),
        ([*PRICED, "--key-file", files["binary"]], EXIT_USAGE),
        (["negotiate", "notaurl", "--intent", "x", "--scope", "y", "--max-price", "1"], 2),
    ]
    for argv, code in cases:
        done = subprocess.run(
            [str(pact), *argv],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "PYTHONWARNINGS": "error"},
            check=False,
        )
        assert "Traceback" not in done.stdout + done.stderr
        assert done.returncode == code, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
ENVELOPE_FIELDS = st.fixed_dictionaries(
    {
        "envelope_version": st.sampled_from(["pact-envelope/1.0", "x"]) | JSON,
        "message": JSON,
        "message_hash_hex": st.sampled_from(["00" * 32, "zz"]) | JSON,
        "signer_public_key_b58": st.just(KEY.public_key_b58) | JSON,
        "signature_b58": JSON,
        "signed_at_ms": JSON,
    }
)


@settings(
    max_examples=examples(150),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(document=JSON | ENVELOPE_FIELDS | st.lists(ENVELOPE_FIELDS, max_size=3))
def test_any_json_document_gets_a_verdict_never_a_crash(
    document: object, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "doc.json"
    path.write_text(json.dumps(document))
    wrapped = tmp_path / "transcript.json"
    wrapped.write_text(json.dumps({"envelopes": [{"kind": "quote", "envelope": document}]}))
    for argv in (["verify", str(path)], ["verify-transcript", str(path)]):
        assert main(argv) in (EXIT_REFUSED, EXIT_USAGE)
    assert main(["verify-transcript", str(wrapped)]) == EXIT_REFUSED
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert "internal error" not in err
