"""Logs (structlog, JSON lines with a request id) and Prometheus metrics (prometheus_client),
per app instance.

Nothing here is global: each app gets its own structlog logger (no ``structlog.configure``)
and its own ``CollectorRegistry``, so two app instances in one process (tests, or several
apps in one server) never collide. Why the hot path uses the libraries the way it does:
``bench/results/findings.md``.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Collection
from typing import Any, TextIO

import orjson
import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "ACCESS_LINE",
    "CLIENT_CLOSED_REQUEST",
    "REQUEST_ID_HEADER",
    "AccessLine",
    "ConsoleLogFormatter",
    "JsonLogFormatter",
    "Logger",
    "Metrics",
    "RequestContextMiddleware",
    "make_logger",
]

REQUEST_ID_HEADER = "x-request-id"
ACCESS_LINE = "pact_provider.access_line"
"""ASGI scope key of the request's :class:`AccessLine` (set by ``RequestContextMiddleware``)."""
CLIENT_CLOSED_REQUEST = 499
"""The access line's status when the client left before its request was answered (nginx's)."""
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_MAX_CACHED_CHILDREN = 512
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

Logger = Any  # a structlog bound logger (typed loosely so tests and embedders can pass their own)


def _dumps(value: Any, **_: Any) -> str:
    """``JSONRenderer``'s serializer: orjson, falling back to ``json`` for what orjson refuses."""
    try:
        return str(orjson.dumps(value, default=str), "utf-8")
    except TypeError:  # lone surrogates or huge ints from a buyer's message
        return json.dumps(value, default=str, ensure_ascii=True)


def _renderer(json_lines: bool) -> Any:
    if json_lines:
        return structlog.processors.JSONRenderer(serializer=_dumps)
    return structlog.dev.ConsoleRenderer(colors=False)  # the format settlement's console has


_TIMESTAMP = structlog.processors.TimeStamper(fmt="iso", utc=True)


def make_logger(level: str = "INFO", stream: TextIO | None = None, *, json: bool = True) -> Logger:
    """A structlog logger writing to ``stream`` (stdout by default): JSON lines, or
    (``json=False``) one readable line per event, each with the context bound through
    ``structlog.contextvars`` (the request id).

    The logger is bound at once instead of through ``wrap_logger``'s lazy proxy, which would
    rebuild it on every call."""
    logger: Logger = structlog.wrap_logger(
        structlog.WriteLogger(stream if stream is not None else sys.stdout),
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            _TIMESTAMP,
            structlog.processors.format_exc_info,
            _renderer(json),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        context_class=dict,
    ).bind()
    return logger


class _RecordFormatter(structlog.stdlib.ProcessorFormatter):
    """stdlib records (uvicorn's own) rendered as the provider's lines: ``event``, ``logger``,
    ``level``, ``timestamp`` and ``exception`` when there is one."""

    def __init__(self, *, json_lines: bool) -> None:
        super().__init__(
            foreign_pre_chain=[
                structlog.stdlib.add_logger_name,
                structlog.stdlib.add_log_level,
                _TIMESTAMP,
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                _renderer(json_lines),
            ],
        )


class JsonLogFormatter(_RecordFormatter):
    """stdlib records (uvicorn's own) as JSON lines like the provider's own."""

    def __init__(self) -> None:
        super().__init__(json_lines=True)


class ConsoleLogFormatter(_RecordFormatter):
    """stdlib records (uvicorn's own) as readable lines like the provider's console ones."""

    def __init__(self) -> None:
        super().__init__(json_lines=False)


