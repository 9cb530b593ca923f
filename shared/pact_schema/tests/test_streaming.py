"""Streaming messages and rules: wire-exact with the JS model, hostile vouchers refused."""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pact_schema import (
    FailureCode,
    Keypair,
    StreamChunk,
    StreamStart,
    StreamStop,
    StreamVoucher,
    parse_message,
    sign_message,
    verify_envelope,
)
from pact_schema.money import decimal_to_wire
from pact_schema.streaming import (
    ChunkChecker,
    SpendCap,
    StreamFailureError,
    StreamTerms,
    amount_for_ticks,
    sign_voucher,
    verify_voucher,
)


def _by_name(vectors: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e["envelope"] for e in vectors["envelopes"]}


def _keypair(vectors: dict[str, Any], name: str) -> Keypair:
    signer = next(s for s in vectors["signers"] if s["name"] == name)
    return Keypair(bytes.fromhex(signer["seed_hex"]))


def _terms(vectors: dict[str, Any], budget: str = "0.05") -> StreamTerms:
    return StreamTerms(
        intent_id="intent-stream-1",
        buyer=_keypair(vectors, "buyer").public_key_b58,
        seller=_keypair(vectors, "seller").public_key_b58,
        budget=Decimal(budget),
    )


def test_the_js_stream_messages_parse_with_the_reference_field_names(
    vectors: dict[str, Any],
) -> None:
    envelopes = _by_name(vectors)
    start = parse_message(envelopes["stream_start"]["message"])
    chunk = parse_message(envelopes["stream_chunk"]["message"])
    stop = parse_message(envelopes["stream_stop"]["message"])
    voucher = parse_message(envelopes["stream_voucher"]["message"])
    assert isinstance(start, StreamStart)
    assert start.tick_ms == 100
    assert start.agreed_price == Decimal("0.05")
    assert isinstance(chunk, StreamChunk)
    assert (chunk.seq, chunk.chunk_b64) == (0, "AA==")
    assert isinstance(stop, StreamStop)
    assert stop.by == "buyer"
    assert isinstance(voucher, StreamVoucher)
    assert (voucher.ticks, voucher.paid_amount, voucher.seq) == (3, Decimal("0.003"), 3)


def test_our_voucher_is_byte_for_byte_the_js_models(vectors: dict[str, Any]) -> None:
    theirs = _by_name(vectors)["stream_voucher"]
    message = theirs["message"]
    ours = sign_voucher(
        _keypair(vectors, "buyer"),
        intent_id=message["intent_id"],
        seller=message["seller_agent_id"],
        ticks=message["ticks"],
        paid_amount=Decimal("0.003"),
        seq=message["seq"],
        sent_at_ms=message["sent_at_ms"],
    )
    assert ours == theirs


def test_our_stream_envelopes_verify_in_javascript(vectors: dict[str, Any], js_verify: Any) -> None:
    buyer = _keypair(vectors, "buyer")
    seller = _keypair(vectors, "seller")
    ours = [
        sign_voucher(
            buyer,
            intent_id="intent-ünïcode-😀",
            seller=seller.public_key_b58,
            ticks=1000,
            paid_amount=amount_for_ticks(Decimal("0.07"), 3, 1),
            seq=999,
            sent_at_ms=1,
        ),
        sign_message(_by_name(vectors)["stream_chunk"]["message"], seller),
    ]
    assert [r["ok"] for r in js_verify(ours)] == [True, True]


def test_the_js_voucher_verifies_against_its_stream(vectors: dict[str, Any]) -> None:
    verified = verify_voucher(_by_name(vectors)["stream_voucher"], _terms(vectors))
    assert verified.paid_amount == Decimal("0.003")


