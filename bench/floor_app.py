"""The floor: the least work a pact provider can do per INTENT, as a bare Starlette app.

Per ``POST /pact`` it parses the body with ``pact_schema.parse_json``, canonicalises and
verifies the one envelope with ``pact_schema.verify_envelope``, signs one reply with
``sign_message`` and returns it as JSON. The reply is the smallest ASK a buyer would accept:
the fields docs/protocol.md requires of every ASK (``price``, ``unit``, ``latency_ms``,
``valid_for_ms``, ``bond_required`` beside the common ones), with fixed values in their wire
form, made once at start-up. Signing hashes the canonical bytes, so a reply that is not a
valid ASK would make the floor cheaper than any provider can be. No routing framework beyond
Starlette's, no middleware, no validation models, no pricing, no logging, no metrics. uvicorn
runs it exactly as ``pact-provider serve`` runs the provider: one process, ``loop``/``http`` on
``auto`` (uvloop and httptools when installed), no access log, no server header.

    python -m bench.floor_app --host 127.0.0.1 --port 8100
"""

from __future__ import annotations

import argparse
from decimal import Decimal

import orjson
import uvicorn
from pact_schema import (
    EnvelopeError,
    Keypair,
    message_to_wire,
    now_ms,
    parse_json,
    parse_message,
    sign_message,
    verify_envelope,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

# A fixed key: the floor's identity does not matter, only the cost of signing with it.
FLOOR_KEY = Keypair(bytes(range(200, 232)))
_JSON = "application/json"
_VALID_FOR_MS = 20_000
# The ASK-specific required fields, in wire form (JSON numbers as pact_schema writes them).
_ASK_TERMS = {
    key: value
    for key, value in message_to_wire(
        parse_message(
            {
                "protocol_version": "pact/1.0",
                "type": "ASK",
                "intent_id": "floor",
                "price": Decimal("0.00008"),
                "unit": "request",
                "latency_ms": 100,
                "valid_for_ms": _VALID_FOR_MS,
                "bond_required": Decimal("0.00016"),
                "sent_at_ms": 1,
                "expires_at_ms": 1 + _VALID_FOR_MS,
            }
        )
    ).items()
    if key in ("price", "unit", "latency_ms", "valid_for_ms", "bond_required")
}


async def pact(request: Request) -> Response:
    try:
        verified = verify_envelope(parse_json(await request.body()))
    except (ValueError, EnvelopeError) as exc:
        return Response(orjson.dumps({"error": str(exc)}), status_code=400, media_type=_JSON)
    now = now_ms()
    reply = {
        "protocol_version": "pact/1.0",
        "type": "ASK",
        "intent_id": verified.message_raw.get("intent_id"),
        "sent_at_ms": now,
        "expires_at_ms": now + _VALID_FOR_MS,
        **_ASK_TERMS,
    }
    return Response(
        orjson.dumps(sign_message(reply, FLOOR_KEY, signed_at_ms=now)), media_type=_JSON
    )


async def healthz(_: Request) -> Response:
    return Response(b'{"status":"ok"}', media_type=_JSON)


app = Starlette(routes=[Route("/pact", pact, methods=["POST"]), Route("/healthz", healthz)])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.floor_app")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    args = parser.parse_args(argv)
    # The same uvicorn settings as pact_provider.cli.serve with --workers 1.
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        access_log=False,
        server_header=False,
        log_level="warning",
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
