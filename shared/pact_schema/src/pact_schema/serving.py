"""uvicorn with bounds on slow clients: how both services' ``serve`` commands run.

What uvicorn offers, and uses here: ``timeout_keep_alive`` (an idle kept-alive connection is
closed) and ``limit_concurrency`` (a request whose headers complete while that many connections,
its own included, or requests are open is answered 503 ``Service Unavailable`` and its
connection closed). What it lacks: any bound on how long a client may take to send a request.
A fresh connection that sends nothing, or trickles its headers or its body a byte at a time
(slowloris), is held open for ever; ``timeout_keep_alive`` is only armed *after* a response,
and ``h11_max_incomplete_event_size`` caps the size of the headers (of the h11 protocol only),
not their duration.

:class:`GuardedHttpToolsProtocol` adds the two deadlines to uvicorn's own httptools protocol
(the one ``uvicorn[standard]`` picks), where the parser reports each step of a request:

* **headers**: from the connection's opening, or from the first byte of the next request on a
  kept-alive connection, until the request's headers are complete: ``header_timeout_s``;
* **body**: from the end of the headers until the end of the body: ``body_timeout_s``.

A request that misses its deadline is answered ``408 Request Timeout`` (when no response has
started on the connection) and its connection is closed; a request being answered is marked
disconnected first, so the application sees ``http.disconnect`` and nothing more is written.
The time the application takes is never limited here: the body deadline ends with the body.

The deadlines are a server concern, so they live in the protocol, not in ASGI middleware: the
application is not called before the headers are complete, and an application that answers
early (413, 415) stops reading a body a client may keep trickling. uvicorn has no option or
hook for them, and a different server would change everything else the services rely on
(graceful shutdown, worker processes, logging); the subclass overrides four parser callbacks
(``connection_made``, ``on_message_begin``, ``on_headers_complete``, ``on_message_complete``)
and ``connection_lost`` and calls uvicorn's implementation in each.

:class:`GuardedConfig` is uvicorn's ``Config`` with the limits (it is pickled to worker
processes, so the protocol is chosen by class and the limits travel on the config);
:func:`run_server` runs it as ``uvicorn.run`` would. Needs ``pact-schema[server]``.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Literal

from uvicorn import Config, Server
from uvicorn.config import STARTUP_FAILURE
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState
from uvicorn.supervisors import Multiprocess

from pact_schema.http_settings import HttpLimits

__all__ = ["GuardedConfig", "GuardedHttpToolsProtocol", "HttpLimits", "run_server"]

Phase = Literal["headers", "body"]
_TIMEOUT_BODY = b"Request Timeout"


class GuardedConfig(Config):
    """uvicorn's ``Config`` serving with :class:`GuardedHttpToolsProtocol` and ``limits``."""

    def __init__(self, app: Any, *, limits: HttpLimits, **options: Any) -> None:
        super().__init__(
            app,
            http=GuardedHttpToolsProtocol,
            ws="none",  # no WebSockets are served; an Upgrade request is answered as plain HTTP
            limit_concurrency=limits.max_connections,
            timeout_keep_alive=limits.keep_alive_timeout_s,
            **options,
        )
        self.http_limits = limits


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header deadline and a body deadline."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        limits = getattr(config, "http_limits", None)
        self._limits = limits if isinstance(limits, HttpLimits) else HttpLimits()
        self._deadline: asyncio.TimerHandle | None = None

    # --- the deadlines ----------------------------------------------------------------------

    def _arm(self, phase: Phase) -> None:
        self._disarm()
        seconds = (
            self._limits.header_timeout_s if phase == "headers" else self._limits.body_timeout_s
        )
        self._deadline = self.loop.call_later(seconds, self._expired, phase, seconds)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self, phase: Phase, seconds: float) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        # Answer 408 only where no other response is, or will be, on the wire: not after a
        # started response, nor behind pipelined requests still waiting for theirs.
        if phase == "headers":
            answer = (cycle is None or cycle.response_complete) and not self.pipeline
        else:
            answer = not cycle.response_started and not self.pipeline
            if not cycle.response_complete:
                cycle.disconnected = True  # the app's receive() now says http.disconnect
                cycle.message_event.set()
        self.logger.warning(
            "http.read_timeout: request %s not complete within %s s; connection closed%s",
            phase,
            seconds,
            " (408)" if answer else "",
        )
        if answer:
            self._send_408()
        self.transport.close()

    def _send_408(self) -> None:
        content = [STATUS_LINE[408]]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend(
            [
                b"content-type: text/plain; charset=utf-8\r\n",
                b"content-length: " + str(len(_TIMEOUT_BODY)).encode("ascii") + b"\r\n",
                b"connection: close\r\n",
                b"\r\n",
                _TIMEOUT_BODY,
            ]
        )
        self.transport.write(b"".join(content))

    # --- uvicorn's callbacks, each extended ---------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm("headers")  # uvicorn arms nothing before the first request's first byte

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._deadline is None:  # the next request on a kept-alive connection
            self._arm("headers")

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()
        if not self.transport.is_closing():
            self._arm("body")

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()


def run_server(config: GuardedConfig) -> int:
    """Serve ``config`` as ``uvicorn.run`` does: in this process, or in ``config.workers``
    processes sharing one socket (the app must then be an import string). Returns uvicorn's
    start-up failure status (3) when the server did not start, else 0."""
    if config.workers > 1:
        if not isinstance(config.app, str):
            raise ValueError("several workers need the app as an import string")
        Multiprocess(config, sockets=[config.bind_socket()]).run()
        return 0
    server = Server(config)
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    return 0 if server.started else STARTUP_FAILURE
