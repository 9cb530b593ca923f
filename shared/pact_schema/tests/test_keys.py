from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from pact_schema.keys import KeyFormatError, Keypair, b58encode, verify_detached


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