@pytest.mark.parametrize(
    ("change", "detail"),
    [
        ("budget", "above the budget"),
        ("signer", "not signed by this stream's buyer"),
        ("intent", "another intent"),
        ("seller", "another seller"),
        ("tampered", "hash_mismatch"),
    ],
)
def test_hostile_vouchers_are_refused(vectors: dict[str, Any], change: str, detail: str) -> None:
    buyer = _keypair(vectors, "buyer")
    seller = _keypair(vectors, "seller")
    terms = _terms(vectors)
    args: dict[str, Any] = {
        "intent_id": terms.intent_id,
        "seller": terms.seller,
        "ticks": 5,
        "paid_amount": Decimal("0.005"),
        "seq": 5,
        "sent_at_ms": 10,
    }
    signer = buyer
    if change == "budget":
        args["paid_amount"] = Decimal("0.0500001")
    elif change == "signer":
        signer = seller  # the seller forging the buyer's promise
    elif change == "intent":
        args["intent_id"] = "intent-other"
    elif change == "seller":
        args["seller"] = buyer.public_key_b58
    voucher = sign_voucher(signer, **args)
    if change == "tampered":
        voucher = copy.deepcopy(voucher)
        voucher["message"]["paid_amount"] = 0.05
    with pytest.raises(StreamFailureError) as caught:
        verify_voucher(voucher, terms)
    assert caught.value.code == FailureCode.VOUCHER_INVALID
    assert detail in caught.value.detail


def _chunk(seller: Keypair, seq: int, *, intent: str = "i-1", at: int = 0) -> dict[str, Any]:
    return sign_message(
        {
            "protocol_version": "pact/1.0",
            "type": "STREAM_CHUNK",
            "intent_id": intent,
            "seq": seq,
            "chunk_b64": "AA==",
            "sent_at_ms": at,
            "expires_at_ms": at + 10_000,
        },
        seller,
    )


def test_chunks_in_order_pass_and_a_gap_fails_with_failed_policy() -> None:
    seller = Keypair.generate()
    checker = ChunkChecker(intent_id="i-1", seller=seller.public_key_b58)
    for seq in range(3):
        assert checker.check(_chunk(seller, seq), now_ms=1).seq == seq
    with pytest.raises(StreamFailureError) as caught:
        checker.check(_chunk(seller, 4), now_ms=1)
    assert caught.value.code == FailureCode.FAILED_POLICY
    assert "expected 3, got 4" in caught.value.detail


@pytest.mark.parametrize("fault", ["other_signer", "bad_signature", "other_intent", "expired"])
def test_bad_chunks_end_the_stream_with_the_reference_codes(fault: str) -> None:
    seller = Keypair.generate()
    checker = ChunkChecker(intent_id="i-1", seller=seller.public_key_b58)
    now = 1
    chunk = _chunk(seller, 0)
    expected = FailureCode.PROVIDER_SIGNATURE_INVALID
    if fault == "other_signer":
        chunk = _chunk(Keypair.generate(), 0)
    elif fault == "bad_signature":
        chunk["message"]["chunk_b64"] = "AQ=="
        chunk["message_hash_hex"] = verify_envelope(_chunk(seller, 0)).envelope.message_hash_hex
    elif fault == "other_intent":
        chunk = _chunk(seller, 0, intent="i-2")
        expected = FailureCode.FAILED_POLICY
    else:
        now = 20_000
        expected = FailureCode.FAILED_NEGOTIATION_TIMEOUT
    with pytest.raises(StreamFailureError) as caught:
        checker.check(chunk, now_ms=now)
    assert caught.value.code == expected


def test_the_spend_cap_is_a_rolling_minute() -> None:
    cap = SpendCap(Decimal("0.3"))
    for at in (0, 10_000, 20_000):
        cap.check(Decimal("0.1"), at)
        cap.record(Decimal("0.1"), at)
    with pytest.raises(StreamFailureError) as caught:
        cap.check(Decimal("0.1"), 30_000)
    assert caught.value.code == FailureCode.STREAMING_SPEND_CAP_EXCEEDED
    cap.check(Decimal("0.1"), 60_001)  # the first spend left the window


@given(
    budget=st.decimals(min_value=Decimal("0.00000001"), max_value=Decimal(1_000_000), places=8),
    planned=st.integers(min_value=1, max_value=100_000),
    ticks=st.integers(min_value=0, max_value=200_000),
)
def test_tick_prices_are_monotonic_capped_and_exact_on_the_wire(
    budget: Decimal, planned: int, ticks: int
) -> None:
    amount = amount_for_ticks(budget, planned, ticks)
    assert Decimal(0) <= amount <= budget
    assert amount_for_ticks(budget, planned, ticks + 1) >= amount
    if ticks >= planned:
        assert amount == budget
    assert Decimal(repr(decimal_to_wire(amount))) == amount
