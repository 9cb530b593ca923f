"""``Annotated`` dependency shorthands shared by the domains.

Every dependency is ``async def``: FastAPI runs a plain ``def`` dependency in its thread pool,
which costs two thread hand-offs per request for what is an attribute read.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Protocol, TypeVar

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from pact_settlement.config import SettlementSettings
from pact_settlement.db.session import DBSession
from pact_settlement.kit.observability import Metrics
from pact_settlement.runtime import RuntimeDep, SettlementRuntime

if TYPE_CHECKING:
    from pact_settlement.rails.clients import RailClients
    from pact_settlement.settlements.lifecycle import LifecycleApplier

__all__ = [
    "AppMetrics",
    "Clock",
    "RequestId",
    "RuntimeDep",
    "Settings",
    "lifecycle_service",
]

_S_co = TypeVar("_S_co", covariant=True)
_S = TypeVar("_S")


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


class LifecycleServiceFactory(Protocol[_S_co]):
    """How the services that move settlements through their lifecycle (settlements, delivery,
    streams) are built: the request's session and the app's settings, metrics, clock, transition
    applier and rail clients."""

    def __call__(
        self,
        session: AsyncSession,
        *,
        settings: SettlementSettings,
        metrics: Metrics,
        applier: LifecycleApplier,
        now_ms: Callable[[], int],
        clients: RailClients | None = None,
    ) -> _S_co: ...


def lifecycle_service(
    factory: LifecycleServiceFactory[_S],
) -> Callable[[AsyncSession, SettlementRuntime], Awaitable[_S]]:
    """A route dependency that builds ``factory``'s service for one request."""

    async def dependency(session: DBSession, runtime: RuntimeDep) -> _S:
        return factory(
            session,
            settings=runtime.settings,
            metrics=runtime.metrics,
            applier=runtime.applier,
            now_ms=runtime.clock,
            clients=runtime.rail_clients,
        )

    return dependency
