from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
from decimal import Decimal
from typing import Any

import pytest
from fixtures.provider import NOW, PROVIDER, accept_message, signed
from pact_provider.config import ConfigError
from pact_provider.errors import SettlementUnavailableError
from pact_provider.fulfilment.committed import (
    CommittedPayloads,
    InMemoryCommittedPayloads,
    RedisCommittedPayloads,
)
from pact_provider.fulfilment.handlers import (
    FulfilmentError,
    FulfilmentRequest,
    HandlerBook,
    demo_handlers,
    load_handler_book,
    weather_report,
)
from pact_provider.fulfilment.service import Fulfiller
from pact_provider.negotiation.service import SettledAgreement
from pact_provider.observability import make_logger
from pact_provider.settlement_client import SettlementRecord, SettlementRefusedError
from pact_schema import Keypair, commit_hash_hex, parse_message, verify_envelope
from pact_schema.messages import Accept
from pact_schema.quote import QuoteTerms, quote_binding_fields, verify_carried_quote


class RecordingSettlement:
    """Settlement double that checks what the provider signs and answers like the real API:
    a REVEAL that proves the COMMIT → ``delivered``, a late one → ``refunded``."""

    def __init__(
        self,
        *,
        fail_reveal: Exception | None = None,
        signer: Keypair = PROVIDER,
        reveal_state: str = "delivered",
    ) -> None:
        self.signer = signer.public_key_b58
        self.calls: list[tuple[str, dict[str, Any], str]] = []
        self.fail_reveal = fail_reveal
        self.reveal_state = reveal_state
        self.state = "locked"
        self.commit_hash: str | None = None

    def _record(self) -> SettlementRecord:
        return SettlementRecord(
            "st_1", self.state, "ledger", "0.00008", "0", commit_hash_hex=self.commit_hash
        )

    def _seen(self, kind: str, envelope: dict[str, Any], key: str) -> dict[str, Any]:
        verified = verify_envelope(envelope)
        assert verified.signer == self.signer
        message = verified.message_raw
        assert parse_message(message).type == kind
        self.calls.append((kind.lower(), envelope, key))
        return message

    async def commit(
        self, settlement_id: str, commit_envelope: dict[str, Any], *, idempotency_key: str
    ) -> SettlementRecord:
        self.commit_hash = self._seen("COMMIT", commit_envelope, idempotency_key)["commit_hash_hex"]
        self.state = "committed"
        return self._record()

    async def reveal(
        self, settlement_id: str, reveal_envelope: dict[str, Any], *, idempotency_key: str
    ) -> SettlementRecord:
        if self.fail_reveal is not None:
            raise self.fail_reveal
        message = self._seen("REVEAL", reveal_envelope, idempotency_key)
        assert self.commit_hash == commit_hash_hex(message["payload_b64"], message["nonce_b64"])
        self.state = self.reveal_state
        return self._record()

    async def abort(
        self, settlement_id: str, abort_envelope: dict[str, Any], *, idempotency_key: str
    ) -> SettlementRecord:
        self._seen("REJECT", abort_envelope, idempotency_key)
        self.state = "refunded"
        return self._record()

    async def find(self, buyer_key: str | None, intent_id: str) -> SettlementRecord | None:
        return self._record()


def _agreement(
    state: str = "locked",
    *,
    intent_type: str = "weather.data",
    commit_hash: str | None = None,
    time_to_deliver: bool = True,
) -> SettledAgreement:
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
            intent_type=intent_type,
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
        settlement=SettlementRecord(
            "st_1", state, "ledger", format(terms.price, "f"), "0", commit_hash_hex=commit_hash
        ),
        time_to_deliver=time_to_deliver,
    )


def _fulfiller(
    settlement: Any, keypair: Keypair = PROVIDER, handlers: HandlerBook | None = None
) -> Fulfiller:
    return Fulfiller(
        keypair=keypair,
        settlement=settlement,
        handlers=handlers or demo_handlers(),
        log=make_logger("ERROR", io.StringIO()),
        clock=lambda: NOW,
        handler_timeout_s=1.0,
    )


async def test_delivery_commits_then_reveals_and_hands_over_a_payload_the_buyer_can_check() -> None:
    settlement = RecordingSettlement()
    delivery = await _fulfiller(settlement)(_agreement())
    assert delivery.refusal is None
    assert delivery.settlement.state == "delivered"
    report = dict(delivery.report or {})
    assert report["status"] == "delivered"
    expected = hashlib.sha256((report["payload_b64"] + report["nonce_b64"]).encode())
    assert expected.hexdigest() == report["commit_hash_hex"]
    assert [c[0] for c in settlement.calls] == ["commit", "reveal"]
    commit = settlement.calls[0][1]["message"]
    assert commit["commit_hash_hex"] == report["commit_hash_hex"]
    assert commit["sent_at_ms"] == NOW  # the injected clock, not the wall clock
    payload = base64.b64decode(report["payload_b64"])
    assert json.loads(payload)["scope"] == {"city": "Zürich 🏔"}


