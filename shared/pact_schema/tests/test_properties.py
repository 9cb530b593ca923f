"""Property tests: sign → serialize → parse → verify holds; any single change breaks it."""

from __future__ import annotations

import json
from typing import Any

from fixtures.examples import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pact_schema.canonical import canonical_json, parse_json
from pact_schema.envelope import EnvelopeError, sign_message, verify_envelope
from pact_schema.keys import Keypair

KEY = Keypair(bytes(range(32)))

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**60), max_value=2**60)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
messages = st.fixed_dictionaries(
    {
        "protocol_version": st.just("pact/1.0"),
        "type": st.sampled_from(["INTENT", "ASK", "BID", "ACCEPT", "REJECT"]),
        "intent_id": st.text(min_size=1, max_size=20),
        "sent_at_ms": st.integers(min_value=0, max_value=2**50),
    },
    optional={"payload": json_values, "price": st.floats(min_value=1e-12, max_value=1e6)},
)


def _wire_roundtrip(envelope: dict[str, Any]) -> Any:
    # What a server receives: JSON text, parsed again (surrogates escaped for transport).
    return parse_json(json.dumps(envelope, ensure_ascii=True))


@settings(max_examples=examples(300), suppress_health_check=[HealthCheck.too_slow])
@given(messages)
def test_signed_envelopes_survive_the_wire_and_verify(message: dict[str, Any]) -> None:
    envelope = sign_message(message, KEY)
    received = _wire_roundtrip(envelope)
    assert verify_envelope(received).signer == KEY.public_key_b58
    assert canonical_json(received["message"]) == canonical_json(message)


def _mutations(message: dict[str, Any]) -> list[dict[str, Any]]:
    changed = []
    for key, value in message.items():
        replacement: Any
        if isinstance(value, str):
            replacement = value + "x"
        elif isinstance(value, bool):
            replacement = not value
        elif isinstance(value, int | float):
            replacement = value + 1 if abs(value) < 2**50 else value / 2
        else:
            replacement = [value]
        changed.append({**message, key: replacement})
        changed.append({k: v for k, v in message.items() if k != key})
    changed.append({**message, "extra_field": 0})
    return changed


@settings(max_examples=examples(150), suppress_health_check=[HealthCheck.too_slow])
@given(messages)
def test_any_single_field_change_breaks_verification(message: dict[str, Any]) -> None:
    envelope = sign_message(message, KEY)
    for mutated in _mutations(message):
        if canonical_json(mutated) == canonical_json(message):
            continue  # e.g. 1.0 vs 1 in JavaScript: the same bytes, so the same message
        forged = {**envelope, "message": mutated}
        try:
            verify_envelope(forged)
        except EnvelopeError:
            continue
        raise AssertionError(f"mutation verified: {mutated!r}")
