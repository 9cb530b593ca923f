from __future__ import annotations

import json
import stat
from pathlib import Path

import base58
import pytest
from fixtures.examples import examples
from hypothesis import given, settings
from hypothesis import strategies as st
from pact_schema.keys import KeyFormatError, Keypair, b58decode, b58encode, verify_detached


def test_key_file_round_trips_with_owner_only_permissions(tmp_path: Path) -> None:
    key = Keypair.generate()
    path = tmp_path / "keys" / "buyer.json"
    key.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Keypair.load(path) == key


def test_tweetnacl_64_byte_secret_and_bare_seed_are_accepted(tmp_path: Path) -> None:
    key = Keypair.generate()
    assert Keypair.from_secret_b58(b58encode(key.seed + key.public_key)) == key
    bare = tmp_path / "bare.key"
    bare.write_text(b58encode(key.seed) + "\n")
    assert Keypair.load(bare) == key


def test_mismatched_public_key_in_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    Keypair.generate().save(path)
    doc = json.loads(path.read_text())
    doc["public_key_b58"] = Keypair.generate().public_key_b58
    path.write_text(json.dumps(doc))
    with pytest.raises(KeyFormatError, match="does not match"):
        Keypair.load(path)


@pytest.mark.parametrize("text", ["", "0OIl", "abc", b58encode(b"x" * 40)])
def test_malformed_secrets_are_refused(text: str) -> None:
    with pytest.raises(KeyFormatError):
        Keypair.from_secret_b58(text)


def test_missing_key_file_gives_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(KeyFormatError, match="cannot read key file"):
        Keypair.load(tmp_path / "nope.json")


def test_repr_never_shows_the_seed() -> None:
    key = Keypair.generate()
    assert b58encode(key.seed) not in repr(key)
    assert key.public_key_b58 in repr(key)


def test_verify_detached_checks_lengths() -> None:
    key = Keypair.generate()
    sig = b58encode(key.sign(b"x"))
    assert verify_detached(key.public_key_b58, sig, b"x")
    assert not verify_detached(key.public_key_b58, sig, b"y")
    with pytest.raises(KeyFormatError):
        verify_detached(b58encode(b"short"), sig, b"x")


# The base58 codec must stay what the ``base58`` package (and bs58, the reference SDK's) computes:
# same text for every byte string, same bytes or the same error for every text.
_B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_byte_strings = st.binary(max_size=80) | st.builds(
    lambda zeros, rest: b"\0" * zeros + rest, st.integers(0, 6), st.binary(max_size=70)
)
_b58_texts = (
    st.text(alphabet=_B58_ALPHABET, max_size=110)
    | st.builds(
        lambda ones, rest: "1" * ones + rest,
        st.integers(0, 6),
        st.text(alphabet=_B58_ALPHABET, max_size=100),
    )
    | st.builds(  # one foreign character (0 O I l, whitespace, punctuation, non-ASCII) inside
        lambda left, bad, right: left + bad + right,
        st.text(alphabet=_B58_ALPHABET, max_size=40),
        st.sampled_from(
            ["0", "O", "I", "l", " ", "\t", "\n", "+", "/", "=", "\x00", "é", "\u2003"]
        ),
        st.text(alphabet=_B58_ALPHABET, max_size=40),
    )
    | st.text(max_size=40)
)


_ROOMY = 128  # bytes: every text below decodes within it


def _reference_decode(text: str) -> bytes | str:
    try:
        return bytes(base58.b58decode(text.encode("ascii")))
    except (ValueError, UnicodeEncodeError) as exc:
        return f"not base58: {exc}"


def _our_decode(text: str) -> bytes | str:
    try:
        return b58decode(text, max_bytes=_ROOMY)
    except KeyFormatError as exc:
        return str(exc)


@settings(max_examples=examples(1000), deadline=None)
@given(_byte_strings)
def test_b58encode_writes_what_the_base58_package_writes(data: bytes) -> None:
    text = b58encode(data)
    assert text == base58.b58encode(data).decode("ascii")
    assert b58decode(text, max_bytes=_ROOMY) == data


@settings(max_examples=examples(1000), deadline=None)
@given(_b58_texts)
def test_b58decode_reads_or_refuses_what_the_base58_package_does(text: str) -> None:
    if text != text.rstrip():
        # The one difference: the package ignores trailing whitespace, we refuse it (a key
        # with a newline would otherwise be a second name of the same key).
        assert isinstance(_our_decode(text), str)
    else:
        assert _our_decode(text) == _reference_decode(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", b""),
        ("1", b"\0"),
        ("111", b"\0\0\0"),
        ("2", b"\x01"),
        ("z", b"\x39"),
        ("21", b"\x3a"),
        ("1112", b"\0\0\0\x01"),
        ("5R", b"\x01\x00"),
        ("7YXq9G", b"\xff" * 4),
        ("4HUtbHhN2TkpR", bytes(range(1, 11))),
    ],
)
def test_b58decode_known_values(text: str, expected: bytes) -> None:
    assert b58decode(text, max_bytes=16) == expected
    assert b58encode(expected) == text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("abc0def", "not base58: Invalid character '0'"),
        ("I", "not base58: Invalid character 'I'"),
        (" abc", "not base58: Invalid character ' '"),
        ("ab\x00", "not base58: Invalid character '\\x00'"),
        ("zz \n", "not base58: Invalid character ' '"),  # trailing whitespace too
        ("zz\n", "not base58: Invalid character '\\n'"),
    ],
)
def test_b58decode_names_the_first_foreign_character(text: str, message: str) -> None:
    with pytest.raises(KeyFormatError) as caught:
        b58decode(text, max_bytes=16)
    assert str(caught.value) == message


def test_a_malformed_public_key_is_refused_on_every_call() -> None:
    key = Keypair.generate()
    sig = b58encode(key.sign(b"x"))
    for _ in range(2):  # the memoised key lookup must not remember a refusal as a key
        with pytest.raises(KeyFormatError, match="public key must be 32 bytes"):
            verify_detached(b58encode(b"short"), sig, b"x")
        with pytest.raises(KeyFormatError, match="not base58"):
            verify_detached("0OIl", sig, b"x")
    assert verify_detached(key.public_key_b58, sig, b"x")
    assert not verify_detached(key.public_key_b58, sig, b"y")
