from __future__ import annotations

from typing import Any

import pytest
from fixtures.examples import examples
from hypothesis import given, settings
from hypothesis import strategies as st
from pact_schema.canonical import (
    CanonicalJSONError,
    _canonical_general,
    canonical_json,
    parse_json,
    sha256_hex,
)


def test_every_js_canonical_vector_matches_byte_for_byte(vectors: dict[str, Any]) -> None:
    cases = vectors["canonical"]
    assert len(cases) > 50
    for case in cases:
        value = parse_json(case["input_json"])
        produced = canonical_json(value)
        assert produced == case["canonical"].encode("utf-8", "surrogatepass"), case["name"]
        assert sha256_hex(produced) == case["sha256_hex"], case["name"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5.0", "5"),
        ("0.00008", "0.00008"),
        ("0.000001", "0.000001"),
        ("1e-7", "1e-7"),
        ("1e21", "1e+21"),
        ("1e20", "100000000000000000000"),
        ("-0", "0"),
        ("-0.0", "0"),
        ("12345678901234567890", "12345678901234567000"),
        ("9007199254740993", "9007199254740992"),
        ("999999999999999999999", "1e+21"),
    ],
)
def test_numbers_are_written_as_javascript_writes_them(text: str, expected: str) -> None:
    assert canonical_json(parse_json(text)) == expected.encode()


def test_keys_sort_by_utf16_code_units_not_code_points() -> None:
    # U+FF61 is above the surrogate range as a code point but below it as a UTF-16 unit.
    value = {"\U0001f600": 1, "\uff61": 2}
    assert canonical_json(value) == '{"\U0001f600":1,"\uff61":2}'.encode()


def test_lone_surrogates_are_escaped_like_json_stringify() -> None:
    value = parse_json('{"k\\udc00": "a\\ud800b", "a": ["\\udfff"]}')
    assert canonical_json(value) == b'{"a":["\\udfff"],"k\\udc00":"a\\ud800b"}'


@pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity", '{"a": NaN}'])
def test_non_finite_numbers_are_refused_when_parsing(text: str) -> None:
    with pytest.raises(CanonicalJSONError):
        parse_json(text)


def test_non_json_values_are_refused() -> None:
    with pytest.raises(CanonicalJSONError):
        canonical_json({"a": float("nan")})
    with pytest.raises(CanonicalJSONError):
        canonical_json({"a": object()})
    with pytest.raises(CanonicalJSONError):
        canonical_json({1: "x"})


@pytest.mark.parametrize(
    "text",
    [b"[" * 100_000, b'{"a":' * 100_000, b"[1e999999," + b"[" * 100_000, b"[" * 600 + b"]" * 600],
)
def test_absurd_nesting_is_refused_without_crashing_the_process(text: bytes) -> None:
    # The stdlib C parser can overflow the C stack on deep nesting when the recursion limit
    # has been raised (as some libraries do); this must stay a clean error.
    import sys

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(1_000_000)
    try:
        with pytest.raises(CanonicalJSONError):
            canonical_json(parse_json(text))
    finally:
        sys.setrecursionlimit(limit)


def test_json_that_orjson_refuses_but_javascript_reads_still_parses() -> None:
    assert parse_json(b'[12345678901234567890123, "\\ud800"]') == [
        12345678901234567890123,
        "\ud800",
    ]


_AWKWARD = ["\ud800", "a\udc00b", "\U0001f600", "\ue000", '"', "\\", "\x7f", "\n", "é", ""]
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
    | st.text(alphabet=st.characters(max_codepoint=0x7F))
    | st.sampled_from(_AWKWARD)
)
_keys = st.text(max_size=6) | st.sampled_from([*_AWKWARD, "a", "B", "_", "intent_id"])
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_keys, inner, max_size=5),
    max_leaves=20,
)


@settings(max_examples=examples(500), deadline=None)
@given(_values)
def test_the_fast_path_writes_exactly_what_the_general_path_writes(value: Any) -> None:
    assert canonical_json(value) == _canonical_general(value, 0)