async def test_any_replica_makes_the_same_commitment_for_the_same_intent() -> None:
    first = await _fulfiller(RecordingSettlement())(_agreement())
    second = await _fulfiller(RecordingSettlement())(_agreement())
    assert first.report is not None
    assert second.report is not None
    assert first.report["commit_hash_hex"] == second.report["commit_hash_hex"]
    other = Keypair(bytes([5] * 32))
    other_key = await _fulfiller(RecordingSettlement(signer=other), other)(_agreement())
    assert other_key.report is not None
    assert other_key.report["nonce_b64"] != first.report["nonce_b64"]


async def test_a_resent_accept_after_delivery_sends_nothing_and_hands_the_payload_again() -> None:
    original = await _fulfiller(RecordingSettlement())(_agreement())
    assert original.report is not None
    settlement = RecordingSettlement()
    again = await _fulfiller(settlement)(
        _agreement("delivered", commit_hash=original.report["commit_hash_hex"])
    )
    assert settlement.calls == []
    assert again.report == original.report


async def test_a_committed_settlement_is_only_revealed() -> None:
    original = await _fulfiller(RecordingSettlement())(_agreement())
    assert original.report is not None
    settlement = RecordingSettlement()
    settlement.commit_hash = original.report["commit_hash_hex"]
    await _fulfiller(settlement)(
        _agreement("committed", commit_hash=original.report["commit_hash_hex"])
    )
    assert [c[0] for c in settlement.calls] == ["reveal"]


async def test_no_payload_while_the_lock_is_pending() -> None:
    settlement = RecordingSettlement()
    delivery = await _fulfiller(settlement)(_agreement("pending"))
    assert settlement.calls == []
    assert delivery.report is not None
    assert delivery.report["status"] == "pending"
    assert "payload_b64" not in delivery.report
    assert "nonce_b64" not in delivery.report


async def test_no_payload_when_settlement_ends_the_trade_at_the_reveal() -> None:
    """A REVEAL past the deadline is refunded by settlement: the buyer gets no goods."""
    delivery = await _fulfiller(RecordingSettlement(reveal_state="refunded"))(_agreement())
    assert delivery.settlement.state == "refunded"
    assert delivery.report is None


@pytest.mark.parametrize(
    "failure",
    [
        SettlementUnavailableError("settlement did not answer in time", retry_after_s=2),
    ],
)
async def test_an_unreachable_settlement_mid_delivery_is_a_retryable_503(
    failure: Exception,
) -> None:
    with pytest.raises(SettlementUnavailableError):
        await _fulfiller(RecordingSettlement(fail_reveal=failure))(_agreement())


async def test_a_refused_reveal_calls_the_trade_off_and_releases_no_payload() -> None:
    settlement = RecordingSettlement(
        fail_reveal=SettlementRefusedError("SETTLEMENT_FAILED", "state conflict", 409)
    )
    delivery = await _fulfiller(settlement)(_agreement())
    assert [c[0] for c in settlement.calls] == ["commit", "reject"]
    assert delivery.settlement.state == "refunded"
    assert delivery.refusal is not None
    assert delivery.refusal[0] == "FULFILMENT_FAILED"
    assert delivery.report is None


async def _broken(request: FulfilmentRequest) -> bytes:
    raise RuntimeError("upstream answered 503")


async def _slow(request: FulfilmentRequest) -> bytes:
    await asyncio.Event().wait()  # never answers: the handler timeout must end it
    return b""


@pytest.mark.parametrize("handler", [_broken, _slow])
async def test_a_failing_handler_calls_the_trade_off_at_once(handler: Any) -> None:
    settlement = RecordingSettlement()
    book = HandlerBook(handlers={"weather.data": handler})
    delivery = await _fulfiller(settlement, handlers=book)(_agreement())
    assert [c[0] for c in settlement.calls] == ["reject"]
    abort = settlement.calls[0][1]["message"]
    assert abort["code"] == "FULFILMENT_FAILED"
    assert delivery.refusal is not None
    assert delivery.refusal[0] == "FULFILMENT_FAILED"
    assert delivery.settlement.state == "refunded"


async def test_an_intent_nothing_delivers_is_called_off_not_left_locked() -> None:
    settlement = RecordingSettlement()
    book = HandlerBook(handlers={"weather.data": weather_report})
    delivery = await _fulfiller(settlement, handlers=book)(_agreement(intent_type="other.thing"))
    assert [c[0] for c in settlement.calls] == ["reject"]
    assert delivery.settlement.state == "refunded"


async def test_a_locked_trade_with_no_time_left_is_called_off_with_its_code() -> None:
    settlement = RecordingSettlement()
    delivery = await _fulfiller(settlement)(_agreement(time_to_deliver=False))
    assert [c[0] for c in settlement.calls] == ["reject"]
    assert settlement.calls[0][1]["message"]["code"] == "DELIVERY_WINDOW_TOO_SHORT"
    assert delivery.refusal is not None
    assert delivery.refusal[0] == "DELIVERY_WINDOW_TOO_SHORT"


