"""``POST /pact``: read the raw body, let the negotiator decide, return the signed reply."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable

from fastapi import APIRouter, Request
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from pact_provider.errors import (
    PayloadTooLargeError,
    ProviderError,
    SettlementUnavailableError,
    UnsupportedMediaTypeError,
    problem_response,
)
from pact_provider.jsonio import json_bytes
from pact_provider.negotiation.examples import OpenAPIExamples
from pact_provider.negotiation.schemas import Envelope
from pact_provider.observability import ACCESS_LINE, AccessLine
from pact_provider.openapi import documented_problem
from pact_provider.runtime import ProviderRuntime

__all__ = [
    "PACT_PATH",
    "PactFastPath",
    "answer",
    "build_router",
    "negotiate",
    "read_body",
    "receive_body",
]

JSON_MEDIA_TYPE = "application/json"
_JSON_BYTES = JSON_MEDIA_TYPE.encode("ascii")
PACT_PATH = "/pact"

PACT_DESCRIPTION = """\
Send one signed `pact-envelope/1.0` as the body (the body *is* the envelope). No token: the
envelope's hash and Ed25519 signature are verified before anything else, and the signer is
the buyer. The answer is a provider-signed
envelope (HTTP 200), or a problem document when no signed answer is possible.

* **INTENT** → signed **ASK** (price from the price book, bound to the INTENT's signer, round 1),
  or a signed **REJECT** with a failure code (expired, clock skew, not offered, over `max_price`,
  schema errors).
* **BID** (carrying the ASK it answers in `quote`) → a new **ASK** one round later (meet halfway,
  never below the floor), or **REJECT** `ROUND_EXCEEDED` against a round-3 quote.
* **ACCEPT** (carrying the ASK in `quote`, `agreed_price` equal to its price) → forwarded to
  settlement → signed **ACCEPT** acknowledgement with `settlement: {id, state, rail, amount,
  bond}`, or a signed **REJECT** (e.g. `QUOTE_EXPIRED`, `PRICE_MISMATCH`, `INSUFFICIENT_ESCROW`),
  or **503** with `Retry-After` when settlement is unavailable (resend the same ACCEPT).
* **REJECT** → signed REJECT acknowledgement.
"""


async def receive_body(
    headers: Iterable[tuple[bytes, bytes]], receive: Receive, limit: int
) -> bytes:
    """The raw body from the ASGI ``receive`` channel, refusing non-JSON media types (415) and
    bodies over ``limit`` bytes (413)."""
    content_type: str | None = None
    declared: str | None = None
    for name, value in headers:  # ASGI header names are lower-case; the first one counts
        if name == b"content-type" and content_type is None:
            content_type = value.decode("latin-1")
        elif name == b"content-length" and declared is None:
            declared = value.decode("latin-1")
    if content_type is not None:
        media = content_type.split(";", 1)[0].strip().lower()
        if media != JSON_MEDIA_TYPE and not media.endswith("+json"):
            raise UnsupportedMediaTypeError(
                f"the body must be a JSON envelope (Content-Type: {JSON_MEDIA_TYPE}), "
                f"not {media or 'empty'}"
            )
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(f"the body exceeds {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk: bytes = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise PayloadTooLargeError(f"the body exceeds {limit} bytes")
            chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def read_body(request: Request, limit: int) -> bytes:
    """:func:`receive_body` for a Starlette request."""
    return await receive_body(request.scope["headers"], request.receive, limit)


async def answer(
    runtime: ProviderRuntime, read: Callable[[int], Awaitable[bytes]], scope: Scope
) -> bytes:
    """The JSON bytes of the signed reply to one ``POST /pact`` body, with the message metrics.

    The transcript event goes into the request's access line when ``RequestContextMiddleware``
    made one, else on a line of its own. Raises :class:`ProviderError` (a problem document)
    when no signed reply is possible.
    """
    started = time.perf_counter()
    line: AccessLine | None = scope.get(ACCESS_LINE)
    try:
        body = await read(runtime.settings.max_body_bytes)
        decision = await runtime.negotiator.handle(body, None if line is None else line.record)
    except ProviderError as exc:
        kind = "ACCEPT" if isinstance(exc, SettlementUnavailableError) else "UNVERIFIED"
        runtime.metrics.message(kind, "PROBLEM", exc.code, time.perf_counter() - started)
        raise
    runtime.metrics.message(
        decision.message_type, decision.outcome, decision.code, time.perf_counter() - started
    )
    return json_bytes(decision.envelope)


async def negotiate(request: Request) -> Response:
    """``POST /pact`` as a route: the raw body to the negotiator, its signed reply as JSON."""
    runtime: ProviderRuntime = request.app.state.provider
    payload = await answer(runtime, lambda limit: read_body(request, limit), request.scope)
    return Response(payload, media_type=JSON_MEDIA_TYPE)


class PactFastPath:
    """The innermost middleware of the provider app: ``POST /pact`` answered here, as a bare
    ASGI app; everything else (and ``/pact`` under a root path) on to FastAPI's exception
    middleware, router and routes.

    Every middleware of the app wraps it, so ``/pact`` passes the same request context,
    500 guard and whatever an embedder adds (auth, CORS, tracing) as every other route. It
    leaves out only FastAPI's routing and request handling (``Request``/``Response`` objects,
    dependency solving, exit stacks), which cost more than the rest of the HTTP handling
    together (``bench/results/findings.md``). The body comes from ``receive``, the signed
    reply goes out in two ASGI messages through the same :func:`answer` the route uses, and a
    :class:`ProviderError` is rendered as the app's handler renders it; anything else
    propagates. ``scope["route"]`` is the documented ``/pact`` route, as the router would set.
    """

    def __init__(self, app: ASGIApp, *, route: BaseRoute | None = None) -> None:
        self.app = app
        self.route = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] != PACT_PATH
            or scope["method"] != "POST"
            or scope.get("root_path")
        ):
            await self.app(scope, receive, send)
            return
        if self.route is not None:
            scope["route"] = self.route
        runtime: ProviderRuntime = scope["app"].state.provider
        try:
            payload = await answer(
                runtime, lambda limit: receive_body(scope["headers"], receive, limit), scope
            )
        except ProviderError as exc:
            response = problem_response(exc.status, exc.code, exc.detail, exc.headers)
            await response(scope, receive, send)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-length", str(len(payload)).encode("ascii")),
                    (b"content-type", _JSON_BYTES),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})


def build_router(examples: OpenAPIExamples) -> APIRouter:
    router = APIRouter(tags=["negotiation"])
    problems = examples.problems

    router.add_api_route(
        PACT_PATH,
        negotiate,
        methods=["POST"],
        summary="Negotiate: send one signed envelope, get one signed envelope back",
        description=PACT_DESCRIPTION,
        response_class=Response,
        responses={
            200: {
                "description": "A provider-signed envelope: ASK, REJECT or ACCEPT acknowledgement.",
                "model": Envelope,
                "content": {JSON_MEDIA_TYPE: {"examples": dict(examples.replies)}},
            },
            400: documented_problem(
                "Not JSON, not an envelope, or the envelope does not verify "
                "(ENVELOPE_MALFORMED, ENVELOPE_BAD_VERSION, ENVELOPE_BAD_HASH, "
                "ENVELOPE_HASH_MISMATCH, ENVELOPE_BAD_KEY, ENVELOPE_BAD_SIGNATURE).",
                {"hash_mismatch": problems["400"]},
            ),
            413: documented_problem(
                "The body is larger than MAX_BODY_BYTES.", {"too_large": problems["413"]}
            ),
            415: documented_problem("The body is not JSON.", {"not_json": problems["415"]}),
            503: {
                **documented_problem(
                    "Settlement is unavailable; resend the same ACCEPT after Retry-After seconds.",
                    {"unavailable": problems["503"]},
                ),
                "headers": {
                    "Retry-After": {
                        "description": "Seconds to wait before resending the same ACCEPT.",
                        "schema": {"type": "integer"},
                    }
                },
            },
        },
        openapi_extra={
            "security": [],
            "x-pact-authentication": "the buyer's Ed25519 signature on the envelope (no token)",
            "requestBody": {
                "required": True,
                "description": "A buyer-signed pact-envelope/1.0.",
                "content": {
                    JSON_MEDIA_TYPE: {
                        "schema": {"$ref": "#/components/schemas/Envelope"},
                        "examples": dict(examples.requests),
                    }
                },
            },
        },
    )
    return router
