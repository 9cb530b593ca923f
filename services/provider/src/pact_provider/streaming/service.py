"""The seller's side of a stream (docs/protocol.md, "Streaming").

``POST /pact/stream`` (a buyer-signed ``STREAM_START``) answers server-sent events: one
``chunk`` event per seller-signed ``STREAM_CHUNK`` (``seq`` from 0), then one ``stop`` event
(the seller-signed ``STREAM_STOP`` and the settlement as closed, its RECEIPT included).

Chunks are paid as they go: the buyer posts a cumulative ``STREAM_VOUCHER`` after each chunk
(``POST /pact/stream/{intent_id}/vouchers``), and chunk ``n`` is sent only once the vouchers
cover ``n + 1 - STREAM_CREDIT_TICKS`` ticks, so the seller risks at most the credit. Every
``STREAM_CHECKPOINT_TICKS`` ticks the highest voucher is presented to settlement (a crash
loses at most the ticks since); at the end (the buyer's ``STREAM_STOP``, the budget used up,
the seller's iterator exhausted, no voucher within ``STREAM_VOUCHER_TIMEOUT_MS``, or the
buyer gone) the stream is closed at settlement with the highest voucher.

The stream's state (its highest voucher) lives in the process serving it: vouchers and stops
must reach that replica (route ``/pact/stream/{intent_id}/…`` by intent id); a voucher sent
elsewhere is answered 404 and the buyer ends the stream. A replica that dies mid-stream loses
nothing signed but the ticks since the last checkpoint: settlement's sweeper closes the stream
at its delivery deadline at the last checkpoint.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import importlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import orjson
from pact_schema import (
    PROTOCOL_VERSION,
    EnvelopeError,
    FailureCode,
    Keypair,
    MessageValidationError,
    StreamStart,
    StreamStop,
    parse_message,
    sign_message,
    verify_envelope,
)
from pact_schema.clock import Clock
from pact_schema.money import parse_decimal_text
from pact_schema.streaming import (
    StreamFailureError,
    StreamTerms,
    VerifiedVoucher,
    amount_for_ticks,
    verify_voucher,
)

from pact_provider.config import ConfigError
from pact_provider.errors import ProviderError
from pact_provider.observability import Logger
from pact_provider.settlement_client import SettlementGateway

__all__ = [
    "DEFAULT_PLANNED_TICKS",
    "StreamHandler",
    "StreamRefusedError",
    "StreamRequest",
    "Streamer",
    "load_stream_handler",
]

#: How many of a running stream's latest signed chunks ``POST /stream/chunk`` can answer.
SENT_WINDOW = 256

#: The reference's default ``plannedTicks`` (``rate_per_tick = budget / planned_ticks``).
DEFAULT_PLANNED_TICKS = 50


@dataclass(frozen=True, slots=True)
class StreamRequest:
    """What a seller's stream handler is told."""

    intent_id: str
    buyer: str
    budget: Decimal
    tick_ms: int
    planned_ticks: int


StreamHandler = Callable[[StreamRequest], AsyncIterator[bytes]]
"""A seller's streaming goods: an async iterator of chunks (one chunk per tick)."""


def load_stream_handler(module_name: str) -> StreamHandler:
    """``STREAM_HANDLER`` of the operator's module (``STREAM_MODULE``)."""
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"PACT_PROVIDER_STREAM_MODULE: cannot import {module_name}") from exc
    handler = getattr(module, "STREAM_HANDLER", None)
    if not callable(handler):
        raise ConfigError(f"{module_name}.STREAM_HANDLER must be an async generator function")
    return handler  # type: ignore[no-any-return]


class StreamRefusedError(ProviderError):
    status = 422
    code = FailureCode.SCHEMA_VALIDATION_FAILED.value

    def __init__(self, code: str, detail: str, *, status: int = 422) -> None:
        super().__init__(detail, code=code, status=status)


