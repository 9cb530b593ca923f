"""The ``HTTP_*`` settings both services take for their server (:mod:`pact_schema.serving`).

One model, mixed into each service's settings class, so a bound and its documentation are
written once; :class:`HttpLimits` is what the server is given. Needs only pydantic, so a
service's configuration loads without uvicorn.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, Field

__all__ = ["HttpLimits", "HttpServerSettings"]


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """Bounds of one server (per worker process); both services' ``HTTP_*`` settings."""

    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    keep_alive_timeout_s: int = 5
    max_connections: int = 1000


class HttpServerSettings(BaseModel):
    """Slow clients and the connection cap: mixed into ``ProviderSettings`` and
    ``SettlementSettings`` (env ``PACT_PROVIDER_HTTP_*`` / ``PACT_SETTLEMENT_HTTP_*``)."""

    http_header_timeout_s: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="A connection must deliver a request's complete headers within this many "
        "seconds of opening (or of the request's first byte on a kept-alive connection); "
        "else 408 and closed.",
    )
    http_body_timeout_s: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="A request's complete body must arrive within this many seconds after its "
        "headers; else 408 (or, once answered, the connection is closed).",
    )
    http_keep_alive_timeout_s: int = Field(
        default=5, ge=1, le=3600, description="An idle kept-alive connection is closed after this."
    )
    http_max_connections: int = Field(
        default=1000,
        ge=2,
        le=1_000_000,
        description="Per worker process: a request that arrives while this many connections "
        "(its own included) or requests are open is answered 503. Keep it above the idle "
        "keep-alive connections a proxy in front pools.",
    )

    def http_limits(self) -> HttpLimits:
        """What the server is given (:class:`pact_schema.serving.GuardedConfig`)."""
        return HttpLimits(
            header_timeout_s=self.http_header_timeout_s,
            body_timeout_s=self.http_body_timeout_s,
            keep_alive_timeout_s=self.http_keep_alive_timeout_s,
            max_connections=self.http_max_connections,
        )
