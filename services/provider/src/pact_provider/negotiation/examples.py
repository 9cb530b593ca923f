"""Real, verifiable request/response examples for the OpenAPI document.

They are produced by the actual :class:`Negotiator` with fixed documentation keys and a fixed
clock, so they always match what the service does (their timestamps are in the past: sent
as they are, they earn an INTENT_EXPIRED REJECT, which is itself a useful example).
"""

from __future__ import annotations

import io
from collections.abc import Coroutine
from types import MappingProxyType
from typing import Any

from pact_schema import PROTOCOL_VERSION, Keypair, decimal_from_wire, sign_message, verify_envelope
from pact_schema.quote import QUOTE_FIELD

from pact_provider.errors import problem_document
from pact_provider.fulfilment.handlers import demo_handlers
from pact_provider.fulfilment.service import Fulfiller
from pact_provider.identity import ProviderIdentity
from pact_provider.negotiation.pricing import DEFAULT_BOOK, bond_for
from pact_provider.negotiation.service import Decision, Negotiator, Policy
from pact_provider.observability import make_logger
from pact_provider.settlement_client import SettlementRecord

__all__ = ["OpenAPIExamples", "build_examples"]

EXAMPLE_NOW = 1_735_689_600_000  # 2025-01-01T00:00:00Z
# Documentation-only keys (public test seeds): never use them for anything real.
_BUYER = Keypair(bytes(range(1, 33)))
_PROVIDER = Keypair(bytes(range(33, 65)))


