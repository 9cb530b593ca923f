"""Ed25519 keys (PyNaCl) with base58 (Bitcoin alphabet) text forms, and key files."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from pact_schema.files import write_private

__all__ = ["KeyFormatError", "Keypair", "b58decode", "b58encode", "verify_detached"]

KEY_FILE_FORMAT = "pact-keypair/1"

# Base58 with the Bitcoin alphabet, as the reference SDK (bs58) writes it: the big-endian number,
# with one leading "1" per leading zero byte. It is what the ``base58`` package (2.1.1) computes,
# byte for byte and error for error (a property test holds the two equal), in a third of the
# time: five digits per big-integer step (58**5 < 2**30 is one CPython "digit", so each step is
# a single-digit multiply or divide) instead of one, and ``int.to_bytes``/``from_bytes``.
_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_PAIRS = tuple(a + b for a in _ALPHABET for b in _ALPHABET)  # two digits, "11" … "zz"
_STEP = 58**5
_NOT_A_DIGIT = 0xFF
_DIGITS = bytes(
    _ALPHABET.encode("ascii").index(byte) if chr(byte) in _ALPHABET else _NOT_A_DIGIT
    for byte in range(256)
)  # a ``bytes.translate`` table: ASCII character → digit value, anything else → 0xFF


class KeyFormatError(ValueError):
    """A key or key file is malformed."""


def b58encode(data: bytes) -> str:
    body = data.lstrip(b"\0")
    number = int.from_bytes(body, "big")
    parts: list[str] = []
    while number:
        number, chunk = divmod(number, _STEP)  # the next five digits, least significant first
        high, low = divmod(chunk, 58 * 58)
        top, middle = divmod(high, 58 * 58)
        parts += (_PAIRS[low], _PAIRS[middle], _ALPHABET[top])
    parts.reverse()
    # The most significant chunk is padded with zero digits ("1"), which the number never has.
    return "1" * (len(data) - len(body)) + "".join(parts).lstrip("1")


def b58decode(text: str) -> bytes:
    """The bytes of base58 ``text``; raises :class:`KeyFormatError` when it is not base58.

    As the ``base58`` package did: trailing ASCII whitespace is ignored, and the error names the
    first character outside the alphabet (or the codec's complaint about a non-ASCII one).
    """
    try:
        encoded = text.encode("ascii").rstrip()
    except UnicodeEncodeError as exc:
        raise KeyFormatError(f"not base58: {exc}") from exc
    body = encoded.lstrip(b"1")
    digits = body.translate(_DIGITS)
    if _NOT_A_DIGIT in digits:
        bad = chr(body[digits.index(_NOT_A_DIGIT)])
        raise KeyFormatError(f"not base58: Invalid character {bad!r}")
    head = len(digits) % 5
    number = 0
    for digit in digits[:head]:
        number = number * 58 + digit
    rest = iter(digits[head:])
    for a, b, c, d, e in zip(rest, rest, rest, rest, rest, strict=True):
        number = number * _STEP + ((((a * 58 + b) * 58 + c) * 58 + d) * 58 + e)
    zeros = b"\0" * (len(encoded) - len(body))
    return zeros + number.to_bytes((number.bit_length() + 7) // 8, "big")


@lru_cache(maxsize=1024)
def _verify_key(public_key_b58: str) -> VerifyKey:
    """The verifying key of a base58 public key, memoised: a buyer signs many messages (INTENT,
    BIDs, ACCEPT) with one key, and decoding plus ``VerifyKey`` cost a tenth of a verification.
    Malformed keys raise :class:`KeyFormatError` (and are not memoised)."""
    key = b58decode(public_key_b58)
    if len(key) != 32:
        raise KeyFormatError(f"public key must be 32 bytes, got {len(key)}")
    return VerifyKey(key)


def verify_detached(public_key_b58: str, signature_b58: str, data: bytes) -> bool:
    """True when ``signature_b58`` is a valid Ed25519 signature of ``data`` by the key.

    Raises :class:`KeyFormatError` when the key or signature is not well-formed.
    """
    verify_key = _verify_key(public_key_b58)
    signature = b58decode(signature_b58)
    if len(signature) != 64:
        raise KeyFormatError(f"signature must be 64 bytes, got {len(signature)}")
    try:
        verify_key.verify(data, signature)
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
        """Accepts a 32-byte seed or a 64-byte tweetnacl secret key (seed ‖ public key).

        Errors never quote the text, not even the one character that is not base58: it is a
        secret, and error messages end up in logs.
        """
        try:
            raw = b58decode(text.strip())
        except KeyFormatError:
            raise KeyFormatError("secret key is not base58") from None
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

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = True) -> None:
        """Write the key file: atomically, mode 0600 whatever the mode of a file it replaces,
        never through a symbolic link (see :func:`pact_schema.files.write_private`).
        ``overwrite=False`` raises :class:`FileExistsError` when the file exists."""
        doc = {
            "format": KEY_FILE_FORMAT,
            "public_key_b58": self.public_key_b58,
            "secret_key_b58": b58encode(self.seed),
        }
        write_private(path, json.dumps(doc, indent=2) + "\n", overwrite=overwrite)

    @property
    def public_key(self) -> bytes:
        return bytes(self._signing_key.verify_key)

    def sign(self, data: bytes) -> bytes:
        return bytes(self._signing_key.sign(data).signature)
