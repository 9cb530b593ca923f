"""``Annotated`` dependency shorthands shared by the domains.

Every dependency is ``async def``: FastAPI runs a plain ``def`` dependency in its thread pool,
which costs two thread hand-offs per request for what is an attribute read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request

from pact_settlement.config import SettlementSettings
from pact_settlement.kit.observability import Metrics

__all__ = ["AppMetrics", "Clock", "RequestId", "Settings"]


async def _settings(request: Request) -> SettlementSettings:
    settings: SettlementSettings = request.app.state.settings
    return settings


async def _metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


async def _clock(request: Request) -> Callable[[], int]:
    clock: Callable[[], int] = request.app.state.clock
    return clock


async def _request_id(request: Request) -> str | None:
    value = getattr(request.state, "request_id", None)
    return value if isinstance(value, str) else None


Settings = Annotated[SettlementSettings, Depends(_settings)]
AppMetrics = Annotated[Metrics, Depends(_metrics)]
Clock = Annotated[Callable[[], int], Depends(_clock)]
RequestId = Annotated[str | None, Depends(_request_id)]
