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
from pact_settlement.runtime import RuntimeDep

__all__ = ["AppMetrics", "Clock", "RequestId", "RuntimeDep", "Settings"]


async def _settings(runtime: RuntimeDep) -> SettlementSettings:
    return runtime.settings


async def _metrics(runtime: RuntimeDep) -> Metrics:
    return runtime.metrics


async def _clock(runtime: RuntimeDep) -> Callable[[], int]:
    return runtime.clock


async def _request_id(request: Request) -> str | None:
    value = getattr(request.state, "request_id", None)
    return value if isinstance(value, str) else None


Settings = Annotated[SettlementSettings, Depends(_settings)]
AppMetrics = Annotated[Metrics, Depends(_metrics)]
Clock = Annotated[Callable[[], int], Depends(_clock)]
RequestId = Annotated[str | None, Depends(_request_id)]
