from __future__ import annotations

import io
import json
import re

import pytest
import structlog
from pact_provider.observability import _LATENCY_BUCKETS, Metrics, make_logger
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

MESSAGES = [
    ("INTENT", "ASK", None, 0.0003),
    ("BID", "ASK", None, 0.002),
    ("INTENT", "REJECT", "PRICE_ABOVE_MAX", 0.7),
    ("UNVERIFIED", "PROBLEM", "ENVELOPE_BAD_HASH", 20.0),
    ("INTENT", "ASK", None, 0.0005),  # exactly on a bucket bound: counted in that bucket
    ("INTENT", "ASK", None, 1e-7),
]
REQUESTS = [
    ("POST", "/pact", 200, 0.0004),
    ("GET", "/metrics", 200, 0.01),
    ("POST", "/pact", 400, 10.0),
    ("GET", "other", 404, 3.0),
]


def _without_created_values(text: bytes) -> str:
    return re.sub(r"(_created(\{[^}]*\})?) \S+", r"\1 T", text.decode())


def _reference(observed: bool) -> bytes:
    """What the same observations give with prometheus_client's own Counter and Histogram."""
    registry = CollectorRegistry(auto_describe=True)
    messages = Counter(
        "pact_provider_messages",
        "Protocol messages answered at /pact, by incoming type, reply outcome and code.",
        ["message_type", "outcome", "code"],
        registry=registry,
    )
    message_seconds = Histogram(
        "pact_provider_message_duration_seconds",
        "Time to answer one /pact message, by incoming type.",
        ["message_type"],
        buckets=_LATENCY_BUCKETS,
        registry=registry,
    )
    http_requests = Counter(
        "pact_provider_http_requests",
        "HTTP requests by route and status.",
        ["method", "route", "status"],
        registry=registry,
    )
    http_seconds = Histogram(
        "pact_provider_http_request_duration_seconds",
        "HTTP request latency by route.",
        ["route"],
        buckets=_LATENCY_BUCKETS,
        registry=registry,
    )
    attempts = Counter(
        "pact_provider_settlement_attempts",
        "Calls to the settlement service by outcome (settled, refused, error, failed).",
        ["outcome"],
        registry=registry,
    )
    attempt_seconds = Histogram(
        "pact_provider_settlement_attempt_duration_seconds",
        "Duration of one settlement call.",
        buckets=_LATENCY_BUCKETS,
        registry=registry,
    )
    if not observed:
        return generate_latest(registry)
    for message_type, outcome, code, seconds in MESSAGES:
        messages.labels(message_type, outcome, code or "").inc()
        message_seconds.labels(message_type).observe(seconds)
    for method, route, status, seconds in REQUESTS:
        http_requests.labels(method, route, str(status)).inc()
        http_seconds.labels(route).observe(seconds)
    attempts.labels("settled").inc()
    attempt_seconds.observe(0.03)
    return generate_latest(registry)


@pytest.mark.parametrize("observed", [False, True])
def test_metrics_page_is_what_prometheus_client_would_render(observed: bool) -> None:
    metrics = Metrics()
    if observed:
        for message in MESSAGES:
            metrics.message(*message)
        for request in REQUESTS:
            metrics.http_request(*request)
        metrics.settlement_attempt("settled", 0.03)
    assert _without_created_values(metrics.render()) == _without_created_values(
        _reference(observed)
    )


def test_a_log_line_has_the_fields_in_the_order_the_provider_always_wrote_them() -> None:
    stream = io.StringIO()
    log = make_logger("INFO", stream)
    tokens = structlog.contextvars.bind_contextvars(request_id="r-1")
    try:
        log.bind(component="c").info("pact.intent.quoted", intent_id="i", code=None)
        log.debug("not written")
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("http.unhandled_error")
    finally:
        structlog.contextvars.reset_contextvars(**tokens)
    quoted, error = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert list(quoted) == [
        "component",
        "intent_id",
        "code",
        "event",
        "request_id",
        "level",
        "timestamp",
    ]
    assert quoted["level"] == "info"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z", quoted["timestamp"])
    assert (error["event"], error["level"]) == ("http.unhandled_error", "error")
    assert "ValueError: boom" in error["exception"]
