"""What one app instance holds, made once at start-up and read by every request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from pact_provider.config import ProviderSettings
from pact_provider.identity import ProviderIdentity
from pact_provider.negotiation.service import Negotiator
from pact_provider.observability import Logger, Metrics
from pact_provider.quotes.store import QuoteStore
from pact_provider.reference.service import ReferenceAdapter
from pact_provider.settlement_client import SettlementGateway
from pact_provider.streaming.service import Streamer

__all__ = ["ProviderRuntime", "RuntimeDep", "get_runtime"]


@dataclass(frozen=True, slots=True)
class ProviderRuntime:
    settings: ProviderSettings
    identity: ProviderIdentity
    negotiator: Negotiator
    settlement: SettlementGateway | None
    metrics: Metrics
    log: Logger
    well_known: bytes
    """The pre-rendered `/.well-known/pact-provider` document."""
    reference: ReferenceAdapter
    """The reference SDK's adapter endpoints (``/quote``, ``/commit``, ...)."""
    streamer: Streamer
    """Streams paid by the buyer's vouchers (``/pact/stream``)."""
    quote_store: QuoteStore | None = None


async def get_runtime(request: Request) -> ProviderRuntime:
    # async on purpose: FastAPI runs a plain ``def`` dependency in its thread pool, which costs
    # two thread hand-offs (and GIL contention) on every request.
    runtime: ProviderRuntime = request.app.state.provider
    return runtime


RuntimeDep = Annotated[ProviderRuntime, Depends(get_runtime)]
