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

Where a stream's state lives:

* **Alone** (no ``PACT_PROVIDER_QUOTE_STORE_URL``): in the process serving it. Vouchers and
  stops must reach that replica (a voucher sent elsewhere is answered 404 and the buyer ends
  the stream). A process that dies mid-stream loses the vouchers since the last checkpoint:
  settlement's sweeper closes the stream at its delivery deadline at the last checkpoint.
* **Shared** (the quote store's Redis, :mod:`pact_provider.streaming.shared`): any replica
  takes a stream's vouchers and stops; a voucher is acknowledged only once it is stored, and a
  stream whose serving replica died is closed by another at the stored highest voucher.

A close that does not reach settlement (settlement down) is retried in the background until
settlement answers; with the shared store, any replica's recovery retries it too.
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
from pact_provider.settlement_client import SettlementGateway, SettlementRefusedError
from pact_provider.streaming.shared import (
    LEASE_RENEW_S,
    RECOVER_EVERY_S,
    SharedStream,
    SharedStreams,
)

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

#: How long a stream's record stays in the shared store without renewal (renewed with the lease).
SHARED_TTL_MS = 3_600_000

#: A close that did not reach settlement is retried this long (backoff up to 5 s) before the
#: sweeper is left to close the stream at its last checkpoint at the delivery deadline.
CLOSE_RETRY_FOR_S = 900.0

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
    stopped: asyncio.Event = field(default_factory=asyncio.Event)
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
        shared: SharedStreams | None = None,
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
        self.shared = shared
        self.streams: dict[tuple[str, str], _Stream] = {}
        self._closing: set[asyncio.Task[Any]] = set()
        self._background: list[asyncio.Task[None]] = []

    @property
    def offered(self) -> bool:
        return self.settlement is not None and self.handler is not None

    def start(self) -> None:
        """With the shared store: listen for vouchers and stops other replicas took, renew
        the leases of the streams served here, and close streams whose replica is gone."""
        if self.shared is None or not self.offered:
            return
        shared = self.shared

        def failed(error: str) -> None:
            self.log.warning("pact.stream.shared_listen_failed", error=error)

        self._background = [
            asyncio.create_task(shared.listen(self._on_shared_event, failed)),
            asyncio.create_task(self._keep_leases()),
            asyncio.create_task(self._recover_forever()),
        ]

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
        if self.shared is not None:
            try:
                await self.shared.opened(
                    SharedStream(
                        buyer=buyer,
                        intent_id=start.intent_id,
                        settlement_id=record.id,
                        seller=self.keypair.public_key_b58,
                        budget=budget,
                        planned_ticks=planned,
                        voucher=None,
                    ),
                    ttl_ms=SHARED_TTL_MS,
                )
            except Exception:
                self.streams.pop(key, None)
                raise
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

    @staticmethod
    async def _next_chunk(
        chunks: AsyncIterator[bytes], stop_waiter: asyncio.Task[Any]
    ) -> bytes | None:
        """The seller's next chunk; None when its iterator ends or a stop comes first (a
        seller that stops yielding cannot hold a stopped stream open)."""
        pending = asyncio.ensure_future(anext(chunks))
        await asyncio.wait({pending, stop_waiter}, return_when=asyncio.FIRST_COMPLETED)
        if not pending.done():
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending
            return None
        try:
            return pending.result()
        except StopAsyncIteration:
            return None

    async def _run(
        self, key: tuple[str, str], stream: _Stream, chunks: AsyncIterator[bytes]
    ) -> AsyncIterator[bytes]:
        code, reason = "SELLER_STOPPED", "the seller's stream ended"
        seq = 0
        checkpointed = 0
        stop_waiter = asyncio.ensure_future(stream.stopped.wait())
        try:
            while True:
                data = await self._next_chunk(chunks, stop_waiter)
                if data is None:
                    if stream.stop is None:
                        # The last chunk is paid by the voucher that follows it.
                        await self._paid_for(stream, seq + self.credit)
                        if stream.paid >= stream.terms.budget:
                            code, reason = "COMPLETED", "the budget is used up"
                    break
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
            if stream.stop is not None:
                code, reason = stream.stop[0], stream.stop[1]
            closed = await self._close_or_retry(stream, code, reason, chunks=seq)
            yield _sse("stop", {"stop": self._stop(stream, code, reason), "settlement": closed})
        finally:
            stop_waiter.cancel()
            with contextlib.suppress(Exception):
                await chunks.aclose()  # type: ignore[attr-defined]
            if self.streams.get(key) is stream and not stream.closed:
                # The buyer went away mid-stream: close at the highest voucher, off this task.
                self._in_background(
                    self._close_or_retry(
                        stream, "BUYER_STOPPED", "the buyer disconnected", chunks=seq
                    )
                )
            self.streams.pop(key, None)

    def _in_background(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

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

    def _close_body(self, stream: _Stream, code: str, reason: str, chunks: int) -> dict[str, Any]:
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
        return body

    async def _close_or_retry(
        self, stream: _Stream, code: str, reason: str, *, chunks: int
    ) -> dict[str, Any] | None:
        """Close at settlement; when settlement cannot be reached, keep retrying in the
        background (same key, same body) and answer None: the buyer's stop event then says
        the settlement is still to come."""
        assert self.settlement is not None
        stream.closed = True
        await self._adopt_stored(stream)
        body = self._close_body(stream, code, reason, chunks)
        try:
            closed = await self._send_close(stream, body)
        except SettlementRefusedError as exc:
            self._forget(stream)
            self.log.warning(
                "pact.stream.close_refused",
                intent_id=stream.terms.intent_id,
                code=exc.code,
                detail=exc.detail[:300],
            )
            return None
        except Exception as exc:
            self.log.warning(
                "pact.stream.close_failed",
                intent_id=stream.terms.intent_id,
                error=str(exc)[:300],
            )
            self._in_background(self._retry_close(stream, body))
            return None
        self._forget(stream)
        self.log.info(
            "pact.stream.closed",
            intent_id=stream.terms.intent_id,
            code=code,
            ticks=stream.paid_ticks,
            chunks=chunks,
            paid=str(stream.paid),
        )
        return closed

    async def _adopt_stored(self, stream: _Stream) -> None:
        """A voucher another replica stored may not have reached this one yet: the close
        presents the higher of the two."""
        if self.shared is None:
            return
        try:
            shared = await self.shared.find(stream.terms.buyer, stream.terms.intent_id)
            if shared is not None and shared.voucher is not None:
                self._raise_local(
                    stream, self._verified(shared.voucher, stream.terms, stream.planned_ticks)
                )
        except Exception as exc:  # the close presents what this replica holds
            self.log.warning(
                "pact.stream.shared_read_failed",
                intent_id=stream.terms.intent_id,
                error=str(exc)[:300],
            )

    async def _send_close(self, stream: _Stream, body: dict[str, Any]) -> dict[str, Any]:
        assert self.settlement is not None
        return await self.settlement.close_stream(
            stream.settlement_id, body, idempotency_key=f"close-{stream.settlement_id}"
        )

    async def _retry_close(self, stream: _Stream, body: dict[str, Any]) -> None:
        give_up_at = asyncio.get_running_loop().time() + CLOSE_RETRY_FOR_S
        delay = 0.25
        while asyncio.get_running_loop().time() < give_up_at:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
            try:
                await self._send_close(stream, body)
            except SettlementRefusedError:
                break  # closed meanwhile (by recovery or the sweeper), or not closable
            except Exception as exc:
                self.log.warning(
                    "pact.stream.close_failed",
                    intent_id=stream.terms.intent_id,
                    error=str(exc)[:300],
                )
                continue
            self.log.info(
                "pact.stream.closed",
                intent_id=stream.terms.intent_id,
                code=body["code"],
                ticks=stream.paid_ticks,
                chunks=body["chunks"],
                paid=str(stream.paid),
            )
            break
        self._forget(stream)

    def _forget(self, stream: _Stream) -> None:
        """The stream is settled: its shared record goes (off the caller's path)."""
        if self.shared is not None:
            self._in_background(self._end_shared(stream.terms.buyer, stream.terms.intent_id))

    async def _end_shared(self, buyer: str, intent_id: str) -> None:
        assert self.shared is not None
        with contextlib.suppress(Exception):  # recovery finds it closed and deletes it
            await self.shared.ended(buyer, intent_id)

    # --------------------------------------------------------- vouchers and stops

    def _local(self, buyer: str | None, intent_id: str) -> _Stream | None:
        matches = [
            s
            for (b, i), s in self.streams.items()
            if i == intent_id and (buyer is None or b == buyer)
        ]
        return matches[0] if len(matches) == 1 else None

    @staticmethod
    def _not_here(intent_id: str) -> StreamRefusedError:
        return StreamRefusedError(
            "NOT_FOUND",
            f"no stream of intent {intent_id!r} is served by this replica",
            status=404,
        )

    def sent_chunk(self, intent_id: str, seq: int) -> dict[str, Any] | None:
        """The signed STREAM_CHUNK ``seq`` of the stream of ``intent_id`` running here (the
        reference's ``POST /stream/chunk``), if it was sent and is still in the window."""
        for (_, running), stream in self.streams.items():
            if running == intent_id and seq in stream.sent:
                return stream.sent[seq]
        return None

    @staticmethod
    def _verified(raw: Any, terms: StreamTerms, planned_ticks: int) -> VerifiedVoucher:
        try:
            voucher = verify_voucher(raw, terms)
        except StreamFailureError as exc:
            raise StreamRefusedError(exc.code, exc.detail) from exc
        owed = amount_for_ticks(terms.budget, planned_ticks, voucher.voucher.ticks)
        if voucher.paid_amount < owed:
            raise StreamRefusedError(
                FailureCode.VOUCHER_INVALID,
                f"{voucher.voucher.ticks} ticks cost {owed}; the voucher pays "
                f"{voucher.paid_amount}",
            )
        return voucher

    @staticmethod
    def _raise_local(stream: _Stream, voucher: VerifiedVoucher) -> None:
        if voucher.paid_amount > stream.paid:
            stream.highest = voucher
            stream.changed.set()

    async def voucher(self, intent_id: str, raw: Any) -> dict[str, Any]:
        signer = raw.get("signer_public_key_b58") if isinstance(raw, dict) else None
        buyer = signer if isinstance(signer, str) else None
        stream = self._local(buyer, intent_id)
        if stream is not None:
            voucher = self._verified(raw, stream.terms, stream.planned_ticks)
            self._raise_local(stream, voucher)
            if self.shared is not None:
                # Acknowledged only once stored: it survives this replica.
                await self.shared.raise_voucher(
                    stream.terms.buyer, intent_id, voucher.raw, voucher.paid_amount, publish=False
                )
            return {"ticks": stream.paid_ticks, "paid_amount": str(stream.paid)}
        if self.shared is None or buyer is None:
            raise self._not_here(intent_id)
        shared = await self.shared.find(buyer, intent_id)
        if shared is None:
            raise self._not_here(intent_id)
        terms = StreamTerms(
            intent_id=intent_id, buyer=buyer, seller=shared.seller, budget=shared.budget
        )
        voucher = self._verified(raw, terms, shared.planned_ticks)
        raised = await self.shared.raise_voucher(
            buyer, intent_id, voucher.raw, voucher.paid_amount, publish=True
        )
        if raised < 0:
            raise self._not_here(intent_id)
        highest = voucher
        if raised == 0 and shared.voucher is not None:
            with contextlib.suppress(StreamRefusedError):
                stored = self._verified(shared.voucher, terms, shared.planned_ticks)
                highest = stored if stored.paid_amount > voucher.paid_amount else voucher
        return {"ticks": highest.voucher.ticks, "paid_amount": str(highest.paid_amount)}

    @staticmethod
    def _stop_of(intent_id: str, raw: Any) -> tuple[str, StreamStop, dict[str, Any]]:
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
        return envelope.signer, message, envelope.raw

    @staticmethod
    def _stop_local(stream: _Stream, message: StreamStop, raw: dict[str, Any]) -> None:
        code = message.reason.split(":", 1)[0]
        known = {c.value for c in FailureCode}
        stream.stop = (code if code in known else "BUYER_STOPPED", message.reason, raw)
        stream.changed.set()
        stream.stopped.set()

    async def stop(self, intent_id: str, raw: Any) -> dict[str, Any]:
        signer, message, envelope = self._stop_of(intent_id, raw)
        stream = self._local(signer, intent_id)
        if stream is not None:
            if signer != stream.terms.buyer:
                raise StreamRefusedError(
                    FailureCode.FAILED_IDENTITY, "a STREAM_STOP must be the buyer's", status=403
                )
            self._stop_local(stream, message, envelope)
            return {"stopping": True}
        # Found by the signer's key: only the buyer's own stop names its stream.
        if self.shared is None or await self.shared.find(signer, intent_id) is None:
            raise self._not_here(intent_id)
        await self.shared.publish_stop(signer, intent_id, envelope)
        return {"stopping": True}

    # ------------------------------------------------------- the shared store

    async def _on_shared_event(
        self, kind: str, buyer: str, intent_id: str, envelope: dict[str, Any]
    ) -> None:
        """A voucher or stop another replica took for a stream that may run here."""
        stream = self.streams.get((buyer, intent_id))
        if stream is None:
            return
        try:
            if kind == "voucher":
                self._raise_local(
                    stream, self._verified(envelope, stream.terms, stream.planned_ticks)
                )
            elif kind == "stop":
                signer, message, raw = self._stop_of(intent_id, envelope)
                if signer == stream.terms.buyer:
                    self._stop_local(stream, message, raw)
        except StreamRefusedError as exc:
            self.log.warning("pact.stream.shared_event_refused", intent_id=intent_id, code=exc.code)

    async def _keep_leases(self) -> None:
        assert self.shared is not None
        while True:
            await asyncio.sleep(LEASE_RENEW_S)
            served = [key for key, s in self.streams.items() if not s.closed]
            try:
                await self.shared.renew(served, ttl_ms=SHARED_TTL_MS)
            except Exception as exc:
                self.log.warning("pact.stream.lease_failed", error=str(exc)[:300])

    async def _recover_forever(self) -> None:
        while True:
            try:
                await self.recover()
            except Exception as exc:
                self.log.warning("pact.stream.recover_failed", error=str(exc)[:300])
            await asyncio.sleep(RECOVER_EVERY_S)

    async def recover(self) -> int:
        """Close every stream whose serving replica is gone at its stored highest voucher;
        how many were closed."""
        assert self.shared is not None
        assert self.settlement is not None
        closed = 0
        async for orphan in self.shared.orphans():
            if (orphan.buyer, orphan.intent_id) in self.streams:
                continue
            ticks = 0
            if isinstance(orphan.voucher, dict):
                message = orphan.voucher.get("message")
                if isinstance(message, dict) and isinstance(message.get("ticks"), int):
                    ticks = message["ticks"]
            body = {
                "voucher": orphan.voucher,
                "by": "seller",
                "code": "SELLER_STOPPED",
                "reason": "the replica serving the stream stopped",
                "chunks": ticks,
            }
            try:
                await self.settlement.close_stream(
                    orphan.settlement_id, body, idempotency_key=f"recover-{orphan.settlement_id}"
                )
            except SettlementRefusedError as exc:
                # Closed already (its replica's close arrived after all, or the sweeper).
                self.log.info(
                    "pact.stream.recovered_closed", intent_id=orphan.intent_id, code=exc.code
                )
            else:
                closed += 1
                self.log.info(
                    "pact.stream.recovered",
                    intent_id=orphan.intent_id,
                    ticks=ticks,
                )
            await self.shared.ended(orphan.buyer, orphan.intent_id)
        return closed

    async def aclose(self) -> None:
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        if self._closing:
            # A close still retrying is given a moment; past it, the shared store's recovery
            # (or, alone, settlement's sweeper at the deadline) closes the stream.
            _, left = await asyncio.wait(set(self._closing), timeout=5.0)
            for task in left:
                task.cancel()
            await asyncio.gather(*left, return_exceptions=True)
        if self.shared is not None:
            await self.shared.aclose()
