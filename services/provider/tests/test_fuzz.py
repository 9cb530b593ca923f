"""Fuzzing ``POST /pact`` with hypothesis: nothing a client sends produces a 5xx.

Three layers: arbitrary bytes and JSON; envelope fields mutated around a valid signature; and
correctly *signed* messages built from the OpenAPI request examples with fields replaced or
removed, which must always get a verifiable, schema-valid signed reply. The values include the
hostile classes of issue 12 (NUL, lone surrogates, path-like and non-ASCII ids, keys with
whitespace, huge and tiny numbers), and every signed reply must itself keep the wire contract.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from fixtures.examples import examples
from fixtures.provider import (
    BUYER,
    NOW,
    PROVIDER,
    FakeClock,
    FakeSettlement,
    Provider,
    Scripted,
    accept_message,
    bid_message,
    body,
    intent_message,
    reject_message,
    running_provider,
    signed,
)
from fixtures.provider import settings as provider_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pact_schema import parse_message, verify_envelope

FUZZ = settings(
    max_examples=examples(250),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# The input classes of issue 12: text a database or a JSON writer cannot take (NUL, lone
# surrogates), ids that are paths or whitespace, non-ASCII digits, keys with whitespace, and
# numbers at and beyond every limit (what 1e-400 and -0 parse to, 1e308, beyond 2**64).
hostile_text = st.sampled_from(
    [
        "\x00",
        "a\x00b",
        "\ud800",
        "x\udfffy",
        "../etc/passwd",
        "a/b",
        "..",
        " intent-1",
        "intent-1\n",
        "\u0661\u0662",
        "\uff11\uff12",
        "1_000",
        "NaN",
        "Infinity",
        PROVIDER.public_key_b58 + "\n",
        "1" + PROVIDER.public_key_b58,
        "z" * 2_000,
        "\u202e\u0000",
    ]
) | st.text(st.characters(codec=None, exclude_categories=()), max_size=12)
hostile_numbers = st.sampled_from(
    [1e308, -1e308, 1e20, 9.99e19, 5e-324, 0.0, -0.0, 2**64, 2**80, -(2**63), 1e-19]
)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | hostile_text
    | hostile_numbers
    | st.sampled_from(
        [NOW, NOW + 1, NOW - 10**9, 0, -1, 2**53 + 1, 1e-7, 0.00008, 5.0, "pact/1.0", "", "INTENT"]
    )
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = [
    "protocol_version",
    "type",
    "intent_id",
    "intent",
    "scope",
    "constraints",
    "max_price",
    "settlement_mode",
    "urgent",
    "sent_at_ms",
    "expires_at_ms",
    "price",
    "unit",
    "latency_ms",
    "valid_for_ms",
    "bond_required",
    "agreed_price",
    "proof_type",
    "challenge_window_ms",
    "delivery_deadline_ms",
    "reason",
    "code",
    "quote",
]
mutation = st.tuples(st.sampled_from(FIELDS), st.one_of(st.just(...), json_values))


@contextmanager
def provider_loop() -> Iterator[tuple[Callable[[Any], Any], Provider, FakeSettlement]]:
    """A provider app and an event loop kept open across hypothesis examples."""
    settlement = FakeSettlement()
    with asyncio.Runner() as runner:
        manager = running_provider(
            provider_settings(lenient_accept=True),
            clock=FakeClock(NOW),
            settlement=settlement,
        )
        provider = runner.run(manager.__aenter__())
        try:
            yield runner.run, provider, settlement
        finally:
            runner.run(manager.__aexit__(None, None, None))


def _assert_answered(response: httpx.Response, *, settlement_down: bool = False) -> None:
    if settlement_down and response.status_code == 503:
        assert response.json()["code"] == "SETTLEMENT_UNAVAILABLE"
        assert response.headers["retry-after"].isdigit()
        return
    assert response.status_code < 500, response.text
    if response.status_code == 200:
        reply = verify_envelope(response.json())
        assert reply.signer == PROVIDER.public_key_b58
        parse_message(reply.message_raw)
    else:
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["status"] == response.status_code


def test_arbitrary_bodies_never_cause_a_5xx() -> None:
    with provider_loop() as (run, provider, _):

        @FUZZ
        @given(st.one_of(st.binary(max_size=300), json_values.map(lambda v: body(v))))
        def check(raw: bytes) -> None:
            response = run(
                provider.http.post(
                    "/pact", content=raw, headers={"content-type": "application/json"}
                )
            )
            _assert_answered(response)

        check()


def test_mutated_envelopes_never_cause_a_5xx() -> None:
    envelope_fields = [
        "envelope_version",
        "message",
        "message_hash_hex",
        "signer_public_key_b58",
        "signature_b58",
        "signed_at_ms",
    ]
    with provider_loop() as (run, provider, _):
        valid = signed(intent_message(NOW))

        @FUZZ
        @given(
            st.lists(
                st.tuples(st.sampled_from(envelope_fields), st.one_of(st.just(...), json_values)),
                min_size=1,
                max_size=3,
            )
        )
        def check(changes: list[tuple[str, Any]]) -> None:
            envelope = dict(valid)
            for name, value in changes:
                if value is ...:
                    envelope.pop(name, None)
                else:
                    envelope[name] = value
            _assert_answered(run(provider.post(envelope)))

        check()


def test_signed_messages_with_arbitrary_fields_get_signed_valid_replies() -> None:
    with provider_loop() as (run, provider, settlement):
        ask = run(provider.post(signed(intent_message(NOW)))).json()
        openapi = run(provider.http.get("/openapi.json")).json()
        examples = openapi["paths"]["/pact"]["post"]["requestBody"]["content"]["application/json"][
            "examples"
        ]
        templates = [
            intent_message(NOW),
            bid_message(ask, 0.00007, NOW),
            accept_message(ask, NOW),
            accept_message(None, NOW),
            reject_message(NOW),
            *(e["value"]["message"] for e in examples.values()),
        ]

        @FUZZ
        @given(
            st.sampled_from(templates),
            st.lists(mutation, max_size=3),
            st.sampled_from([None, 500, 402, 409]),
        )
        def check(
            template: dict[str, Any], changes: list[tuple[str, Any]], status: int | None
        ) -> None:
            message = json.loads(json.dumps(template))
            for name, value in changes:
                if value is ...:
                    message.pop(name, None)
                else:
                    message[name] = value
            settlement.script[:] = (
                [] if status is None else [Scripted(status, {"code": "INSUFFICIENT_ESCROW"})] * 3
            )
            response = run(provider.post(signed(message, BUYER)))
            _assert_answered(response, settlement_down=status == 500)
            if response.status_code != 503:
                assert response.status_code == 200, response.text

        check()
