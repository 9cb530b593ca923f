"""Run localstripe for the gateway tests: private in-memory store, 127.0.0.1, port printed.

Usage: ``python localstripe_server.py [--port 0]``. Prints ``LOCALSTRIPE_PORT=<n>`` on stdout
once listening (port 0 lets the OS pick a free one, so there is no port race).

Differences from plain ``localstripe``, each because the tests need it:

- no ``/tmp/localstripe.pickle``: localstripe saves its whole store to that fixed path after
  every POST and reloads it at start; parallel test runs would share and clobber it;
- listens on 127.0.0.1 only (stock localstripe binds ``::``, absent on IPv4-only hosts);
- Stripe's idempotency semantics, which localstripe does not implement (it ignores the
  ``Idempotency-Key`` header): the first response to a POST is stored under (API key,
  Idempotency-Key) and replayed, with ``Idempotent-Replayed: true``, for a repeat of the same
  request; the same key with a different path or body gets 400 ``idempotency_error``, as from
  api.stripe.com;
- ``GET /_config/test/requests`` returns every POST seen (method, path, idempotency key), so
  tests can assert what actually went over the wire; ``DELETE`` clears it.
"""

from __future__ import annotations

import argparse
import hashlib
import socket
from typing import Any, cast

from aiohttp import web
from localstripe import resources, server  # type: ignore[import-untyped]

_requests: list[dict[str, Any]] = []
_replays: dict[tuple[str, str], tuple[str, bytes, int, bytes]] = {}


@web.middleware
async def idempotency_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    if request.method != "POST" or request.path.startswith("/_config/"):
        return cast(web.StreamResponse, await handler(request))
    body = await request.read()  # cached by aiohttp; localstripe reads it again
    key = request.headers.get("Idempotency-Key")
    _requests.append({"method": request.method, "path": request.path, "idempotency_key": key})
    if not key:
        return cast(web.StreamResponse, await handler(request))
    slot = (request.headers.get("Authorization", ""), key)
    fingerprint = hashlib.sha256(body).digest()
    seen = _replays.get(slot)
    if seen is not None:
        path, fp, status, payload = seen
        if path != request.path or fp != fingerprint:
            return web.json_response(
                {
                    "error": {
                        "type": "idempotency_error",
                        "message": (
                            "Keys for idempotent requests can only be used with the same "
                            "parameters they were first used with."
                        ),
                    }
                },
                status=400,
            )
        return web.Response(
            body=payload,
            status=status,
            content_type="application/json",
            headers={"Idempotent-Replayed": "true", "Idempotency-Key": key},
        )
    response = cast(web.StreamResponse, await handler(request))
    if isinstance(response, web.Response) and response.body is not None:
        raw = response.body
        payload = raw if isinstance(raw, bytes) else bytes(raw)  # type: ignore[arg-type]
        _replays[slot] = (request.path, fingerprint, response.status, payload)
    return response


async def list_requests(request: web.Request) -> web.Response:
    return web.json_response(_requests)


async def clear_requests(request: web.Request) -> web.Response:
    _requests.clear()
    return web.json_response({"cleared": True})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()

    resources.Store.dump_to_disk = lambda self: None
    resources.Store.try_load_from_disk = lambda self: None

    app = server.app
    # Outermost, so localstripe's own error middleware has already turned its errors into
    # responses, which are stored and replayed like any other.
    app.middlewares.insert(0, idempotency_middleware)
    app.router.add_get("/_config/test/requests", list_requests)
    app.router.add_delete("/_config/test/requests", clear_requests)

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    print(f"LOCALSTRIPE_PORT={sock.getsockname()[1]}", flush=True)
    web.run_app(app, sock=sock, access_log=None, print=None, handle_signals=True)


if __name__ == "__main__":
    main()
