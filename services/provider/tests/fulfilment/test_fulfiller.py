from __future__ import annotations

import base64
import hashlib
import io
import json
from decimal import Decimal
from typing import Any

import pytest
from pact_provider.config import ConfigError
from pact_provider.errors import SettlementUnavailable
from pact_provider.fulfilment.handlers import (
    FulfilmentRequest,
    demo_handlers,
    load_handler_book,
    weather_report,
)
from pact_provider.fulfilment.service import Fulfiller
from pact_provider.negotiation.service import SettledAgreement
from pact_provider.observability import make_logger
from pact_provider.settlement_client import SettlementRecord, SettlementRefused
from pact_schema import Keypair, parse_message, verify_envelope
from pact_schema.messages import Accept
from pact_schema.quote import QuoteTerms, quote_binding_fields, verify_carried_quote
from provider_testkit import NOW, PROVIDER, accept_message, signed


class RecordingSettlement:
    """Settlement double that checks what the provider signs and answers like the real API."""

    def __init__(self, *, fail_reveal: Exception | None = None, signer: Keypair = PROVIDER) -> None:
        self.signer = signer.public_key_b58
        self.calls: list[tuple[str, dict[str, Any], str]] = []
        self.fail_reveal = fail_reveal
        self.state = "locked"

    async def commit(
        self, intent_id: str, commit_envelope: dict[str, Any], *, idempotency_key: str
    ) -> SettlementRecord:
        verified = verify_envelope(commit_envelope)
        assert verified.signer == self.signer
        assert parse_message(verified.message_raw).type == "COMMIT"
        self.calls.append(("commit", commit_envelope, idempotency_key))
        self.state = "committed"
        return SettlementRecord("stl_1", self.state, "ledger", "0.00008", "0")

    async def reveal(
        self, intent_id: str, reveal_envelope: dict[str, Any], *, idempotency_key: str
    ) -> SettlementRecord:
        if self.fail_reveal is not None:
            raise self.fail_reveal
        verify_envelope(reveal_envelope)
        self.calls.append(("reveal", reveal_envelope, idempotency_key))
        self.state = "delivered"
        return SettlementRecord("stl_1", self.state, "ledger", "0.00008", "0")


def _agreement(state: str = "locked") -> SettledAgreement:
    buyer = Keypair(bytes([3] * 32))
    ask = {
        "protocol_version": "pact/1.0",
        "type": "ASK",
        "intent_id": "intent-fulfil-1",
        "price": 0.00008,
        "unit": "request",
        "latency_ms": 100,
        "valid_for_ms": 20_000,
        "bond_required": 0.00016,
        "sent_at_ms": NOW,
        "expires_at_ms": NOW + 20_000,
        **quote_binding_fields(
            buyer_key=buyer.public_key_b58,
            round_number=1,
            intent_type="weather.data",
            settlement_mode="hash_reveal",
            list_price=Decimal("0.00008"),
            scope={"city": "Zürich 🏔"},
        ),
    }
    accept_env = signed(accept_message(signed(ask, PROVIDER)), buyer)
    carrier = verify_envelope(accept_env)
    terms: QuoteTerms = verify_carried_quote(
        carrier, trusted_provider_keys={PROVIDER.public_key_b58}, now_ms=NOW
    )
    accept = carrier.parse()
    assert isinstance(accept, Accept)
    return SettledAgreement(
        accept=accept,
        accept_envelope=accept_env,
        terms=terms,
        settlement=SettlementRecord("stl_1", state, "ledger", format(terms.price, "f"), "0"),
    )


def _fulfiller(settlement: Any, keypair: Keypair = PROVIDER) -> Fulfiller:
    return Fulfiller(
        keypair=keypair,
        settlement=settlement,
        handlers=demo_handlers(),
        log=make_logger("ERROR", io.StringIO()),
    )


async def test_delivery_commits_then_reveals_a_payload_the_buyer_can_check() -> None:
    settlement = RecordingSettlement()
    extra = await _fulfiller(settlement)(_agreement())
    delivery = extra["delivery"]
    payload = base64.b64decode(delivery["payload_b64"])
    expected = hashlib.sha256((delivery["payload_b64"] + delivery["nonce_b64"]).encode())
    assert expected.hexdigest() == delivery["commit_hash_hex"]
    assert delivery["status"] == "delivered"
    assert extra["settlement"]["state"] == "delivered"
    assert [c[0] for c in settlement.calls] == ["commit", "reveal"]
    commit = settlement.calls[0][1]["message"]
    assert commit["commit_hash_hex"] == delivery["commit_hash_hex"]
    assert json.loads(payload)["scope"] == {"city": "Zürich 🏔"}


async def test_any_replica_makes_the_same_commitment_for_the_same_intent() -> None:
    first = await _fulfiller(RecordingSettlement())(_agreement())
    second = await _fulfiller(RecordingSettlement())(_agreement())
    assert first["delivery"]["commit_hash_hex"] == second["delivery"]["commit_hash_hex"]
    other = Keypair(bytes([5] * 32))
    other_key = await _fulfiller(RecordingSettlement(signer=other), other)(_agreement())
    assert other_key["delivery"]["nonce_b64"] != first["delivery"]["nonce_b64"]


async def test_a_replayed_accept_after_delivery_sends_nothing_again() -> None:
    settlement = RecordingSettlement()
    extra = await _fulfiller(settlement)(_agreement(state="delivered"))
    assert settlement.calls == []
    assert extra["delivery"]["status"] == "delivered"
    assert extra["settlement"]["state"] == "delivered"


async def test_a_committed_settlement_is_only_revealed() -> None:
    settlement = RecordingSettlement()
    await _fulfiller(settlement)(_agreement(state="committed"))
    assert [c[0] for c in settlement.calls] == ["reveal"]


@pytest.mark.parametrize(
    "failure",
    [
        SettlementUnavailable("settlement did not answer in time", retry_after_s=2),
        SettlementRefused("SETTLEMENT_FAILED", "state conflict", 409),
    ],
)
async def test_an_interrupted_delivery_is_reported_not_hidden(failure: Exception) -> None:
    extra = await _fulfiller(RecordingSettlement(fail_reveal=failure))(_agreement())
    assert extra["delivery"]["status"] == "incomplete"
    assert "resend the same ACCEPT" in extra["delivery"]["detail"]
    assert extra["settlement"]["state"] == "committed"


async def test_demo_weather_report_is_deterministic_per_scope() -> None:
    request = FulfilmentRequest("i-1", "weather.data", "NYC", "buyer")
    assert await weather_report(request) == await weather_report(request)
    other = FulfilmentRequest("i-1", "weather.data", "Paris", "buyer")
    assert await weather_report(request) != await weather_report(other)


def test_operator_handler_modules_are_checked_at_start() -> None:
    with pytest.raises(ConfigError, match="cannot import"):
        load_handler_book("no_such_module_for_pact")
    with pytest.raises(ConfigError, match="HANDLERS"):
        load_handler_book("decimal")  # importable, but it has no HANDLERS