class _DocSettlement:
    """Answers like a settlement service that locks, commits and reveals at once."""

    def __init__(self) -> None:
        self.commit_hash: str | None = None

    def _record(self, state: str, amount: str = "0.00008") -> SettlementRecord:
        return SettlementRecord(
            id="st_01jgz5y3k8r2m4n6p8r0s2t4v6",
            state=state,
            rail="ledger",
            amount=amount,
            bond=format(bond_for(decimal_from_wire(float(amount))), "f"),
            commit_hash_hex=self.commit_hash,
        )

    async def settle(
        self,
        accept_envelope: dict[str, Any],
        *,
        idempotency_key: str,
        provider_quote: dict[str, Any] | None = None,
        rail: str | None = None,
    ) -> SettlementRecord:
        amount = decimal_from_wire(accept_envelope["message"]["agreed_price"])
        return self._record("locked", format(amount, "f"))

    async def commit(
        self, settlement_id: str, commit_envelope: dict[str, Any], *, idempotency_key: str
    ) -> SettlementRecord:
        self.commit_hash = commit_envelope["message"]["commit_hash_hex"]
        return self._record("committed")

    async def reveal(
        self, settlement_id: str, reveal_envelope: dict[str, Any], *, idempotency_key: str
    ) -> SettlementRecord:
        return self._record("delivered")

    async def abort(
        self, settlement_id: str, abort_envelope: dict[str, Any], *, idempotency_key: str
    ) -> SettlementRecord:
        return self._record("refunded")

    async def checkpoint(self, settlement_id: str, voucher: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("the OpenAPI examples stream nothing")

    async def close_stream(
        self, settlement_id: str, body: dict[str, Any], *, idempotency_key: str
    ) -> dict[str, Any]:
        raise RuntimeError("the OpenAPI examples stream nothing")

    async def find(self, buyer_key: str | None, intent_id: str) -> SettlementRecord | None:
        return None

    async def readiness(self) -> str:
        return "ok"

    async def aclose(self) -> None:
        return None


def _complete(coroutine: Coroutine[Any, Any, Decision]) -> Decision:
    """Run a coroutine that never suspends (the doc settlement answers at once), so examples
    can be built inside or outside a running event loop."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coroutine.close()
    raise RuntimeError("building the OpenAPI examples needed real I/O")


def _example(summary: str, value: Any) -> dict[str, Any]:
    return {"summary": summary, "value": value}


def _buyer(message: dict[str, Any], at: int) -> dict[str, Any]:
    return sign_message(message, _BUYER, signed_at_ms=at)


class OpenAPIExamples:
    def __init__(self, requests: dict[str, Any], replies: dict[str, Any], problems: dict[str, Any]):
        self.requests = MappingProxyType(requests)
        self.replies = MappingProxyType(replies)
        self.problems = MappingProxyType(problems)


def build_examples() -> OpenAPIExamples:
    settlement = _DocSettlement()
    log = make_logger("ERROR", io.StringIO())
    negotiator = Negotiator(
        identity=ProviderIdentity(_PROVIDER, frozenset({_PROVIDER.public_key_b58}), False),
        price_book=DEFAULT_BOOK,
        policy=Policy.defaults(),
        clock=lambda: EXAMPLE_NOW,
        settlement=settlement,
        log=log,
        after_settlement=Fulfiller(
            keypair=_PROVIDER,
            settlement=settlement,
            handlers=demo_handlers(),
            log=log,
            clock=lambda: EXAMPLE_NOW,
        ),
    )

    def answer(envelope: dict[str, Any]) -> Decision:
        return _complete(negotiator.handle_verified(verify_envelope(envelope)))

    t = EXAMPLE_NOW
    intent = _buyer(
        {
            "protocol_version": PROTOCOL_VERSION,
            "type": "INTENT",
            "intent_id": "intent-7f3c2a",
            "intent": "weather.data",
            "scope": "NYC 🗽 Zürich",
            "constraints": {"latency_ms": 40, "freshness_sec": 30},
            "max_price": 0.0002,
            "settlement_mode": "hash_reveal",
            "sent_at_ms": t,
            "expires_at_ms": t + 60_000,
        },
        t,
    )
    ask = answer(intent).envelope
    bid = _buyer(
        {
            "protocol_version": PROTOCOL_VERSION,
            "type": "BID",
            "intent_id": "intent-7f3c2a",
            "price": 0.00008,
            "unit": "request",
            "latency_ms": 40,
            "valid_for_ms": 20_000,
            "bond_required": 0.00016,
            "sent_at_ms": t,
            "expires_at_ms": t + 20_000,
            QUOTE_FIELD: ask,
        },
        t,
    )
    counter = answer(bid).envelope
    agreed = counter["message"]["price"]
    accept = _buyer(
        {
            "protocol_version": PROTOCOL_VERSION,
            "type": "ACCEPT",
            "intent_id": "intent-7f3c2a",
            "agreed_price": agreed,
            "settlement_mode": "hash_reveal",
            "proof_type": "hash_reveal",
            "challenge_window_ms": 5_000,
            "delivery_deadline_ms": t + 60_000,
            "sent_at_ms": t,
            "expires_at_ms": t + 20_000,
            QUOTE_FIELD: counter,
        },
        t,
    )
    ack = answer(accept).envelope
    reject = _buyer(
        {
            "protocol_version": PROTOCOL_VERSION,
            "type": "REJECT",
            "intent_id": "intent-7f3c2a",
            "reason": "price too high",
            "code": "QUOTE_OUT_OF_BAND",
            "sent_at_ms": t,
            "expires_at_ms": t + 60_000,
        },
        t,
    )
    reject_ack = answer(reject).envelope
    over_budget = dict(intent["message"], intent_id="intent-9a1b", max_price=0.00005)
    refusal = answer(_buyer(over_budget, t)).envelope
    requests = {
        "INTENT": _example("INTENT: ask for a price (unicode scope is fine)", intent),
        "BID": _example("BID: counter-offer, carrying the ASK it answers in `quote`", bid),
        "ACCEPT": _example("ACCEPT: take the quote carried in `quote`", accept),
        "REJECT": _example("REJECT: walk away (acknowledged)", reject),
    }
    replies = {
        "ASK": _example("ASK (round 1) answering the INTENT", ask),
        "ASK_COUNTER": _example("ASK (round 2) answering the BID: met halfway", counter),
        "ACCEPT": _example(
            "ACCEPT acknowledgement: the settlement's id and state, and the delivery (payload "
            "and nonce only once settlement recorded the REVEAL as delivered)",
            ack,
        ),
        "REJECT": _example("REJECT: the price exceeds max_price (PRICE_ABOVE_MAX)", refusal),
        "REJECT_ACK": _example("REJECT acknowledging the buyer's REJECT", reject_ack),
    }
    problems = {
        "400": _example(
            "The envelope does not verify",
            problem_document(
                400, "ENVELOPE_HASH_MISMATCH", "message_hash_hex does not match the message"
            ),
        ),
        "413": _example(
            "Body too large",
            problem_document(413, "PAYLOAD_TOO_LARGE", "the body exceeds 65536 bytes"),
        ),
        "415": _example(
            "Not JSON",
            problem_document(415, "UNSUPPORTED_MEDIA_TYPE", "send Content-Type: application/json"),
        ),
        "503": _example(
            "Settlement unavailable: resend the same ACCEPT after Retry-After",
            problem_document(
                503,
                "SETTLEMENT_UNAVAILABLE",
                "settlement did not answer in time; the same ACCEPT may be sent again",
            ),
        ),
    }
    return OpenAPIExamples(requests, replies, problems)
