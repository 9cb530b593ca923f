"""The provider's fast canonical JSON and envelope writer agree with pact_schema's byte for byte."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from pact_provider.signing import canonical_bytes, signed_envelope
from pact_schema import Keypair, canonical_json, sign_message, verify_envelope

PROVIDER = Keypair(bytes(range(33, 65)))
AWKWARD = ["\ud800", "a\udc00b", "\U0001f600", "\ue000", '"', "\\", "\x7f", "\n", "é", ""]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
    | st.text(alphabet=st.characters(max_codepoint=0x7F))
    | st.sampled_from(AWKWARD)
)
keys = st.text(max_size=6) | st.sampled_from([*AWKWARD, "a", "B", "_", "intent_id"])
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=5),
    max_leaves=20,
)


@settings(max_examples=500, deadline=None)
@given(values)
def test_canonical_bytes_is_canonical_json(value: Any) -> None:
    assert canonical_bytes(value) == canonical_json(value)


def test_signed_envelope_is_sign_message() -> None:
    message = {
        "protocol_version": "pact/1.0",
        "type": "ASK",
        "intent_id": "intent-é-\ud800",
        "price": 0.000096,
        "bond_required": 0.000192,
        "sent_at_ms": 1_800_000_000_000,
        "expires_at_ms": 1_800_000_020_000,
        "scope": {"city": "NYC", "tags": ["a", 1, 2.5, None, True]},
        "big": 2**60,
    }
    ours = signed_envelope(message, PROVIDER, 1_800_000_000_000)
    assert ours == sign_message(message, PROVIDER, signed_at_ms=1_800_000_000_000)
    assert verify_envelope(ours).signer == PROVIDER.public_key_b58
