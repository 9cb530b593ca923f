"""Canonical JSON exactly as the reference SDK's JavaScript canonicaliser writes it.

RFC 8785 (the ``rfc8785`` package) does the serializing. Around it we handle the two places
where Python's view of a JSON document differs from JavaScript's:

* every JSON number is a double in JavaScript, so an integer literal beyond ±(2**53 - 1),
  which Python parses as an exact ``int``, is canonicalised as the double JavaScript reads;
* ``JSON.stringify`` escapes lone UTF-16 surrogates (``\\ud800``) where RFC 8785 refuses them.
"""

from __future__ import annotations

import hashlib
import json
import math
from functools import lru_cache
from typing import Any

import orjson
import rfc8785

__all__ = [
    "CanonicalJSONError",
    "JSONValue",
    "canonical_json",
    "dumps_compact",
    "parse_json",
    "sha256_hex",
]

JSONValue = Any
_MAX_SAFE_INT = 2**53 - 1
MAX_NESTING = 512
"""Deepest array/object nesting accepted (orjson's own limit is 1024)."""


class CanonicalJSONError(ValueError):
    """The value cannot be written as canonical JSON (NaN, Infinity, non-JSON types)."""


def _refuse_constant(name: str) -> float:
    raise CanonicalJSONError(f"{name} is not valid JSON")


def _nesting_depth(text: str | bytes) -> int:
    """Deepest bracket nesting outside strings (only for input orjson could not take)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def parse_json(data: str | bytes) -> JSONValue:
    """Parse JSON text the way the wire sees it, refusing NaN/Infinity and absurd nesting.

    Numbers stay as Python parsed them (``int`` or ``float``) so that a message can be hashed
    exactly as received; :func:`canonical_json` applies JavaScript's number semantics.
    orjson parses the common case (fast, nesting-limited). What it refuses but JSON allows
    (integers beyond 64 bits, escaped lone surrogates) goes to the standard library, after a
    nesting check: deep nesting can overflow the C stack of ``json`` and kill the process.
    """
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        if "recursion" in str(exc).lower():
            raise CanonicalJSONError(f"JSON nested deeper than {MAX_NESTING}") from exc
    if _nesting_depth(data) > MAX_NESTING:
        raise CanonicalJSONError(f"JSON nested deeper than {MAX_NESTING}")
    try:
        return json.loads(data, parse_constant=_refuse_constant)
    except RecursionError as exc:
        raise CanonicalJSONError("JSON nested too deeply") from exc


def _is_lone_surrogate(ch: str) -> bool:
    return 0xD800 <= ord(ch) <= 0xDFFF


def _has_lone_surrogate(text: str) -> bool:
    # An ASCII string has none: checked in C before the per-character scan.
    return not text.isascii() and any(_is_lone_surrogate(c) for c in text)


def _js_view(value: JSONValue, depth: int = 0) -> tuple[JSONValue, bool]:
    """Return ``value`` as JavaScript would hold it, and whether it has lone surrogates."""
    if depth > MAX_NESTING:
        raise CanonicalJSONError(f"JSON nested deeper than {MAX_NESTING}")
    if isinstance(value, bool) or value is None:
        return value, False
    if isinstance(value, int):
        return (float(value) if abs(value) > _MAX_SAFE_INT else value), False
    if isinstance(value, float):
        if not math.isfinite(value):
            raise CanonicalJSONError(f"{value} is not valid JSON")
        return value, False
    if isinstance(value, str):
        return value, _has_lone_surrogate(value)
    if isinstance(value, list | tuple):
        items = [_js_view(v, depth + 1) for v in value]
        return [v for v, _ in items], any(s for _, s in items)
    if isinstance(value, dict):
        out: dict[str, JSONValue] = {}
        surrogates = False
        for key, item in value.items():
            if not isinstance(key, str):
                raise CanonicalJSONError("object keys must be strings")
            out[key], inner = _js_view(item, depth + 1)
            surrogates = surrogates or inner or _has_lone_surrogate(key)
        return out, surrogates
    raise CanonicalJSONError(f"unsupported type in JSON value: {type(value).__name__}")


def _utf16_units(key: str) -> bytes:
    return key.encode("utf-16-be", "surrogatepass")


def _string_with_surrogates(text: str) -> bytes:
    parts: list[bytes] = []
    run: list[str] = []
    for ch in text:
        if _is_lone_surrogate(ch):
            if run:
                parts.append(rfc8785.dumps("".join(run))[1:-1])
                run = []
            parts.append(f"\\u{ord(ch):04x}".encode("ascii"))
        else:
            run.append(ch)
    if run:
        parts.append(rfc8785.dumps("".join(run))[1:-1])
    return b'"' + b"".join(parts) + b'"'


def _dump_with_surrogates(value: JSONValue) -> bytes:
    # Only reached for input holding lone surrogates, which RFC 8785 refuses but
    # JSON.stringify writes as lowercase escapes; scalars still go through rfc8785.
    if isinstance(value, str):
        return _string_with_surrogates(value)
    if isinstance(value, list):
        return b"[" + b",".join(_dump_with_surrogates(v) for v in value) + b"]"
    if isinstance(value, dict):
        members = sorted(value.items(), key=lambda kv: _utf16_units(kv[0]))
        return (
            b"{"
            + b",".join(
                _string_with_surrogates(k) + b":" + _dump_with_surrogates(v) for k, v in members
            )
            + b"}"
        )
    return bytes(rfc8785.dumps(value))


def _canonical_general(value: JSONValue, depth: int) -> bytes:
    """The definition: JavaScript's view of ``value``, then RFC 8785."""
    js_value, has_surrogates = _js_view(value, depth)
    if has_surrogates:
        return _dump_with_surrogates(js_value)
    try:
        return bytes(rfc8785.dumps(js_value))
    except rfc8785.CanonicalizationError as exc:
        raise CanonicalJSONError(str(exc)) from exc