class Metrics:
    """The provider's Prometheus metrics in a registry of its own.

    The label children of the per-request pairs (``/pact`` messages, HTTP requests) are looked
    up once and kept (at most ``_MAX_CACHED_CHILDREN`` pairs): ``labels()`` costs more than the
    update itself.
    """

    def __init__(self) -> None:
        self._children: dict[tuple[str, ...], tuple[Counter, Histogram]] = {}
        self.registry = CollectorRegistry(auto_describe=True)
        self.messages = Counter(
            "pact_provider_messages",
            "Protocol messages answered at /pact, by incoming type, reply outcome and code.",
            ["message_type", "outcome", "code"],
            registry=self.registry,
        )
        self.message_seconds = Histogram(
            "pact_provider_message_duration_seconds",
            "Time to answer one /pact message, by incoming type.",
            ["message_type"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.http_requests = Counter(
            "pact_provider_http_requests",
            "HTTP requests by route and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.http_seconds = Histogram(
            "pact_provider_http_request_duration_seconds",
            "HTTP request latency by route.",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.settlement_attempts = Counter(
            "pact_provider_settlement_attempts",
            "Calls to the settlement service by outcome (settled, refused, error, failed).",
            ["outcome"],
            registry=self.registry,
        )
        self.settlement_seconds = Histogram(
            "pact_provider_settlement_attempt_duration_seconds",
            "Duration of one settlement call.",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )

    def _pair(self, key: tuple[str, ...]) -> tuple[Counter, Histogram]:
        pair = self._children.get(key)
        if pair is None:
            if key[0] == "msg":
                pair = (self.messages.labels(*key[1:]), self.message_seconds.labels(key[1]))
            else:
                pair = (self.http_requests.labels(*key[1:]), self.http_seconds.labels(key[2]))
            if len(self._children) < _MAX_CACHED_CHILDREN:
                self._children[key] = pair
        return pair

    def _observe(self, key: tuple[str, ...], seconds: float) -> None:
        count, duration = self._pair(key)
        count.inc()
        duration.observe(seconds)

    def message(self, message_type: str, outcome: str, code: str | None, seconds: float) -> None:
        self._observe(("msg", message_type, outcome, code or ""), seconds)

    def http_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self._observe(("http", method, route, str(status)), seconds)

    def settlement_attempt(self, outcome: str, seconds: float) -> None:
        self.settlement_attempts.labels(outcome).inc()
        self.settlement_seconds.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            text: str = value.decode("latin-1")
            if _REQUEST_ID.match(text):
                return text
            break
    return os.urandom(16).hex()


class AccessLine:
    """The one log line a request ends with: ``http.request``, or the event a handler names.

    A handler whose request makes one event of its own (``POST /pact``'s transcript event)
    hands it here with :meth:`record`, and the middleware writes it with the HTTP fields
    (method, path, status, duration) added: one line per request instead of two.
    """

    __slots__ = ("event", "fields")

    def __init__(self) -> None:
        self.event = "http.request"
        self.fields: dict[str, Any] = {}

    def record(self, event: str, fields: dict[str, Any]) -> None:
        self.event = event
        self.fields = fields


class RequestContextMiddleware:
    """Pure ASGI middleware around every HTTP request: a request id (from ``X-Request-ID`` or
    new) bound to every log line of the request and echoed in the response, one access line
    (see :class:`AccessLine`) and the HTTP metrics. The status is the one the response starts
    with: 500 when the app raised before starting one, 499 when the client left first."""

    def __init__(
        self, app: ASGIApp, *, log: Logger, metrics: Metrics, routes: Collection[str]
    ) -> None:
        self.app = app
        self.log = log
        self.metrics = metrics
        self.routes = frozenset(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        header = (b"x-request-id", request_id.encode("ascii"))
        line = scope[ACCESS_LINE] = AccessLine()
        tokens = structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except ClientDisconnect:
            # Gone before its body was complete (or cut off by the server's body timeout):
            # no one to answer, and not an error of ours.
            status = CLIENT_CLOSED_REQUEST
        finally:
            seconds = time.perf_counter() - started
            path = scope["path"]
            method = scope["method"]
            self.metrics.http_request(
                method, path if path in self.routes else "other", status, seconds
            )
            fields = line.fields
            fields["method"] = method
            fields["path"] = path[:256]
            fields["status"] = status
            fields["duration_ms"] = round(seconds * 1000, 3)
            self.log.info(line.event, **fields)
            structlog.contextvars.reset_contextvars(**tokens)
