"""Prefixed, time-ordered identifiers (``st_01JD…``): 48-bit ms clock + 80 random bits."""

from __future__ import annotations

import re
import secrets
from typing import Final

from pact_schema.clock import now_ms

__all__ = ["SETTLEMENT_ID_PATTERN", "is_our_id", "new_id"]

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case
#: What ``new_id("st")`` makes. An intent id may have this shape too; a URL segment naming an
#: existing settlement id is read as that settlement (``settlements/lookup.py``).
SETTLEMENT_ID_PATTERN: Final = r"st_[0-9a-hjkmnp-tv-z]{26}"
_ID_RE: Final = re.compile(r"[a-z]{1,16}_[0-9a-hjkmnp-tv-z]{26}")


def _b32(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        value, rem = divmod(value, 32)
        chars.append(_ALPHABET[rem])
    return "".join(reversed(chars))


def new_id(prefix: str) -> str:
    """``{prefix}_`` + 26 base32 chars; sorts by creation time (ms). Real time, not the
    service's clock: a test that winds its clock back must not reorder the ids it makes."""
    ms = now_ms()
    return f"{prefix}_{_b32(ms, 10)}{_b32(secrets.randbits(80), 16)}"


def is_our_id(value: object) -> bool:
    """True when ``value`` has the shape :func:`new_id` makes (so it may name a row)."""
    return isinstance(value, str) and value.isascii() and _ID_RE.fullmatch(value) is not None
