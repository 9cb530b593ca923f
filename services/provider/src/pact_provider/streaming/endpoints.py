"""Streaming endpoints (thin: read the body, call the streamer, answer)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse
from pact_schema import parse_json

from pact_provider.errors import BadEnvelopeError
from pact_provider.jsonio import json_bytes
from pact_provider.negotiation.endpoints import read_body
from pact_provider.runtime import ProviderRuntime, RuntimeDep

__all__ = ["build_router"]

_JSON = "application/json"


async def _body(request: Request, runtime: ProviderRuntime) -> Any:
    raw = await read_body(request, runtime.settings.max_body_bytes)
    try:
        body = parse_json(raw)
    except (ValueError, RecursionError) as exc:
        raise BadEnvelopeError(f"body is not JSON: {exc}"[:1000], code="REQUEST_MALFORMED") from exc
    if not isinstance(body, dict):
        raise BadEnvelopeError("the body must be a JSON object", code="REQUEST_MALFORMED")
    return body


async def open_stream(request: Request, runtime: RuntimeDep) -> StreamingResponse:
    body = await _body(request, runtime)
    events = await runtime.streamer.open(body.get("start"))
    return StreamingResponse(
        events,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def stream_voucher(intent_id: str, request: Request, runtime: RuntimeDep) -> Response:
    body = await _body(request, runtime)
    return Response(
        json_bytes(await runtime.streamer.voucher(intent_id, body.get("voucher"))), media_type=_JSON
    )


async def stream_stop(intent_id: str, request: Request, runtime: RuntimeDep) -> Response:
    body = await _body(request, runtime)
    return Response(
        json_bytes(await runtime.streamer.stop(intent_id, body.get("stop"))), media_type=_JSON
    )


def build_router() -> APIRouter:
    router = APIRouter(tags=["streaming"])
    router.add_api_route(
        "/pact/stream",
        open_stream,
        methods=["POST"],
        summary="Open a paid stream: {start: signed STREAM_START} → server-sent events",
        description="Checks the STREAM_START against the buyer's open streaming settlement, "
        "then streams `event: chunk` (a signed STREAM_CHUNK, seq from 0) as the buyer's "
        "vouchers pay for them, and ends with `event: stop` (the seller's STREAM_STOP and the "
        'settlement as closed, RECEIPT included). docs/protocol.md, "Streaming".',
        response_class=StreamingResponse,
    )
    router.add_api_route(
        "/pact/stream/{intent_id}/vouchers",
        stream_voucher,
        methods=["POST"],
        summary="{voucher: buyer-signed STREAM_VOUCHER} → the ticks paid so far",
        description="Cumulative: a lower or equal voucher changes nothing. Any replica takes "
        "it when the replicas share a quote store (answered once stored); without one it must "
        "reach the replica serving the stream (404 elsewhere).",
        response_class=Response,
    )
    router.add_api_route(
        "/pact/stream/{intent_id}/stop",
        stream_stop,
        methods=["POST"],
        summary="{stop: buyer-signed STREAM_STOP} → the stream ends and settles",
        description="The reason starts with the code (`BUYER_STOPPED: …`, `FAILED_POLICY: …`).",
        response_class=Response,
    )
    return router
