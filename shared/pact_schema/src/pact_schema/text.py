"""What text the wire accepts: intent ids, and strings that are safe to store.

Both are part of the wire contract (see the root README, "Wire contract"):

* an **intent id** names a negotiation in every message, in settlement URLs and in database
  keys: 1 to 128 characters from ``A-Z a-z 0-9 . _ : -``, starting with a letter or digit. That
  is every id the reference SDK makes (UUIDs, ``intent-<uuid>``) and nothing that could be a
  path (``/``, ``..`` segments), whitespace, a control character or non-ASCII.
* **storable text** is any other string of a message (``scope``, ``reason``, keys and values of
  objects, at any depth): no NUL (``U+0000``, which PostgreSQL ``text`` refuses) and no lone
  UTF-16 surrogate (not Unicode: no UTF-8 encoder writes it, so neither the database nor a JSON
  writer can take it). JavaScript can put both in a string; they are refused where a message is
  parsed, before anything is stored or echoed.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Final, TypeGuard

from pydantic import AfterValidator, StringConstraints

__all__ = [
    "INTENT_ID_MAX_LENGTH",
    "INTENT_ID_PATTERN",
    "IntentId",
    "StorableText",
    "UnsafeTextError",
    "check_storable",
    "check_storable_text",
    "is_intent_id",
]

INTENT_ID_MAX_LENGTH: Final = 128
INTENT_ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._:-]*$"
_INTENT_ID_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]*")
_MAX_DEPTH: Final = 600  # deeper than any JSON parse_json accepts (512)


class UnsafeTextError(ValueError):
    """A string cannot be stored or echoed: it holds NUL or a lone UTF-16 surrogate."""


def is_intent_id(value: object) -> TypeGuard[str]:
    """True when ``value`` is a string of the intent id alphabet and length."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= INTENT_ID_MAX_LENGTH
        and value.isascii()
        and _INTENT_ID_RE.fullmatch(value) is not None
    )


IntentId = Annotated[
    str,
    StringConstraints(
        strict=True, min_length=1, max_length=INTENT_ID_MAX_LENGTH, pattern=INTENT_ID_PATTERN
    ),
]
"""A negotiation's id: 1 to 128 characters of ``[A-Za-z0-9._:-]``, the first a letter or digit."""


def _unsafe_reason(text: str) -> str | None:
    if "\x00" in text:
        return "contains NUL (U+0000)"
    if not text.isascii():
        for ch in text:
            if 0xD800 <= ord(ch) <= 0xDFFF:
                return f"contains a lone UTF-16 surrogate (U+{ord(ch):04X})"
    return None


def check_storable_text(text: str) -> str:
    """``text`` when it is safe to store and echo, else :class:`UnsafeTextError`."""
    reason = _unsafe_reason(text)
    if reason is not None:
        raise UnsafeTextError(f"text {reason}")
    return text


StorableText = Annotated[str, AfterValidator(check_storable_text)]
"""A string without NUL and without lone surrogates (see the module docstring)."""


def check_storable(value: Any, where: str = "", depth: int = 0) -> None:
    """Refuse (:class:`UnsafeTextError`, naming the path) any string in a JSON value, keys
    included, that is not storable text. Non-string scalars are left alone."""
    if isinstance(value, str):
        reason = _unsafe_reason(value)
        if reason is not None:
            raise UnsafeTextError(f"{where or 'value'}: text {reason}")
    elif isinstance(value, dict):
        if depth > _MAX_DEPTH:
            raise UnsafeTextError(f"{where or 'value'}: nested too deeply")
        for key, item in value.items():
            path = f"{where}.{key}" if where else str(key)
            if isinstance(key, str):
                reason = _unsafe_reason(key)
                if reason is not None:
                    raise UnsafeTextError(f"{where or 'object'}: a key {reason}")
            if isinstance(item, str | dict | list):
                check_storable(item, path, depth + 1)
    elif isinstance(value, list):
        if depth > _MAX_DEPTH:
            raise UnsafeTextError(f"{where or 'value'}: nested too deeply")
        for index, item in enumerate(value):
            if isinstance(item, str | dict | list):
                check_storable(item, f"{where}[{index}]", depth + 1)