@dataclass
class _Stream:
    settlement_id: str
    terms: StreamTerms
    planned_ticks: int
    highest: VerifiedVoucher | None = None
    stop: tuple[str, str, dict[str, Any]] | None = None  # code, reason, signed STREAM_STOP
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    closed: bool = False  # the close was sent to settlement
    #: The last SENT_WINDOW chunks sent, by seq: the reference's ``POST /stream/chunk``.
    sent: dict[int, dict[str, Any]] = field(default_factory=dict)

    @property
    def paid_ticks(self) -> int:
        return self.highest.voucher.ticks if self.highest else 0

    @property
    def paid(self) -> Decimal:
        return self.highest.paid_amount if self.highest else Decimal(0)


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


class Streamer:
    def __init__(
        self,
        *,
        keypair: Keypair,
        settlement: SettlementGateway | None,
        handler: StreamHandler | None,
        log: Logger,
        clock: Clock,
        message_ttl_ms: int,
        credit_ticks: int,
        checkpoint_ticks: int,
        voucher_timeout_ms: int,
    ) -> None:
        self.keypair = keypair
        self.settlement = settlement
        self.handler = handler
        self.log = log
        self.clock = clock
        self.ttl_ms = message_ttl_ms
        self.credit = credit_ticks
        self.checkpoint_every = checkpoint_ticks
        self.voucher_timeout_s = voucher_timeout_ms / 1000
        self.streams: dict[tuple[str, str], _Stream] = {}
        self._closing: set[asyncio.Task[dict[str, Any]]] = set()

    @property
    def offered(self) -> bool:
        return self.settlement is not None and self.handler is not None

    # ----------------------------------------------------------------- opening

    async def open(self, raw: Any) -> AsyncIterator[bytes]:
        """Verify the buyer's STREAM_START against its settlement; the event stream."""
        if not self.offered or self.settlement is None or self.handler is None:
            raise StreamRefusedError(
                FailureCode.SETTLEMENT_MODE_NOT_ALLOWED,
                "streaming is not offered here (no stream handler or no settlement service)",
            )
        try:
            envelope = verify_envelope(raw)
            start = parse_message(envelope.message_raw)
        except EnvelopeError as exc:
            raise StreamRefusedError(FailureCode.FAILED_IDENTITY, str(exc)) from exc
        except MessageValidationError as exc:
            raise StreamRefusedError(exc.code, exc.detail) from exc
        if not isinstance(start, StreamStart):
            raise StreamRefusedError(
                FailureCode.UNEXPECTED_MESSAGE, f"expected a STREAM_START, got {start.type}"
            )
        buyer = envelope.signer
        if self.clock() > start.expires_at_ms:
            raise StreamRefusedError(FailureCode.INTENT_EXPIRED, "the STREAM_START has expired")
        record = await self.settlement.find(buyer, start.intent_id)
        if record is None or record.settlement_mode != "streaming" or record.state != "streaming":
            raise StreamRefusedError(
                FailureCode.SETTLEMENT_MODE_NOT_ALLOWED,
                "no open streaming settlement of this buyer for this intent",
                status=409,
            )
        if record.seller != self.keypair.public_key_b58 or record.amount is None:
            raise StreamRefusedError(
                FailureCode.FAILED_IDENTITY, "the settlement is not this seller's", status=409
            )
        budget = parse_decimal_text(record.amount)
        if start.agreed_price != budget:
            raise StreamRefusedError(
                FailureCode.PRICE_MISMATCH,
                f"agreed_price {start.agreed_price} is not the locked budget {budget}",
            )
        planned = start.extras.get("planned_ticks", DEFAULT_PLANNED_TICKS)
        if not isinstance(planned, int) or isinstance(planned, bool) or planned < 1:
            raise StreamRefusedError(
                FailureCode.SCHEMA_VALIDATION_FAILED, "planned_ticks must be a positive integer"
            )
        key = (buyer, start.intent_id)
        if key in self.streams:
            raise StreamRefusedError(
                FailureCode.UNEXPECTED_MESSAGE, "this stream is already running", status=409
            )
        stream = _Stream(
            settlement_id=record.id,
            terms=StreamTerms(
                intent_id=start.intent_id,
                buyer=buyer,
                seller=self.keypair.public_key_b58,
                budget=budget,
            ),
            planned_ticks=planned,
        )
        self.streams[key] = stream
        request = StreamRequest(start.intent_id, buyer, budget, start.tick_ms, planned)
        return self._run(key, stream, self.handler(request))

    # ------------------------------------------------------------------ running

    async def _paid_for(self, stream: _Stream, ticks: int) -> bool:
        """Wait until the vouchers cover ``ticks`` (less the credit), a stop, or the timeout."""
        while stream.paid_ticks < ticks - self.credit and stream.stop is None:
            stream.changed.clear()
            try:
                await asyncio.wait_for(stream.changed.wait(), self.voucher_timeout_s)
            except TimeoutError:
                return False
        return stream.stop is None

    async def _run(
        self, key: tuple[str, str], stream: _Stream, chunks: AsyncIterator[bytes]
    ) -> AsyncIterator[bytes]:
        code, reason = "SELLER_STOPPED", "the seller's stream ended"
        seq = 0
        checkpointed = 0
        try:
            async for data in chunks:
                if stream.paid >= stream.terms.budget:
                    code, reason = "COMPLETED", "the budget is used up"
                    break
                if not await self._paid_for(stream, seq + 1):
                    if stream.stop is None:
                        code, reason = "SELLER_STOPPED", "no voucher for the chunks sent"
                    break
                now = self.clock()
                chunk = sign_message(
                    {
                        "protocol_version": PROTOCOL_VERSION,
                        "type": "STREAM_CHUNK",
                        "intent_id": stream.terms.intent_id,
                        "seq": seq,
                        "chunk_b64": base64.b64encode(data).decode("ascii"),
                        "sent_at_ms": now,
                        "expires_at_ms": now + self.ttl_ms,
                    },
                    self.keypair,
                    signed_at_ms=now,
                )
                stream.sent[seq] = chunk
                stream.sent.pop(seq - SENT_WINDOW, None)
                yield _sse("chunk", chunk)
                seq += 1
                if stream.highest and stream.paid_ticks - checkpointed >= self.checkpoint_every:
                    checkpointed = stream.paid_ticks
                    await self._checkpoint(stream)
            else:
                # The last chunk is paid by the voucher that follows it.
                await self._paid_for(stream, seq + self.credit)
                if stream.paid >= stream.terms.budget:
                    code, reason = "COMPLETED", "the budget is used up"
            if stream.stop is not None:
                code, reason = stream.stop[0], stream.stop[1]
            closed = await self._close(stream, code, reason, chunks=seq)
            yield _sse("stop", {"stop": self._stop(stream, code, reason), "settlement": closed})
        finally:
            with contextlib.suppress(Exception):
                await chunks.aclose()  # type: ignore[attr-defined]
            if self.streams.get(key) is stream and not stream.closed:
                # The buyer went away mid-stream: close at the highest voucher, off this task.
                task = asyncio.create_task(
                    self._close(stream, "BUYER_STOPPED", "the buyer disconnected", chunks=seq)
                )
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)
            self.streams.pop(key, None)

    def _stop(self, stream: _Stream, code: str, reason: str) -> dict[str, Any]:
        now = self.clock()
        return sign_message(
            {
                "protocol_version": PROTOCOL_VERSION,
                "type": "STREAM_STOP",
                "intent_id": stream.terms.intent_id,
                "by": "buyer" if code == "BUYER_STOPPED" else "seller",
                "reason": f"{code}: {reason}",
                "sent_at_ms": now,
                "expires_at_ms": now + self.ttl_ms,
            },
            self.keypair,
            signed_at_ms=now,
        )

    async def _checkpoint(self, stream: _Stream) -> None:
        assert self.settlement is not None
        if stream.highest is None:
            return
        try:
            await self.settlement.checkpoint(stream.settlement_id, stream.highest.raw)
        except Exception as exc:  # the next checkpoint or the close presents a higher one
            self.log.warning(
                "pact.stream.checkpoint_failed",
                intent_id=stream.terms.intent_id,
                error=str(exc)[:300],
            )

    async def _close(
        self, stream: _Stream, code: str, reason: str, *, chunks: int
    ) -> dict[str, Any]:
        assert self.settlement is not None
        stream.closed = True
        by = "buyer" if code == "BUYER_STOPPED" or (stream.stop is not None) else "seller"
        body: dict[str, Any] = {
            "voucher": stream.highest.raw if stream.highest else None,
            "by": by,
            "code": code,
            "reason": reason[:1024],
            "chunks": chunks,
        }
        if stream.stop is not None:
            body["stop"] = stream.stop[2]
        closed = await self.settlement.close_stream(
            stream.settlement_id, body, idempotency_key=f"close-{stream.settlement_id}"
        )
        self.log.info(
            "pact.stream.closed",
            intent_id=stream.terms.intent_id,
            code=code,
            ticks=stream.paid_ticks,
            chunks=chunks,
            paid=str(stream.paid),
        )
        return closed

    # --------------------------------------------------------- vouchers and stops

    def _stream(self, buyer: str | None, intent_id: str) -> _Stream:
        matches = [
            s
            for (b, i), s in self.streams.items()
            if i == intent_id and (buyer is None or b == buyer)
        ]
        if len(matches) != 1:
            raise StreamRefusedError(
                "NOT_FOUND",
                f"no stream of intent {intent_id!r} is served by this replica",
                status=404,
            )
        return matches[0]

    def sent_chunk(self, intent_id: str, seq: int) -> dict[str, Any] | None:
        """The signed STREAM_CHUNK ``seq`` of the stream of ``intent_id`` running here (the
        reference's ``POST /stream/chunk``), if it was sent and is still in the window."""
        for (_, running), stream in self.streams.items():
            if running == intent_id and seq in stream.sent:
                return stream.sent[seq]
        return None

    def voucher(self, intent_id: str, raw: Any) -> dict[str, Any]:
        signer = raw.get("signer_public_key_b58") if isinstance(raw, dict) else None
        stream = self._stream(signer if isinstance(signer, str) else None, intent_id)
        try:
            voucher = verify_voucher(raw, stream.terms)
        except StreamFailureError as exc:
            raise StreamRefusedError(exc.code, exc.detail) from exc
        owed = amount_for_ticks(stream.terms.budget, stream.planned_ticks, voucher.voucher.ticks)
        if voucher.paid_amount < owed:
            raise StreamRefusedError(
                FailureCode.VOUCHER_INVALID,
                f"{voucher.voucher.ticks} ticks cost {owed}; the voucher pays "
                f"{voucher.paid_amount}",
            )
        if voucher.paid_amount > stream.paid:
            stream.highest = voucher
            stream.changed.set()
        return {"ticks": stream.paid_ticks, "paid_amount": str(stream.paid)}

    def stop(self, intent_id: str, raw: Any) -> dict[str, Any]:
        try:
            envelope = verify_envelope(raw)
            message = parse_message(envelope.message_raw)
        except EnvelopeError as exc:
            raise StreamRefusedError(FailureCode.FAILED_IDENTITY, str(exc)) from exc
        except MessageValidationError as exc:
            raise StreamRefusedError(exc.code, exc.detail) from exc
        if not isinstance(message, StreamStop) or message.intent_id != intent_id:
            raise StreamRefusedError(
                FailureCode.UNEXPECTED_MESSAGE, "expected a STREAM_STOP for this intent"
            )
        stream = self._stream(envelope.signer, intent_id)
        if envelope.signer != stream.terms.buyer:
            raise StreamRefusedError(
                FailureCode.FAILED_IDENTITY, "a STREAM_STOP must be the buyer's", status=403
            )
        code = message.reason.split(":", 1)[0]
        known = {c.value for c in FailureCode}
        stream.stop = (
            code if code in known else "BUYER_STOPPED",
            message.reason,
            envelope.raw,
        )
        stream.changed.set()
        return {"stopping": True}

    async def aclose(self) -> None:
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
