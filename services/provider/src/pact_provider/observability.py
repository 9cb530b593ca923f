"""Logs (structlog JSON lines with a request id) and Prometheus metrics, per app instance.

Nothing here is global: each app gets its own logger and its own ``CollectorRegistry``, so two
app instances in one process (tests, or several apps in one server) never collide.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import sys
import time
from bisect import bisect_left
from collections.abc import Collection, Iterable, MutableMapping, Sequence
from contextvars import ContextVar, Token
from typing import Any, TextIO

import orjson
import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.utils import floatToGoString
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "ACCESS_LINE",
    "REQUEST_ID_HEADER",
    "AccessLine",
    "ConsoleLogFormatter",
    "JsonLogFormatter",
    "Logger",
    "Metrics",
    "RequestContext",
    "RequestContextMiddleware",
    "make_logger",
]

REQUEST_ID_HEADER = "x-request-id"
ACCESS_LINE = "pact_provider.access_line"
"""ASGI scope key of the request's :class:`AccessLine` (set by ``RequestContextMiddleware``)."""
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_MAX_CACHED_CHILDREN = 512
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
# prometheus_client's switch for the ``_created`` series, read as it reads it.
_CREATED_SERIES = os.environ.get("PROMETHEUS_DISABLE_CREATED_SERIES", "False").lower() not in (
    "true",
    "1",
    "t",
)

Logger = Any  # a JsonLineLogger (typed loosely so tests and embedders can pass their own)


def _dumps(value: Any, **_: Any) -> str:
    try:
        return str(orjson.dumps(value, default=str), "utf-8")
    except TypeError:  # lone surrogates or huge ints from a buyer's message
        return json.dumps(value, default=str, ensure_ascii=True)


class _LineWriter:
    """The output step: one ``write`` of the rendered line (newline included) and a flush.
    (structlog's ``PrintLogger`` takes a lock and goes through ``print`` for every line.)"""

    __slots__ = ("_flush", "_write")

    def __init__(self, stream: TextIO) -> None:
        self._write = stream.write
        self._flush = stream.flush

    def msg(self, message: str) -> None:
        self._write(message + "\n")
        self._flush()

    debug = info = warning = warn = error = critical = exception = fatal = log = msg


