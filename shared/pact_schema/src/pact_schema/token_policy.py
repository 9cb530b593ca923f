"""The minimum a bearer token must meet in production (both services apply it at start-up).

A token is refused when it

* is shorter than :data:`MIN_TOKEN_LENGTH` (32) characters;
* has less than :data:`MIN_TOKEN_BITS` (128) bits of estimated entropy: its length times the
  Shannon entropy of its own character frequencies, so ``"p" * 40`` has 0 bits, ``"ab" * 20``
  40 and ``secrets.token_urlsafe(32)`` about 200;
* is a shorter string repeated (``"0123456789abcdef" * 2``);
* contains a placeholder marker (``change-me``, ``replace``, ``example``, the documented
  development tokens, ...).

The estimate can only catch careless tokens, never prove a good one; generate tokens, e.g.
``python -c 'import secrets; print(secrets.token_urlsafe(32))'`` (43 characters) or
``openssl rand -hex 32``. Messages never quote the token.
"""

from __future__ import annotations

import math
from collections import Counter

__all__ = ["MIN_TOKEN_BITS", "MIN_TOKEN_LENGTH", "PLACEHOLDER_MARKERS", "token_weakness"]

MIN_TOKEN_LENGTH = 32
MIN_TOKEN_BITS = 128
PLACEHOLDER_MARKERS = (
    "change-me",
    "changeme",
    "replace",
    "placeholder",
    "example",
    "your-",
    "dev-settlement",
)
HOW_TO_MAKE_ONE = "generate one: python -c 'import secrets; print(secrets.token_urlsafe(32))'"


def estimated_bits(token: str) -> float:
    """Length times the Shannon entropy (bits per character) of the token's characters."""
    if not token:
        return 0.0
    total = len(token)
    per_char = -sum(n / total * math.log2(n / total) for n in Counter(token).values())
    return total * per_char


def _is_repetition(token: str) -> bool:
    """True when the token is a shorter string repeated (its smallest period divides it)."""
    return len(token) > 1 and token in (token + token)[1:-1]


def token_weakness(token: str) -> str | None:
    """Why ``token`` is too weak for production, or None when it meets the minimum."""
    lowered = token.lower()
    marker = next((m for m in PLACEHOLDER_MARKERS if m in lowered), None)
    if marker is not None:
        return f"it is a placeholder (contains {marker!r}); {HOW_TO_MAKE_ONE}"
    if len(token) < MIN_TOKEN_LENGTH:
        return f"it has {len(token)} characters, fewer than {MIN_TOKEN_LENGTH}; {HOW_TO_MAKE_ONE}"
    if _is_repetition(token):
        return f"it is a shorter string repeated; {HOW_TO_MAKE_ONE}"
    if estimated_bits(token) < MIN_TOKEN_BITS:
        return (
            f"its estimated entropy is below {MIN_TOKEN_BITS} bits (too few distinct "
            f"characters); {HOW_TO_MAKE_ONE}"
        )
    return None
