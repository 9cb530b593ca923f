"""A TCP proxy that counts database round trips: how many times a client spoke after the server.

``RoundTripProxy(upstream_host, upstream_port)`` listens on a free loopback port and relays
bytes both ways. For each client connection it counts one *round trip* every time the client
sends after having received (or at the start): the client's messages that go out before the
server answers (a pipelined Parse/Bind/Execute/Sync, an ``executemany`` batch) are one round
trip, whatever the statement count or how TCP cut the bytes. That is the quantity that costs
latency and wake-ups on both sides, and it includes what no statement log shows: ``BEGIN``,
``COMMIT``, the pool's pre-ping, prepares. It runs in its own thread with its own event loop, so
the bench's main thread stays free; the bench only routes a short measured phase through it
(the relay adds latency, so the timed levels never go through it).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from typing import Any

__all__ = ["RoundTripProxy"]


class RoundTripProxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self._round_trips = 0
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    # -- counter ---------------------------------------------------------------------------

    @property
    def round_trips(self) -> int:
        with self._lock:
            return self._round_trips

    def _count(self) -> None:
        with self._lock:
            self._round_trips += 1

    # -- relay -----------------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            return
        # "waiting": the client's last bytes have not been answered yet
        state = {"waiting": False}

        async def client_to_server() -> None:
            while data := await reader.read(65536):
                if not state["waiting"]:
                    state["waiting"] = True
                    self._count()
                up_writer.write(data)
                await up_writer.drain()
            up_writer.close()

        async def server_to_client() -> None:
            while data := await up_reader.read(65536):
                state["waiting"] = False
                writer.write(data)
                await writer.drain()
            writer.close()

        tasks = [
            asyncio.ensure_future(client_to_server()),
            asyncio.ensure_future(server_to_client()),
        ]
        with contextlib.suppress(Exception):
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()
        for w in (writer, up_writer):
            with contextlib.suppress(Exception):
                w.close()

    # -- lifecycle -------------------------------------------------------------------------

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self._server = loop.run_until_complete(asyncio.start_server(self._handle, sock=sock))
        self._ready.set()
        loop.run_forever()
        self._server.close()
        loop.run_until_complete(self._server.wait_closed())
        loop.close()

    def __enter__(self) -> RoundTripProxy:
        self._thread = threading.Thread(target=self._run, name="rtproxy", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)
