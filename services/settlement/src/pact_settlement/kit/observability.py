"""structlog JSON logs with a request id on every line, and per-app Prometheus metrics."""

from __future__ import annotations

import logging
import re
import sys
import time
import uuid
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["Metrics", "RequestContextMiddleware", "configure_logging"]

_REQUEST_ID_OK = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def configure_logging(level: str = "INFO", *, json: bool = True) -> None:
    """Route stdlib and structlog through one renderer (JSON by default). Idempotent."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_pact_settlement", False)]:
        root.removeHandler(old)
    handler._pact_settlement = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True


class Metrics:
    """Prometheus metrics on a registry owned by one app instance."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.http_requests = Counter(
            "pact_settlement_http_requests_total",
            "HTTP requests by route template, method and status.",
            ["method", "route", "status"],
            registry=r,
        )
        self.http_latency = Histogram(
            "pact_settlement_http_request_duration_seconds",
            "HTTP request latency by route template.",
            ["method", "route"],
            registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.settlements = Counter(
            "pact_settlement_settlements_total",
            "Settlement create requests by outcome (created, replayed, refused, failed).",
            ["outcome", "rail"],
            registry=r,
        )
        self.transitions = Counter(
            "pact_settlement_transitions_total",
            "State transitions by event and target state.",
            ["event", "to_state"],
            registry=r,
        )
        self.rail_operations = Counter(
            "pact_settlement_rail_operations_total",
            "Rail calls by rail, step and result.",
            ["rail", "step", "status"],
            registry=r,
        )
        self.deposits = Counter("pact_settlement_deposits_total", "Deposits credited.", registry=r)
        self.worker_runs = Counter(
            "pact_settlement_worker_runs_total",
            "Worker passes by worker (sweeper, reconciler) and result (ok, error, unavailable: "
            "the database was down or refused writes).",
            ["worker", "result"],
            registry=r,
        )
        self.sweeps = Counter(
            "pact_settlement_sweeps_total",
            "Settlements the sweeper handled, by outcome (released, refunded, slashed, in_flight, "
            "failed, skipped, error, unavailable).",
            ["outcome"],
            registry=r,
        )
        self.reconciles = Counter(
            "pact_settlement_reconciles_total",
            "Pending rail operations the reconciler handled, by outcome (succeeded, failed, "
            "in_flight, error).",
            ["step", "outcome"],
            registry=r,
        )
        self.receipts = Counter(
            "pact_settlement_receipts_total",
            "Signed RECEIPTs issued, by outcome (the terminal state).",
            ["outcome"],
            registry=r,
        )
        self.challenges = Counter(
            "pact_settlement_challenges_total",
            "Buyer challenges by ground and verdict (upheld, rejected).",
            ["code", "verdict"],
            registry=r,
        )

        self.ready = Gauge(
            "pact_settlement_ready",
            "1 when the database is reachable, takes writes and is at the migration head.",
            registry=r,
        )


class RequestContextMiddleware:
    """Request id (``X-Request-ID`` in/out), bound to every log line; request metrics."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        self.log = structlog.get_logger("pact_settlement.http")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = None
        for name, value in scope.get("headers", []):
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
                break
        request_id = incoming if incoming and _REQUEST_ID_OK.match(incoming) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status_holder = {"status": 500}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode("latin-1")))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            elapsed = time.perf_counter() - started
            method = scope.get("method", "GET")
            self.metrics.http_requests.labels(method, template, str(status_holder["status"])).inc()
            self.metrics.http_latency.labels(method, template).observe(elapsed)
            if template not in ("/metrics", "/healthz", "/readyz"):
                self.log.info(
                    "http.request",
                    method=method,
                    route=template,
                    status=status_holder["status"],
                    duration_ms=round(elapsed * 1000, 2),
                )
            structlog.contextvars.clear_contextvars()