class _UtcTimeStamper:
    """``TimeStamper(fmt="iso", utc=True)``'s format (``2024-01-02T03:04:05.123456Z``), with the
    date and time text made once per second instead of a ``datetime`` per line."""

    __slots__ = ("_prefix", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(
        self, _: Any, __: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        event_dict["timestamp"] = self.now()
        return event_dict

    def now(self) -> str:
        micros = time.time_ns() // 1000
        second, fraction = divmod(micros, 1_000_000)
        if second != self._second:
            self._prefix = dt.datetime.fromtimestamp(second, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
            self._second = second
        return f"{self._prefix}.{fraction:06d}Z"


_LEVELS = logging.getLevelNamesMapping()


class JsonLineLogger:
    """The provider's logger: what structlog's ``merge_contextvars → add_log_level →
    TimeStamper(iso, utc) → format_exc_info → JSONRenderer`` chain writes, line for line, made
    without the generic processor pipeline (two lines per request made it ~8 % of the
    provider's CPU at load). Context bound with ``structlog.contextvars`` (the request id) is
    merged as structlog merges it; ``bind()`` returns a logger with extra fixed fields.
    """

    __slots__ = ("_context", "_min", "_render", "_stamp", "_writer")

    def __init__(
        self,
        level: str = "INFO",
        stream: TextIO | None = None,
        *,
        json: bool = True,
        _context: dict[str, Any] | None = None,
        _writer: _LineWriter | None = None,
        _stamp: _UtcTimeStamper | None = None,
    ) -> None:
        self._min = _LEVELS[level]
        self._writer = _writer or _LineWriter(stream if stream is not None else sys.stdout)
        self._stamp = _stamp or _UtcTimeStamper()
        self._context = _context or {}
        self._render = _dumps if json else _console_line

    def bind(self, **fields: Any) -> JsonLineLogger:
        level = logging.getLevelName(self._min)
        bound = JsonLineLogger(
            level,
            _context={**self._context, **fields},
            _writer=self._writer,
            _stamp=self._stamp,
        )
        bound._render = self._render
        return bound

    def _emit(self, level: str, event: str, fields: dict[str, Any]) -> None:
        event_dict: dict[str, Any] = {**self._context, **fields} if self._context else fields
        event_dict["event"] = event
        structlog.contextvars.merge_contextvars(None, level, event_dict)
        event_dict["level"] = level
        event_dict["timestamp"] = self._stamp.now()
        if "exc_info" in event_dict:
            event_dict = dict(structlog.processors.format_exc_info(None, level, event_dict))
        self._writer.msg(self._render(event_dict))

    def debug(self, event: str, **fields: Any) -> None:
        if self._min <= logging.DEBUG:
            self._emit("debug", event, fields)

    def info(self, event: str, **fields: Any) -> None:
        if self._min <= logging.INFO:
            self._emit("info", event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        if self._min <= logging.WARNING:
            self._emit("warning", event, fields)

    def error(self, event: str, **fields: Any) -> None:
        if self._min <= logging.ERROR:
            self._emit("error", event, fields)

    def exception(self, event: str, **fields: Any) -> None:
        fields.setdefault("exc_info", True)
        self.error(event, **fields)

    def critical(self, event: str, **fields: Any) -> None:
        if self._min <= logging.CRITICAL:
            self._emit("critical", event, fields)


_CONSOLE = structlog.dev.ConsoleRenderer(colors=False)


def _console_line(event_dict: dict[str, Any]) -> str:
    """One readable line: ``2024-01-02T03:04:05.123456Z [info     ] event  key=value …``, the
    format settlement's console logs have (structlog's ``ConsoleRenderer``)."""
    return str(_CONSOLE(None, str(event_dict.get("level", "info")), dict(event_dict)))


def make_logger(level: str = "INFO", stream: TextIO | None = None, *, json: bool = True) -> Logger:
    """A logger writing to ``stream`` (stdout by default), with the request id: JSON lines, or
    (``json=False``) one readable line per event."""
    return JsonLineLogger(level, stream, json=json)


def _record_dict(record: logging.LogRecord) -> dict[str, Any]:
    stamp = dt.datetime.fromtimestamp(record.created, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    doc: dict[str, Any] = {
        "event": record.getMessage(),
        "logger": record.name,
        "level": record.levelname.lower(),
        "timestamp": stamp,
    }
    return doc


class JsonLogFormatter(logging.Formatter):
    """stdlib records (uvicorn's own) as JSON lines like the structlog ones (same timestamp)."""

    def format(self, record: logging.LogRecord) -> str:
        doc = _record_dict(record)
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return _dumps(doc)


class ConsoleLogFormatter(logging.Formatter):
    """stdlib records (uvicorn's own) as readable lines like the provider's console ones."""

    def format(self, record: logging.LogRecord) -> str:
        doc = _record_dict(record)
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return _console_line(doc)


class _Counter:
    """A labelled Prometheus counter whose children are plain ``[value, created]`` lists.

    ``/metrics`` shows exactly what ``prometheus_client.Counter`` shows (``_total`` and
    ``_created`` per child, children in order of first use); an increment is one list store
    instead of a method chain and a lock. Only the event loop's thread writes, so no lock.
    """

    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str], registry: CollectorRegistry
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self._children: dict[tuple[str, ...], list[float]] = {}
        registry.register(self)

    def child(self, labels: tuple[str, ...]) -> list[float]:
        cell = self._children.get(labels)
        if cell is None:
            cell = self._children[labels] = [0.0, time.time()]
        return cell

    def describe(self) -> Iterable[Metric]:
        return [Metric(self.name, self.documentation, "counter")]

    def collect(self) -> Iterable[Metric]:
        metric = Metric(self.name, self.documentation, "counter")
        for labels, (value, created) in list(self._children.items()):
            series = dict(zip(self.labelnames, labels, strict=True))
            metric.add_sample(self.name + "_total", series, value)
            if _CREATED_SERIES:
                metric.add_sample(self.name + "_created", series, created)
        return [metric]


class _Histogram:
    """A labelled Prometheus histogram whose children are plain lists: one count per bucket
    (``+Inf`` last), then the sum, then the creation time. ``/metrics`` shows exactly what
    ``prometheus_client.Histogram`` shows; an observation is a bisect and two list stores."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        buckets: Sequence[float],
        registry: CollectorRegistry,
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self.bounds = (*(float(b) for b in buckets), float("inf"))
        self.sum_index = len(self.bounds)
        self._le = tuple(str(floatToGoString(b)) for b in self.bounds)  # type: ignore[no-untyped-call]
        self._children: dict[tuple[str, ...], list[float]] = {}
        registry.register(self)

    def child(self, labels: tuple[str, ...]) -> list[float]:
        cell = self._children.get(labels)
        if cell is None:
            cell = self._children[labels] = [0.0] * (len(self.bounds) + 1) + [time.time()]
        return cell

    def describe(self) -> Iterable[Metric]:
        return [Metric(self.name, self.documentation, "histogram")]

    def collect(self) -> Iterable[Metric]:
        metric = Metric(self.name, self.documentation, "histogram")
        for labels, cell in list(self._children.items()):
            series = dict(zip(self.labelnames, labels, strict=True))
            total = 0.0
            for le, count in zip(self._le, cell, strict=False):
                total += count
                metric.add_sample(self.name + "_bucket", {**series, "le": le}, total)
            metric.add_sample(self.name + "_count", series, total)
            metric.add_sample(self.name + "_sum", series, cell[self.sum_index])
            if _CREATED_SERIES:
                metric.add_sample(self.name + "_created", series, cell[-1])
        return [metric]


class Metrics:
    """The provider's Prometheus metrics in a registry of its own.

    The two per-request pairs (``/pact`` messages, HTTP requests) are :class:`_Counter` and
    :class:`_Histogram`: what ``/metrics`` shows is what ``prometheus_client``'s classes show,
    but an update is a few list stores (the library's ``inc``/``observe`` with their checks and
    locks were ~4 µs per pair per request). Their children are looked up once and kept (at most
    ``_MAX_CACHED_CHILDREN`` of each).
    """

    def __init__(self) -> None:
        self._children: dict[tuple[str, ...], tuple[list[float], list[float]]] = {}
        self.registry = CollectorRegistry(auto_describe=True)
        self.messages = _Counter(
            "pact_provider_messages",
            "Protocol messages answered at /pact, by incoming type, reply outcome and code.",
            ["message_type", "outcome", "code"],
            self.registry,
        )
        self.message_seconds = _Histogram(
            "pact_provider_message_duration_seconds",
            "Time to answer one /pact message, by incoming type.",
            ["message_type"],
            _LATENCY_BUCKETS,
            self.registry,
        )
        self.http_requests = _Counter(
            "pact_provider_http_requests",
            "HTTP requests by route and status.",
            ["method", "route", "status"],
            self.registry,
        )
        self.http_seconds = _Histogram(
            "pact_provider_http_request_duration_seconds",
            "HTTP request latency by route.",
            ["route"],
            _LATENCY_BUCKETS,
            self.registry,
        )
        self._bounds = self.message_seconds.bounds
        self._sum = self.message_seconds.sum_index
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

    def _pair(self, key: tuple[str, ...]) -> tuple[list[float], list[float]]:
        pair = self._children.get(key)
        if pair is None:
            if key[0] == "msg":
                pair = (self.messages.child(key[1:]), self.message_seconds.child(key[1:2]))
            else:
                pair = (self.http_requests.child(key[1:]), self.http_seconds.child(key[2:3]))
            if len(self._children) < _MAX_CACHED_CHILDREN:
                self._children[key] = pair
        return pair

    def _observe(self, key: tuple[str, ...], seconds: float) -> None:
        count, duration = self._pair(key)
        count[0] += 1.0
        duration[bisect_left(self._bounds, seconds)] += 1.0
        duration[self._sum] += seconds

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


class RequestContext:
    """What every request gets, whichever layer serves it: a request id (from ``X-Request-ID``
    or new) bound to every log line of the request, one access line (see :class:`AccessLine`)
    and the HTTP metrics. :meth:`begin` and :meth:`end` bracket a request;
    :class:`RequestContextMiddleware` brackets FastAPI's stack with them, ``POST /pact``'s
    endpoint its own handling (and sets the header on its reply itself)."""

    def __init__(self, *, log: Logger, metrics: Metrics, routes: Collection[str]) -> None:
        self.log = log
        self.metrics = metrics
        self.routes = frozenset(routes)
        self._request_id_var: ContextVar[Any] | None = None

    def _bind_request_id(self, request_id: str) -> Token[Any]:
        """``structlog.contextvars.bind_contextvars(request_id=...)``: the first call binds
        through structlog, later ones set the same ``ContextVar`` it made (its token's
        ``var``) without structlog's per-call name formatting and lookups."""
        var = self._request_id_var
        if var is None:
            token = structlog.contextvars.bind_contextvars(request_id=request_id)["request_id"]
            self._request_id_var = token.var
            return token
        return var.set(request_id)

    def begin(self, scope: Scope) -> tuple[tuple[bytes, bytes], Token[Any], float]:
        """Start a request: puts its :class:`AccessLine` into the scope and binds its id.
        Returns the ``X-Request-ID`` response header, the binding's token and the start
        time, for :meth:`end`."""
        request_id = _request_id(scope)
        scope[ACCESS_LINE] = AccessLine()
        token = self._bind_request_id(request_id)
        return (b"x-request-id", request_id.encode("ascii")), token, time.perf_counter()

    def end(self, scope: Scope, status: int, started: float, token: Token[Any]) -> None:
        """Finish a request: HTTP metrics, the access line, the request id unbound."""
        seconds = time.perf_counter() - started
        path = scope["path"]
        route = path if path in self.routes else "other"
        self.metrics.http_request(scope["method"], route, status, seconds)
        line: AccessLine = scope[ACCESS_LINE]
        fields = line.fields
        fields["method"] = scope["method"]
        fields["path"] = path[:256]
        fields["status"] = status
        fields["duration_ms"] = round(seconds * 1000, 3)
        self.log.info(line.event, **fields)
        token.var.reset(token)


class RequestContextMiddleware:
    """Pure ASGI middleware: the :class:`RequestContext` around every HTTP request, the request
    id echoed in the response; the status is the one the response starts with (500 when the
    app raised before starting one)."""

    def __init__(self, app: ASGIApp, *, context: RequestContext) -> None:
        self.app = app
        self.context = context

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header, token, started = self.context.begin(scope)
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self.context.end(scope, status, started, token)
