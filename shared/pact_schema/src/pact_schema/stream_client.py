"""The buyer's side of a paid stream (docs/protocol.md, "Streaming").

:class:`StreamBuyer` opens ``POST {provider}/pact/stream`` with a signed ``STREAM_START`` and
reads its server-sent events. Every chunk is checked (the seller's signature, the intent,
``seq`` without gaps, expiry: :class:`~pact_schema.streaming.ChunkChecker`); then the tick is
paid: the per-minute spend cap is checked, and a cumulative ``STREAM_VOUCHER`` for all ticks
so far is signed and posted to ``…/pact/stream/{intent_id}/vouchers``. Ticks are paced at
``tick_ms`` at most. The buyer stops (a signed ``STREAM_STOP`` whose reason starts with the
code) on request (``max_ticks``), on a bad chunk, a gap or an expired chunk, or when the next
tick would pass the spend cap; the budget ends the stream by itself (the seller stops when
the vouchers reach it). The result carries the final settlement and its RECEIPT.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx

from pact_schema.clock import Clock, now_ms
from pact_schema.codes import FailureCode
from pact_schema.envelope import sign_message
from pact_schema.keys import Keypair
from pact_schema.messages import PROTOCOL_VERSION
from pact_schema.money import decimal_to_wire
from pact_schema.streaming import (
    ChunkChecker,
    SpendCap,
    StreamFailureError,
    amount_for_ticks,
    sign_voucher,
)

__all__ = ["StreamBuyer", "StreamResult"]

START_TTL_MS = 300_000  # the reference's STREAM_START expires_at_ms: 5 min


@dataclass
class StreamResult:
    intent_id: str
    code: str  # COMPLETED, BUYER_STOPPED, SELLER_STOPPED or the failure that ended it
    reason: str
    ticks: int = 0
    paid_amount: Decimal = Decimal(0)
    chunks: list[bytes] = field(default_factory=list)
    final_voucher: dict[str, Any] | None = None
    settlement: dict[str, Any] | None = None

    @property
    def receipt(self) -> dict[str, Any] | None:
        receipt = (self.settlement or {}).get("receipt")
        return receipt if isinstance(receipt, dict) else None

    def to_json(self) -> dict[str, Any]:
        return {
            "intent_id": self.intent_id,
            "code": self.code,
            "reason": self.reason,
            "ticks": self.ticks,
            "paid_amount": str(self.paid_amount),
            "chunks": len(self.chunks),
            "final_voucher": self.final_voucher,
            "settlement": self.settlement,
        }


class StreamBuyer:
    def __init__(
        self,
        provider_url: str,
        keypair: Keypair,
        *,
        seller: str,
        intent_id: str,
        budget: Decimal,
        tick_ms: int,
        planned_ticks: int = 50,
        max_spend_per_minute: Decimal | None = None,
        max_ticks: int | None = None,
        http: httpx.AsyncClient | None = None,
        clock: Clock = now_ms,
        sleep: Callable[[float], Any] = asyncio.sleep,
        on_chunk: Callable[[bytes], None] | None = None,
    ) -> None:
        self.url = provider_url.rstrip("/")
        self.keypair = keypair
        self.seller = seller
        self.intent_id = intent_id
        self.budget = budget
        self.tick_ms = tick_ms
        self.planned_ticks = planned_ticks
        self.cap = SpendCap(max_spend_per_minute)
        self.max_ticks = max_ticks
        self.clock = clock
        self.sleep = sleep
        self.on_chunk = on_chunk
        self._http = http or httpx.AsyncClient(timeout=httpx.Timeout(30.0))

    async def aclose(self) -> None:
        await self._http.aclose()

    def _start(self) -> dict[str, Any]:
        now = self.clock()
        return sign_message(
            {
                "protocol_version": PROTOCOL_VERSION,
                "type": "STREAM_START",
                "intent_id": self.intent_id,
                "agreed_price": decimal_to_wire(self.budget),
                "tick_ms": self.tick_ms,
                "sent_at_ms": now,
                "expires_at_ms": now + START_TTL_MS,
                "planned_ticks": self.planned_ticks,
            },
            self.keypair,
            signed_at_ms=now,
        )

    async def _post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return await self._http.post(f"{self.url}/pact/stream/{self.intent_id}/{path}", json=body)

    async def _stop(self, code: str, reason: str) -> None:
        now = self.clock()
        stop = sign_message(
            {
                "protocol_version": PROTOCOL_VERSION,
                "type": "STREAM_STOP",
                "intent_id": self.intent_id,
                "by": "buyer",
                "reason": f"{code}: {reason}",
                "sent_at_ms": now,
                "expires_at_ms": now + START_TTL_MS,
            },
            self.keypair,
            signed_at_ms=now,
        )
        await self._post("stop", {"stop": stop})

    async def run(self) -> StreamResult:
        result = StreamResult(self.intent_id, FailureCode.HTTP_STREAMING_ERROR, "no stop event")
        checker = ChunkChecker(intent_id=self.intent_id, seller=self.seller)
        stopping = False
        next_tick_at = self.clock()
        async with self._http.stream(
            "POST", f"{self.url}/pact/stream", json={"start": self._start()}
        ) as response:
            if response.status_code != 200:
                body = (await response.aread()).decode("utf-8", "replace")
                result.reason = f"provider answered HTTP {response.status_code}: {body[:300]}"
                return result
            event = ""
            async for line in response.aiter_lines():
                if line.startswith("event: "):
                    event = line[len("event: ") :]
                    continue
                if not line.startswith("data: "):
                    continue
                data = json.loads(line[len("data: ") :])
                if event == "stop":
                    self._ended(result, data)
                    return result
                if event != "chunk" or stopping:
                    continue
                try:
                    chunk = checker.check(data, now_ms=self.clock())
                    price = amount_for_ticks(self.budget, self.planned_ticks, result.ticks + 1)
                    self.cap.check(price - result.paid_amount, self.clock())
                except StreamFailureError as exc:
                    result.code, result.reason = exc.code, exc.detail
                    stopping = True
                    await self._stop(exc.code, exc.detail)
                    continue
                payload = base64.b64decode(chunk.chunk_b64)
                result.chunks.append(payload)
                if self.on_chunk is not None:
                    self.on_chunk(payload)
                wait_ms = next_tick_at - self.clock()
                if wait_ms > 0:
                    await self.sleep(wait_ms / 1000)
                next_tick_at = max(next_tick_at, self.clock()) + self.tick_ms
                await self._pay(result, price)
                if self.max_ticks is not None and result.ticks >= self.max_ticks:
                    stopping = True
                    result.code, result.reason = "BUYER_STOPPED", "the buyer asked to stop"
                    await self._stop("BUYER_STOPPED", "the buyer asked to stop")
        return result

    async def _pay(self, result: StreamResult, price: Decimal) -> None:
        now = self.clock()
        voucher = sign_voucher(
            self.keypair,
            intent_id=self.intent_id,
            seller=self.seller,
            ticks=result.ticks + 1,
            paid_amount=price,
            seq=result.ticks + 1,
            sent_at_ms=now,
        )
        answer = await self._post("vouchers", {"voucher": voucher})
        if answer.status_code != 200:
            raise StreamFailureError(
                FailureCode.HTTP_STREAMING_ERROR,
                f"the provider refused a voucher: HTTP {answer.status_code}",
            )
        self.cap.record(price - result.paid_amount, now)
        result.ticks += 1
        result.paid_amount = price
        result.final_voucher = voucher

    @staticmethod
    def _ended(result: StreamResult, data: dict[str, Any]) -> None:
        settlement = data.get("settlement")
        result.settlement = settlement if isinstance(settlement, dict) else None
        stop = data.get("stop")
        message = stop.get("message") if isinstance(stop, dict) else None
        reason = message.get("reason") if isinstance(message, dict) else None
        if isinstance(reason, str) and result.code == FailureCode.HTTP_STREAMING_ERROR:
            code, _, text = reason.partition(": ")
            result.code, result.reason = code, text