async def test_a_commitment_the_handler_can_no_longer_match_is_called_off() -> None:
    settlement = RecordingSettlement()
    settlement.state = "committed"
    delivery = await _fulfiller(settlement)(_agreement("committed", commit_hash="ab" * 32))
    assert [c[0] for c in settlement.calls] == ["reject"]
    assert delivery.report is None


async def test_a_delivered_trade_whose_payload_cannot_be_made_again_sends_no_other_bytes() -> None:
    delivery = await _fulfiller(RecordingSettlement())(
        _agreement("delivered", commit_hash="cd" * 32)
    )
    assert delivery.report is not None
    assert delivery.report["status"] == "delivered"
    assert "payload_b64" not in delivery.report


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


class _Changing:
    """A handler whose answer changes on every call, as a real API's does."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, request: FulfilmentRequest) -> bytes:
        self.calls += 1
        return f'{{"reading": {self.calls}}}'.encode()


def _changing_fulfiller(
    settlement: Any, handler: _Changing, payloads: CommittedPayloads
) -> Fulfiller:
    return Fulfiller(
        keypair=PROVIDER,
        settlement=settlement,
        handlers=HandlerBook(handlers={"weather.data": handler}),
        log=make_logger("ERROR", io.StringIO()),
        clock=lambda: NOW,
        payloads=payloads,
    )


async def test_a_changing_answer_is_produced_once_and_revealed_as_committed_on_another_replica(
    redis_store_url: tuple[str, str],
) -> None:
    url, prefix = redis_store_url
    handler = _Changing()
    crashed = RecordingSettlement(fail_reveal=RuntimeError("the replica died mid-REVEAL"))
    first_store = RedisCommittedPayloads(url, prefix=prefix, timeout_s=1)
    with pytest.raises(RuntimeError):
        await _changing_fulfiller(crashed, handler, first_store)(_agreement())
    await first_store.aclose()
    assert crashed.commit_hash is not None  # COMMIT went out, REVEAL did not

    settlement = RecordingSettlement()
    settlement.state, settlement.commit_hash = "committed", crashed.commit_hash
    replica_store = RedisCommittedPayloads(url, prefix=prefix, timeout_s=1)
    delivery = await _changing_fulfiller(settlement, handler, replica_store)(
        _agreement("committed", commit_hash=crashed.commit_hash)
    )
    await replica_store.aclose()
    assert delivery.report is not None
    assert delivery.report["commit_hash_hex"] == crashed.commit_hash
    assert base64.b64decode(delivery.report["payload_b64"]) == b'{"reading": 1}'
    assert handler.calls == 1  # the replica revealed the kept bytes, never asked again


async def test_racing_replicas_commit_to_the_first_kept_payload(
    redis_store_url: tuple[str, str],
) -> None:
    url, prefix = redis_store_url
    one = RedisCommittedPayloads(url, prefix=prefix, timeout_s=1)
    two = RedisCommittedPayloads(url, prefix=prefix, timeout_s=1)
    assert await one.keep("st_9", b"first", ttl_ms=60_000) == b"first"
    assert await two.keep("st_9", b"second", ttl_ms=60_000) == b"first"
    assert await two.find("st_9") == b"first"
    assert await two.find("st_other") is None
    await one.aclose()
    await two.aclose()


async def test_without_a_shared_store_a_lost_payload_refunds_rather_than_reveals_other_bytes() -> (
    None
):
    handler = _Changing()
    crashed = RecordingSettlement(fail_reveal=RuntimeError("the replica died mid-REVEAL"))
    with pytest.raises(RuntimeError):
        await _changing_fulfiller(crashed, handler, InMemoryCommittedPayloads())(_agreement())
    settlement = RecordingSettlement()
    settlement.state, settlement.commit_hash = "committed", crashed.commit_hash
    delivery = await _changing_fulfiller(settlement, handler, InMemoryCommittedPayloads())(
        _agreement("committed", commit_hash=crashed.commit_hash)
    )
    assert [c[0] for c in settlement.calls] == ["reject"]
    assert delivery.report is None
    assert delivery.refusal is not None
    assert delivery.refusal[0] == "FULFILMENT_FAILED"


async def test_a_handlers_fulfilment_error_is_the_reason_the_buyer_reads() -> None:
    async def no_station(request: FulfilmentRequest) -> bytes:
        raise FulfilmentError("no station in ATLANTIS")

    settlement = RecordingSettlement()
    fulfiller = _fulfiller(settlement, handlers=HandlerBook(handlers={"weather.data": no_station}))
    delivery = await fulfiller(_agreement())
    assert delivery.refusal is not None
    assert delivery.refusal[0] == "FULFILMENT_FAILED"
    assert delivery.refusal[1].startswith("no station in ATLANTIS")
    assert [c[0] for c in settlement.calls] == ["reject"]
