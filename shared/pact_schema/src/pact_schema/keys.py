"""Ed25519 keys (PyNaCl) with base58 (Bitcoin alphabet) text forms, and key files."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import base58
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

__all__ = ["KeyFormatError", "Keypair", "b58decode", "b58encode", "verify_detached"]

KEY_FILE_FORMAT = "pact-keypair/1"


class KeyFormatError(ValueError):
    """A key or key file is malformed."""


def b58encode(data: bytes) -> str:
    return str(base58.b58encode(data).decode("ascii"))


def b58decode(text: str) -> bytes:
    try:
        return bytes(base58.b58decode(text.encode("ascii")))
    except (ValueError, UnicodeEncodeError) as exc:
        raise KeyFormatError(f"not base58: {exc}") from exc


def verify_detached(public_key_b58: str, signature_b58: str, data: bytes) -> bool:
    """True when ``signature_b58`` is a valid Ed25519 signature of ``data`` by the key.

    Raises :class:`KeyFormatError` when the key or signature is not well-formed.
    """
    key = b58decode(public_key_b58)
    if len(key) != 32:
        raise KeyFormatError(f"public key must be 32 bytes, got {len(key)}")
    signature = b58decode(signature_b58)
    if len(signature) != 64:
        raise KeyFormatError(f"signature must be 64 bytes, got {len(signature)}")
    try:
        VerifyKey(key).verify(data, signature)
    except BadSignatureError:
        return False
    except ValueError as exc:  # libsodium refuses some malformed points
        raise KeyFormatError(str(exc)) from exc
    return True


@dataclass(frozen=True, slots=True)
class Keypair:
    """An Ed25519 signing key. ``seed`` is the 32-byte private seed."""

    seed: bytes = field(repr=False)
    _signing_key: SigningKey = field(init=False, repr=False, compare=False)
    public_key_b58: str = field(init=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.seed) != 32:
            raise KeyFormatError(f"Ed25519 seed must be 32 bytes, got {len(self.seed)}")
        signing_key = SigningKey(self.seed)
        object.__setattr__(self, "_signing_key", signing_key)
        object.__setattr__(self, "public_key_b58", b58encode(bytes(signing_key.verify_key)))

    @classmethod
    def generate(cls) -> Keypair:
        return cls(bytes(SigningKey.generate()))

    @classmethod
    def from_secret_b58(cls, text: str) -> Keypair:
        """Accepts a 32-byte seed or a 64-byte tweetnacl secret key (seed ‖ public key)."""
        raw = b58decode(text.strip())
        if len(raw) == 64:
            pair = cls(raw[:32])
            if pair.public_key != raw[32:]:
                raise KeyFormatError("64-byte secret key: public half does not match the seed")
            return pair
        if len(raw) != 32:
            raise KeyFormatError(
                f"secret key must be a 32-byte seed or 64-byte secret, got {len(raw)}"
            )
        return cls(raw)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Keypair:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise KeyFormatError(f"cannot read key file {path}: {exc.strerror}") from exc
        try:
            doc = json.loads(text)
        except json.JSONDecodeError:
            return cls.from_secret_b58(text)  # a bare base58 secret is accepted too
        if not isinstance(doc, dict) or "secret_key_b58" not in doc:
            raise KeyFormatError(f"{path}: not a {KEY_FILE_FORMAT} key file")
        pair = cls.from_secret_b58(str(doc["secret_key_b58"]))
        claimed = doc.get("public_key_b58")
        if claimed is not None and claimed != pair.public_key_b58:
            raise KeyFormatError(f"{path}: public_key_b58 does not match the secret key")
        return pair

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the key file with owner-only permissions (created, never widened)."""
        doc = {
            "format": KEY_FILE_FORMAT,
            "public_key_b58": self.public_key_b58,
            "secret_key_b58": b58encode(self.seed),
        }
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=2)
            fh.write("\n")

    @property
    def public_key(self) -> bytes:
        return bytes(self._signing_key.verify_key)

    def sign(self, data: bytes) -> bytes:
        return bytes(self._signing_key.sign(data).signature)
