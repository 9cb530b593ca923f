"""Ed25519 keys (PyNaCl) with base58 (Bitcoin alphabet) text forms, and key files.

Base58 text is strict: only the 58 alphabet characters, no whitespace, and for public keys the
canonical form (re-encoding the 32 bytes gives the same text), so one key has exactly one name:
``"KEY\n"`` is not ``"KEY"``. Every length is checked *before* decoding: decoding costs time
quadratic in the length of the text, so an over-long string is refused without being read.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey
from pydantic import AfterValidator, StringConstraints

from pact_schema.files import write_private

__all__ = [
    "MAX_KEY_FILE_BYTES",
    "MAX_PUBLIC_KEY_CHARS",
    "MAX_SECRET_KEY_CHARS",
    "MAX_SIGNATURE_CHARS",
    "PUBLIC_KEY_BYTES",
    "SECRET_KEY_BYTES",
    "SIGNATURE_BYTES",
    "KeyFormatError",
    "Keypair",
    "PublicKeyB58",
    "SignatureB58",
    "b58decode",
    "b58encode",
    "check_public_key",
    "check_signature",
    "max_b58_chars",
    "public_key_bytes",
    "signature_bytes",
    "verify_detached",
]

KEY_FILE_FORMAT = "pact-keypair/1"
MAX_KEY_FILE_BYTES = 4096  # a key file is ~200 bytes: anything far larger is not one
PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64
SECRET_KEY_BYTES = 64  # tweetnacl's secret key (seed ‖ public key); a bare seed is 32

# Base58 with the Bitcoin alphabet, as the reference SDK (bs58) writes it: the big-endian number,
# with one leading "1" per leading zero byte. It is what the ``base58`` package (2.1.1) computes,
# byte for byte (a property test holds the two equal), except that nothing is stripped: the
# package ignores trailing whitespace, we refuse it. Five digits per big-integer step (58**5 <
# 2**30 is one CPython "digit", so each step is a single-digit multiply or divide) instead of
# one, and ``int.to_bytes``/``from_bytes``.
_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_PAIRS = tuple(a + b for a in _ALPHABET for b in _ALPHABET)  # two digits, "11" … "zz"
_STEP = 58**5
_NOT_A_DIGIT = 0xFF
_DIGITS = bytes(
    _ALPHABET.encode("ascii").index(byte) if chr(byte) in _ALPHABET else _NOT_A_DIGIT
    for byte in range(256)
)  # a ``bytes.translate`` table: ASCII character → digit value, anything else → 0xFF
_B58_CLASS = "[1-9A-HJ-NP-Za-km-z]"


class KeyFormatError(ValueError):
    """A key, signature or key file is malformed."""


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


@lru_cache(maxsize=64)
def max_b58_chars(max_bytes: int) -> int:
    """The longest base58 text of at most ``max_bytes`` bytes (44 for 32 bytes, 88 for 64)."""
    return len(b58encode(b"\xff" * max_bytes)) if max_bytes > 0 else 0


MAX_PUBLIC_KEY_CHARS = max_b58_chars(PUBLIC_KEY_BYTES)  # 44
MAX_SIGNATURE_CHARS = max_b58_chars(SIGNATURE_BYTES)  # 88
MAX_SECRET_KEY_CHARS = max_b58_chars(SECRET_KEY_BYTES)  # 88


def b58decode(text: str, *, max_bytes: int) -> bytes:
    """The bytes of base58 ``text``; raises :class:`KeyFormatError` when it is not base58.

    Text longer than any encoding of ``max_bytes`` bytes is refused before it is decoded (the
    decoding is quadratic in the length). Nothing is stripped: whitespace is a foreign
    character like any other, and the error names the first one (or the codec's complaint about
    a non-ASCII one).
    """
    if not isinstance(text, str):
        raise KeyFormatError(f"not base58: expected a string, got {type(text).__name__}")
    limit = max_b58_chars(max_bytes)
    if len(text) > limit:
        raise KeyFormatError(
            f"not base58 of at most {max_bytes} bytes: {len(text)} characters (at most {limit})"
        )
    try:
        encoded = text.encode("ascii")
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


def _decode_exact(text: str, size: int, what: str) -> bytes:
    """``size`` bytes from their canonical base58 text, or :class:`KeyFormatError`."""
    raw = b58decode(text, max_bytes=size)
    if len(raw) != size:
        raise KeyFormatError(f"{what} must be {size} bytes, got {len(raw)}")
    if b58encode(raw) != text:  # one value, one text: no second name for the same key
        raise KeyFormatError(f"{what} is not in canonical base58 form")
    return raw


@lru_cache(maxsize=1024)
def _public_key_bytes(text: str) -> bytes:
    return _decode_exact(text, PUBLIC_KEY_BYTES, "public key")


def public_key_bytes(text: str) -> bytes:
    """The 32 bytes of a base58 Ed25519 public key (exact, canonical text).

    Memoised for well-formed keys: a buyer signs many messages with one key. The length is
    checked before the memo is consulted, so an over-long string is neither hashed nor decoded.
    Raises :class:`KeyFormatError` (refusals are not memoised).
    """
    if not isinstance(text, str) or len(text) > MAX_PUBLIC_KEY_CHARS:
        size = len(text) if isinstance(text, str) else type(text).__name__
        raise KeyFormatError(
            f"public key must be base58 of {PUBLIC_KEY_BYTES} bytes "
            f"(at most {MAX_PUBLIC_KEY_CHARS} characters), got {size}"
        )
    return _public_key_bytes(text)


def signature_bytes(text: str) -> bytes:
    """The 64 bytes of a base58 Ed25519 signature (exact, canonical text)."""
    if not isinstance(text, str) or len(text) > MAX_SIGNATURE_CHARS:
        size = len(text) if isinstance(text, str) else type(text).__name__
        raise KeyFormatError(
            f"signature must be base58 of {SIGNATURE_BYTES} bytes "
            f"(at most {MAX_SIGNATURE_CHARS} characters), got {size}"
        )
    return _decode_exact(text, SIGNATURE_BYTES, "signature")


def check_public_key(text: str) -> str:
    """``text`` when it is the canonical base58 text of a 32-byte key, else ValueError."""
    public_key_bytes(text)
    return text


def check_signature(text: str) -> str:
    """``text`` when it is the canonical base58 text of a 64-byte signature, else ValueError."""
    signature_bytes(text)
    return text


PublicKeyB58 = Annotated[
    str,
    StringConstraints(
        strict=True,
        min_length=PUBLIC_KEY_BYTES,  # 32 leading zero bytes are 32 "1"s; nothing is shorter
        max_length=MAX_PUBLIC_KEY_CHARS,
        pattern=f"^{_B58_CLASS}+$",
    ),
    AfterValidator(check_public_key),
]
"""An Ed25519 public key as base58 text: 32 bytes, canonical form, nothing else (agent ids,
envelope signers, quote bindings, provider allow-lists). The length and alphabet are checked
before anything is decoded."""

SignatureB58 = Annotated[
    str,
    StringConstraints(
        strict=True,
        min_length=SIGNATURE_BYTES,
        max_length=MAX_SIGNATURE_CHARS,
        pattern=f"^{_B58_CLASS}+$",
    ),
    AfterValidator(check_signature),
]
"""An Ed25519 signature as base58 text: 64 bytes, canonical form."""


@lru_cache(maxsize=1024)
def _verify_key(public_key_b58: str) -> VerifyKey:
    """The verifying key of a base58 public key, memoised: decoding plus ``VerifyKey`` cost a
    tenth of a verification. Malformed keys raise :class:`KeyFormatError` (not memoised)."""
    return VerifyKey(public_key_bytes(public_key_b58))


def verify_detached(public_key_b58: str, signature_b58: str, data: bytes) -> bool:
    """True when ``signature_b58`` is a valid Ed25519 signature of ``data`` by the key.

    Raises :class:`KeyFormatError` when the key or signature is not well-formed (the lengths
    are checked before anything is decoded or memoised).
    """
    if not isinstance(public_key_b58, str) or len(public_key_b58) > MAX_PUBLIC_KEY_CHARS:
        public_key_bytes(public_key_b58)  # raises with the reason
    signature = signature_bytes(signature_b58)
    verify_key = _verify_key(public_key_b58)
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
        stripped = text.strip()
        if len(stripped) > max_b58_chars(SECRET_KEY_BYTES):
            raise KeyFormatError(
                f"secret key is at most {max_b58_chars(SECRET_KEY_BYTES)} base58 characters, "
                f"got {len(stripped)}"
            )
        try:
            raw = b58decode(stripped, max_bytes=SECRET_KEY_BYTES)
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
        """The key in a ``pact-keypair/1`` JSON file (or a file holding only the base58 secret).

        Every refusal is a :class:`KeyFormatError` that names the file and never quotes its
        content: unreadable, larger than :data:`MAX_KEY_FILE_BYTES`, not UTF-8 text, not a key
        file, a malformed secret, a public key that does not match.
        """
        try:
            with Path(path).open("rb") as handle:
                data = handle.read(MAX_KEY_FILE_BYTES + 1)
        except OSError as exc:
            raise KeyFormatError(f"cannot read key file {path}: {exc.strerror or exc}") from exc
        if len(data) > MAX_KEY_FILE_BYTES:
            raise KeyFormatError(f"{path}: larger than {MAX_KEY_FILE_BYTES} bytes, not a key file")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise KeyFormatError(f"{path}: not a key file (not UTF-8 text)") from None
        try:
            doc = json.loads(text)
        except (json.JSONDecodeError, RecursionError):
            doc = None
            secret = text  # a bare base58 secret is accepted too
        else:
            if not isinstance(doc, dict) or "secret_key_b58" not in doc:
                raise KeyFormatError(f"{path}: not a {KEY_FILE_FORMAT} key file")
            secret = doc["secret_key_b58"]
            if not isinstance(secret, str):
                raise KeyFormatError(f"{path}: secret_key_b58 is not a string")
        try:
            pair = cls.from_secret_b58(secret)
        except KeyFormatError as exc:
            raise KeyFormatError(f"{path}: {exc}") from None
        claimed = doc.get("public_key_b58") if isinstance(doc, dict) else None
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
