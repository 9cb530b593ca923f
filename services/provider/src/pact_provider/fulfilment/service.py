"""Deliver a settled agreement with hash_reveal, and hand the payload over only once it counts.

Run after settlement took an ACCEPT (or found the one a resent ACCEPT names). By the
settlement's state:

* ``pending`` (an external rail's lock is in flight): nothing to deliver yet; the buyer resends
  the same ACCEPT later;
* ``locked``: produce the payload (the intent type's handler, bounded by
  ``FULFILMENT_TIMEOUT_S``), keep it (:mod:`~pact_provider.fulfilment.committed`), COMMIT,
  REVEAL; ``committed``: REVEAL the kept payload; ``delivered`` / ``released``: hand the
  buyer the kept payload again;
* the payload and nonce go into the ACCEPT ack only when settlement answered the REVEAL with
  ``delivered`` (or ``released``): never beside a refund, a pending lock or a failed call;
* when the provider cannot deliver (no handler, the handler failed or timed out, the deadline
  too near to start, a commitment it can no longer match), it calls the trade off with a
  signed abort: settlement refunds the buyer at once and no bond is slashed.

The handler runs once per settlement: its bytes are kept under the settlement id before the
COMMIT (first writer wins), and the nonce is an HMAC of the buyer key and intent id under the
provider's key, so any replica handling a resent ACCEPT reveals the very bytes committed, and
settlement's idempotency turns a repeat into a no-op. Only when the kept payload is gone (no
shared store and the process died) is the handler asked again; bytes that no longer match the
commitment call the trade off (the buyer is refunded).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pact_schema import PROTOCOL_VERSION, FailureCode, Keypair, commit_hash_hex, sign_message

from pact_provider.fulfilment.committed import CommittedPayloads, InMemoryCommittedPayloads
from pact_provider.fulfilment.handlers import (
    FulfilmentError,
    FulfilmentRequest,
    Handler,
    HandlerBook,
)
from pact_provider.negotiation.service import Delivery, SettledAgreement
from pact_provider.observability import Logger
from pact_provider.settlement_client import (
    SettlementGateway,
    SettlementRecord,
    SettlementRefusedError,
)

__all__ = ["Fulfiller"]

_NONCE_CONTEXT = b"pact-provider/fulfilment-nonce/2:"
_DELIVERED = frozenset({"delivered", "released"})
_UNDELIVERED = frozenset({"locked", "committed"})


@dataclass(frozen=True, slots=True)
class _Goods:
    payload_b64: str
    nonce_b64: str
    commit_hash_hex: str

    def report(self) -> dict[str, Any]:
        return {
            "status": "delivered",
            "proof_type": "hash_reveal",
            "commit_hash_hex": self.commit_hash_hex,
            "payload_b64": self.payload_b64,
            "nonce_b64": self.nonce_b64,
        }


class _CannotDeliverError(Exception):
    def __init__(self, code: FailureCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class Fulfiller:
    """The ``after_settlement`` hook of a provider that delivers with its own handlers."""

    def __init__(
        self,
        *,
        keypair: Keypair,
        settlement: SettlementGateway,
        handlers: HandlerBook,
        log: Logger,
        clock: Callable[[], int],
        message_ttl_ms: int = 60_000,
        handler_timeout_s: float = 5.0,
        payloads: CommittedPayloads | None = None,
        payload_retention_ms: int = 3_600_000,
    ) -> None:
        self._keypair = keypair
        self._settlement = settlement
        self._handlers = handlers
        self._log = log
        self._clock = clock
        self._ttl = message_ttl_ms
        self._handler_timeout_s = handler_timeout_s
        self._payloads = payloads if payloads is not None else InMemoryCommittedPayloads()
        self._retention_ms = payload_retention_ms

    def can_fulfil(self, intent_type: str) -> bool:
        """Whether a handler delivers this intent type (INTENTs for others are refused)."""
        return self._handlers.for_intent(intent_type) is not None

    async def __call__(self, agreement: SettledAgreement) -> Delivery:
        record = agreement.settlement
        if record.state == "pending":
            return Delivery(
                record,
                {
                    "status": "pending",
                    "detail": "settlement is still locking the funds; resend the same ACCEPT "
                    "later to receive the delivery",
                },
            )
        if record.state not in _UNDELIVERED and record.state not in _DELIVERED:
            return Delivery(record)  # ended without a delivery: answered with a REJECT
        try:
            if record.state == "locked" and not agreement.time_to_deliver:
                raise _CannotDeliverError(
                    FailureCode.DELIVERY_WINDOW_TOO_SHORT,
                    "the delivery deadline is too near to deliver now",
                )
            goods = await self._goods(agreement)
            return await self._deliver(agreement, record, goods)
        except _CannotDeliverError as cannot:
            return await self._call_off(agreement, record, cannot)

    # --- the goods ------------------------------------------------------------------------

    def _nonce(self, buyer_key: str, intent_id: str) -> bytes:
        scope = f"{buyer_key}\n{intent_id}".encode()
        return hmac.new(self._keypair.seed, _NONCE_CONTEXT + scope, hashlib.sha256).digest()[:16]

    def _handler(self, agreement: SettledAgreement) -> Handler:
        terms = agreement.terms
        if agreement.accept.settlement_mode != "hash_reveal" or terms is None:
            raise _CannotDeliverError(
                FailureCode.FULFILMENT_FAILED,
                "this provider delivers hash_reveal trades made from its own quote only",
            )
        handler = self._handlers.for_intent(terms.intent_type)
        if handler is None:
            raise _CannotDeliverError(
                FailureCode.FULFILMENT_FAILED,
                f"nothing here delivers intent type {terms.intent_type!r}",
            )
        return handler

    async def _goods(self, agreement: SettledAgreement) -> _Goods:
        handler = self._handler(agreement)
        terms = agreement.terms
        assert terms is not None
        intent_id = agreement.accept.intent_id
        record = agreement.settlement
        payload = await self._payloads.find(record.id)
        if payload is None:
            payload = await self._produce(handler, agreement)
            if record.commit_hash_hex is None:
                ttl_ms = agreement.accept.delivery_deadline_ms - self._clock() + self._retention_ms
                payload = await self._payloads.keep(record.id, payload, ttl_ms=max(1, ttl_ms))
        payload_b64 = base64.b64encode(payload).decode("ascii")
        nonce_b64 = base64.b64encode(self._nonce(terms.buyer_key, intent_id)).decode("ascii")
        goods = _Goods(payload_b64, nonce_b64, commit_hash_hex(payload_b64, nonce_b64))
        recorded = record.commit_hash_hex
        if recorded is not None and recorded.lower() != goods.commit_hash_hex:
            raise _CannotDeliverError(
                FailureCode.FULFILMENT_FAILED,
                "the committed payload is no longer kept and the handler answered differently",
            )
        return goods

    async def _produce(self, handler: Handler, agreement: SettledAgreement) -> bytes:
        """Ask the handler, bounded by FULFILMENT_TIMEOUT_S; any failure calls the trade off."""
        terms = agreement.terms
        assert terms is not None
        intent_id = agreement.accept.intent_id
        request = FulfilmentRequest(
            intent_id=intent_id,
            intent_type=terms.intent_type,
            scope=terms.scope,
            buyer_key=terms.buyer_key,
        )
        try:
            async with asyncio.timeout(self._handler_timeout_s):
                payload = await handler(request)
        except TimeoutError as exc:
            raise _CannotDeliverError(
                FailureCode.FULFILMENT_FAILED,
                f"the handler did not produce the payload within {self._handler_timeout_s} s",
            ) from exc
        except FulfilmentError as exc:
            self._log.warning(
                "pact.fulfilment.handler_refused", intent_id=intent_id, error=str(exc)
            )
            raise _CannotDeliverError(FailureCode.FULFILMENT_FAILED, str(exc)[:300]) from exc
        except Exception as exc:  # a handler is seller code: any failure calls the trade off
            self._log.warning(
                "pact.fulfilment.handler_failed",
                intent_id=intent_id,
                error_type=type(exc).__name__,
                error=str(exc)[:300],
            )
            raise _CannotDeliverError(
                FailureCode.FULFILMENT_FAILED, f"the handler failed ({type(exc).__name__})"
            ) from exc
        if not isinstance(payload, bytes):
            raise _CannotDeliverError(
                FailureCode.FULFILMENT_FAILED, "the handler returned no bytes"
            )
        return payload

    # --- delivery through settlement ----------------------------------------------------

    def _sign(self, message_type: str, intent_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        sent = self._clock()
        message = {
            "protocol_version": PROTOCOL_VERSION,
            "type": message_type,
            "intent_id": intent_id,
            "sent_at_ms": sent,
            "expires_at_ms": sent + self._ttl,
            **fields,
        }
        return sign_message(message, self._keypair, signed_at_ms=sent)

    async def _deliver(
        self, agreement: SettledAgreement, record: SettlementRecord, goods: _Goods
    ) -> Delivery:
        intent_id = agreement.accept.intent_id
        try:
            if record.state == "locked":
                record = await self._settlement.commit(
                    record.id,
                    self._sign("COMMIT", intent_id, {"commit_hash_hex": goods.commit_hash_hex}),
                    idempotency_key=f"commit-{record.id}-{goods.commit_hash_hex}",
                )
            if record.state == "committed":
                record = await self._settlement.reveal(
                    record.id,
                    self._sign(
                        "REVEAL",
                        intent_id,
                        {"payload_b64": goods.payload_b64, "nonce_b64": goods.nonce_b64},
                    ),
                    idempotency_key=f"reveal-{record.id}-{goods.commit_hash_hex}",
                )
        except SettlementRefusedError as exc:
            # Someone else (another replica, the sweeper) moved the settlement on: decide
            # from where it is now, never from what this call expected.
            self._log.warning(
                "pact.fulfilment.refused", intent_id=intent_id, code=exc.code, detail=exc.detail
            )
            current = await self._settlement.find(agreement.buyer_key, intent_id)
            if current is None or current.id != record.id:
                return Delivery(record, refusal=(exc.code, exc.detail))
            if current.state in _UNDELIVERED:
                raise _CannotDeliverError(
                    FailureCode.FULFILMENT_FAILED, f"settlement refused the delivery: {exc.detail}"
                ) from exc
            record = current
        if record.state in _DELIVERED:
            self._log.info(
                "pact.fulfilment.delivered",
                intent_id=intent_id,
                state=record.state,
                commit=goods.commit_hash_hex,
            )
            return Delivery(record, goods.report())
        return Delivery(record)  # refunded or slashed by settlement (e.g. a late REVEAL)

    async def _call_off(
        self, agreement: SettledAgreement, record: SettlementRecord, cannot: _CannotDeliverError
    ) -> Delivery:
        """Abort the trade (full refund, no slash) when it is still undelivered; otherwise
        report the delivery without the payload the provider cannot produce again."""
        intent_id = agreement.accept.intent_id
        if record.state in _DELIVERED:
            return Delivery(
                record,
                {
                    "status": "delivered",
                    "commit_hash_hex": record.commit_hash_hex,
                    "detail": f"delivered earlier; the payload cannot be sent again: "
                    f"{cannot.reason}",
                },
            )
        self._log.warning(
            "pact.fulfilment.called_off",
            intent_id=intent_id,
            settlement_id=record.id,
            code=cannot.code.value,
            reason=cannot.reason,
        )
        try:
            ended = await self._settlement.abort(
                record.id,
                self._sign(
                    "REJECT", intent_id, {"code": cannot.code.value, "reason": cannot.reason}
                ),
                idempotency_key=f"abort-{record.id}",
            )
        except SettlementRefusedError as exc:
            return Delivery(record, refusal=(FailureCode.SETTLEMENT_FAILED.value, exc.detail))
        return Delivery(
            ended, refusal=(cannot.code.value, f"{cannot.reason}; the buyer is refunded")
        )