def _plain_ascii(text: str) -> bool:
    """True when RFC 8785 writes ``text`` unescaped: printable ASCII without ``"`` and ``\\``."""
    return text.isascii() and text.isprintable() and '"' not in text and "\\" not in text


@lru_cache(maxsize=4096)
def _float_text(value: float) -> str:
    return _canonical_general(value, 0).decode("ascii")


def _general_text(value: JSONValue, depth: int) -> str:
    return _canonical_general(value, depth).decode("utf-8")


def _canonical_fast(value: JSONValue, depth: int) -> str:
    # Protocol messages are mostly ASCII keys, ASCII strings, safe integers and a few floats.
    # RFC 8785 writes an object as "{" + members sorted by key + "}" with no whitespace, so each
    # plain member can be written on its own, as text (encoded once, in canonical_json); the
    # common scalars of an object or array are written in its own loop, without a call each.
    # Anything else goes to the general path for that value alone. A property test holds both
    # paths byte-identical.
    if depth > MAX_NESTING:
        raise CanonicalJSONError(f"JSON nested deeper than {MAX_NESTING}")
    kind = type(value)
    if kind is dict:
        try:
            joined = "".join(value)  # every key a str, or TypeError
        except TypeError:
            return _general_text(value, depth)
        if not _plain_ascii(joined):  # the test is per character, so one call covers all keys
            return _general_text(value, depth)
        members = []
        for key in sorted(value):  # for ASCII keys, code point order is UTF-16 code unit order
            item = value[key]
            kind = type(item)
            if kind is str and _plain_ascii(item):
                members.append(f'"{key}":"{item}"')
            elif kind is int and -_MAX_SAFE_INT <= item <= _MAX_SAFE_INT:
                members.append(f'"{key}":{item}')
            else:
                members.append(f'"{key}":{_canonical_fast(item, depth + 1)}')
        return "{" + ",".join(members) + "}"
    if kind is str:
        return f'"{value}"' if _plain_ascii(value) else _general_text(value, depth)
    if kind is int:
        if -_MAX_SAFE_INT <= value <= _MAX_SAFE_INT:
            return str(value)
        return _general_text(value, depth)
    if kind is list:
        return "[" + ",".join([_canonical_fast(item, depth + 1) for item in value]) + "]"
    if kind is float:
        return _float_text(value)
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    return _general_text(value, depth)  # tuples, subclasses, unsupported types


def canonical_json(value: JSONValue) -> bytes:
    """UTF-8 bytes of ``value`` as the reference SDK canonicalises it."""
    try:
        return _canonical_fast(value, 0).encode("utf-8")
    except RecursionError as exc:
        raise CanonicalJSONError("value nested too deeply to canonicalise") from exc


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def dumps_compact(value: JSONValue) -> str:
    """Plain compact JSON for transport (not for hashing)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
