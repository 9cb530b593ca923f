"""Signing the provider's own replies, with a fast path for their canonical JSON.

``pact_schema.canonical_json`` is the definition of canonical JSON here (byte-exact with the
reference JavaScript SDK), and it is general: it walks every value to find what JavaScript
would see differently, then serialises with the pure-Python ``rfc8785``. The provider's replies
(ASK, REJECT, ACCEPT acknowledgement) are small objects of ASCII keys, ASCII strings, safe
integers and a few prices, signed on every message; for them this module writes the same bytes
by composition: RFC 8785 serialises an object as ``{`` + members sorted by key (UTF-16 code
units) + ``}`` with no whitespace, so each member can be written on its own. Anything outside the
plain cases (non-ASCII or escaped strings, non-ASCII keys, integers beyond 2**53 - 1, floats,
other types) is delegated to ``canonical_json`` for that value alone, and floats are memoised.
``signed_envelope`` then builds the envelope exactly as ``pact_schema.sign_message`` does.

Buyer messages are still verified with ``pact_schema.verify_envelope`` only.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import Any

from pact_schema import ENVELOPE_VERSION, Keypair, canonical_json
from pact_schema.keys import b58encode

__all__ = ["canonical_bytes", "signed_envelope"]

_MAX_SAFE_INT = 2**53 - 1


def _plain_ascii(text: str) -> bool:
    """True when RFC 8785 writes ``text`` unescaped: printable ASCII without ``"`` and ``\\``."""
    return text.isascii() and text.isprintable() and '"' not in text and "\\" not in text


@lru_cache(maxsize=4096)
def _float_bytes(value: float) -> bytes:
    return canonical_json(value)


def canonical_bytes(value: Any) -> bytes:
    """``pact_schema.canonical_json(value)``, faster for the provider's plain replies."""
    kind = type(value)
    if kind is str:
        text: str = value
        if _plain_ascii(text):
            return b'"' + text.encode("ascii") + b'"'
        return canonical_json(text)
    if kind is int:
        if -_MAX_SAFE_INT <= value <= _MAX_SAFE_INT:
            return str(value).encode("ascii")
        return canonical_json(value)
    if kind is dict:
        keys = list(value)
        if not all(type(k) is str and _plain_ascii(k) for k in keys):
            return canonical_json(value)
        # For ASCII keys, code point order is UTF-16 code unit order.
        keys.sort()
        return (
            b"{"
            + b",".join(b'"' + k.encode("ascii") + b'":' + canonical_bytes(value[k]) for k in keys)
            + b"}"
        )
    if kind is list:
        return b"[" + b",".join(canonical_bytes(item) for item in value) + b"]"
    if kind is float:
        return _float_bytes(value)
    if value is True:
        return b"true"
    if value is False:
        return b"false"
    if value is None:
        return b"null"
    return canonical_json(value)  # tuples, int/str subclasses, Decimal (refused), ...


def signed_envelope(message: dict[str, Any], keypair: Keypair, signed_at_ms: int) -> dict[str, Any]:
    """The envelope ``pact_schema.sign_message(message, keypair, signed_at_ms=...)`` returns."""
    digest = hashlib.sha256(canonical_bytes(message)).digest()
    return {
        "envelope_version": ENVELOPE_VERSION,
        "message": message,
        "message_hash_hex": digest.hex(),
        "signer_public_key_b58": keypair.public_key_b58,
        "signature_b58": b58encode(keypair.sign(digest)),
        "signed_at_ms": signed_at_ms,
    }
