"""The reference adapter's routes: ``POST /quote``, ``/commit``, ``/reveal``, ``/stream/chunk``
and ``GET /health`` (thin: read the body, call the adapter, answer JSON)."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from pact_schema import parse_json
from starlette.responses import Response

from pact_provider.errors import BadEnvelopeError, problem_document
from pact_provider.jsonio import json_bytes
from pact_provider.negotiation.endpoints import read_body
from pact_provider.negotiation.service import Decision
from pact_provider.openapi import documented_problem
from pact_provider.reference.schemas import (
    CommitRequest,
    EnvelopeResponse,
    HealthResponse,
    ProviderQuoteRequest,
    RevealRequest,
    RevealResponse,
    StreamChunkRequest,
)
from pact_provider.runtime import ProviderRuntime, RuntimeDep

__all__ = ["build_router"]

_JSON = "application/json"


_DETAILS: dict[str, str] = {
    "REQUEST_MALFORMED": "body is not JSON: Expecting value: line 1 column 1 (char 0)",
    "PAYLOAD_TOO_LARGE": "the body exceeds 65536 bytes",
    "UNSUPPORTED_MEDIA_TYPE": "send Content-Type: application/json",
    "NOT_FOUND": "this provider holds no trade for intent_id 'intent-7f3c2a'",
    "NOT_DELIVERED": "settlement has not recorded a delivery for intent_id 'intent-7f3c2a'",
    "AMBIGUOUS_INTENT_ID": "intent_id 'intent-7f3c2a' names trades of more than one buyer; "
    "add buyer_public_key_b58",
    "SETTLEMENT_UNAVAILABLE": "settlement did not answer in time; ask again",
    "REVEAL_NOT_PROVEN": "payload_b64 and nonce_b64 do not hash to the recorded commitment",
}


def _problem(status: int, description: str, *codes: str) -> dict[str, Any]:
    """A documented problem response with one real problem document per code."""
    headers = None
    if status == 503:
        headers = {
            "Retry-After": {
                "description": "Seconds to wait before asking again.",
                "schema": {"type": "integer"},
            }
        }
    return documented_problem(
        f"{description} ({', '.join(codes)}).",
        {
            code: {"summary": code, "value": problem_document(status, code, _DETAILS[code])}
            for code in codes
        },
        headers=headers,
    )


_BODY_PROBLEMS: dict[int | str, dict[str, Any]] = {
    400: _problem(400, "Not a JSON object, or a field of the wrong shape", "REQUEST_MALFORMED"),
    413: _problem(413, "The body is larger than MAX_BODY_BYTES", "PAYLOAD_TOO_LARGE"),
    415: _problem(415, "The body is not JSON", "UNSUPPORTED_MEDIA_TYPE"),
}
_TRADE_PROBLEMS: dict[int | str, dict[str, Any]] = {
    **_BODY_PROBLEMS,
    404: _problem(404, "This provider holds no trade for the intent id", "NOT_FOUND"),
    409: _problem(
        409,
        "Not delivered yet, ended without a delivery, or several buyers used the intent id",
        "NOT_DELIVERED",
        "AMBIGUOUS_INTENT_ID",
    ),
    503: _problem(
        503, "Settlement is unavailable; ask again after Retry-After", "SETTLEMENT_UNAVAILABLE"
    ),
}


async def _body(request: Request, runtime: ProviderRuntime) -> Any:
    raw = await read_body(request, runtime.settings.max_body_bytes)
    try:
        return parse_json(raw)
    except (ValueError, RecursionError) as exc:
        raise BadEnvelopeError(f"body is not JSON: {exc}"[:1000], code="REQUEST_MALFORMED") from exc


def _json(document: dict[str, Any]) -> Response:
    return Response(json_bytes(document), media_type=_JSON)


def _decided(runtime: ProviderRuntime, decision: Decision, started: float) -> Response:
    runtime.log.info(decision.event, **decision.transcript())
    runtime.metrics.message(
        decision.message_type, decision.outcome, decision.code, time.perf_counter() - started
    )
    return _json({"envelope": decision.envelope})


async def reference_quote(request: Request, runtime: RuntimeDep) -> Response:
    started = time.perf_counter()
    decision = await runtime.reference.quote(await _body(request, runtime))
    return _decided(runtime, decision, started)


async def reference_commit(request: Request, runtime: RuntimeDep) -> Response:
    return _json(await runtime.reference.commit(await _body(request, runtime)))


async def reference_reveal(request: Request, runtime: RuntimeDep) -> Response:
    return _json(await runtime.reference.reveal(await _body(request, runtime)))


async def reference_stream_chunk(request: Request, runtime: RuntimeDep) -> Response:
    started = time.perf_counter()
    body = await _body(request, runtime)
    if isinstance(body, dict) and isinstance(body.get("intent_id"), str):
        seq = body.get("seq")
        if isinstance(seq, int) and not isinstance(seq, bool):
            sent = runtime.streamer.sent_chunk(body["intent_id"], seq)
            if sent is not None:
                return _json({"envelope": sent})
    decision = runtime.reference.stream_chunk(body)
    return _decided(runtime, decision, started)


async def reference_health(runtime: RuntimeDep) -> Response:
    return _json(runtime.reference.health())


def _request_body(model: type[Any], description: str) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "description": description,
            "content": {
                _JSON: {
                    "schema": model.model_json_schema(ref_template="#/components/schemas/{model}")
                }
            },
        }
    }


def build_router() -> APIRouter:
    router = APIRouter(tags=["reference adapter"])
    router.add_api_route(
        "/quote",
        reference_quote,
        methods=["POST"],
        summary="ProviderQuoteRequest → {envelope}: a signed open ASK, bound to the intent id",
        description="The reference adapter's quote. The request is unsigned, so the ASK binds "
        "no buyer (`open_quote: true`): any buyer may accept it once for its intent id, by "
        "carrying it in the ACCEPT's `quote` or, with the quote store, by a bare ACCEPT at "
        "exactly its price and mode. Priced as an INTENT with the same fields; refusals "
        "(`PRICE_ABOVE_MAX`, `INTENT_NOT_ALLOWED`, `SCHEMA_VALIDATION_FAILED`, ...) are a "
        "signed REJECT in `envelope`.",
        response_class=Response,
        responses={
            200: {"model": EnvelopeResponse, "description": "A signed ASK or REJECT."},
            **_BODY_PROBLEMS,
        },
        openapi_extra=_request_body(ProviderQuoteRequest, "ProviderQuoteRequest"),
    )
    router.add_api_route(
        "/commit",
        reference_commit,
        methods=["POST"],
        summary="CommitRequest → {envelope}: the COMMIT settlement recorded for the trade",
        description="The commitment this provider sent settlement when it delivered, signed "
        "afresh. `payload_b64` and `nonce_b64` are ignored: this provider never commits to "
        "bytes it did not produce. Answered once settlement recorded the COMMIT.",
        response_class=Response,
        responses={
            200: {"model": EnvelopeResponse, "description": "A signed COMMIT."},
            **_TRADE_PROBLEMS,
        },
        openapi_extra=_request_body(CommitRequest, "CommitRequest"),
    )
    router.add_api_route(
        "/reveal",
        reference_reveal,
        methods=["POST"],
        summary="RevealRequest → {envelope, ok}: a signed REVEAL of the recorded delivery",
        description="Only for a trade settlement recorded as delivered, and only to a caller "
        "who shows the delivery (`payload_b64` and `nonce_b64` hashing to the recorded "
        "commitment: the buyer got them in the ACCEPT acknowledgement); anyone else gets 403 "
        "`REVEAL_NOT_PROVEN`. `ok: false, code: FAILED_PROOF` when the caller's "
        "`commit_hash_hex` is not the recorded commitment.",
        response_class=Response,
        responses={
            200: {"model": RevealResponse, "description": "A signed REVEAL and the proof check."},
            **_TRADE_PROBLEMS,
            403: _problem(
                403, "The caller does not hold the recorded delivery", "REVEAL_NOT_PROVEN"
            ),
        },
        openapi_extra=_request_body(RevealRequest, "RevealRequest"),
    )
    router.add_api_route(
        "/stream/chunk",
        reference_stream_chunk,
        methods=["POST"],
        summary="StreamChunkRequest → {envelope}: a signed STREAM_CHUNK a running stream sent",
        description="The chunk `seq` (one of the last 256) of a stream of this intent running "
        "on this replica, as it was signed and sent; otherwise a signed REJECT "
        "`SETTLEMENT_MODE_NOT_ALLOWED`. Streams are opened with `POST /pact/stream` and paid "
        'with vouchers (docs/protocol.md, "Streaming").',
        response_class=Response,
        responses={
            200: {"model": EnvelopeResponse, "description": "A signed STREAM_CHUNK or REJECT."},
            **_BODY_PROBLEMS,
        },
        openapi_extra=_request_body(StreamChunkRequest, "StreamChunkRequest"),
    )
    router.add_api_route(
        "/health",
        reference_health,
        methods=["GET"],
        summary="The reference adapter's health: ok and the seller's public key",
        response_class=Response,
        responses={200: {"model": HealthResponse, "description": "Always ok while serving."}},
    )
    return router
