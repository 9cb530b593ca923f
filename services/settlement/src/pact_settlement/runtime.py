"""What one settlement app holds, made once at start-up (``lifespan``) and read by every request.

Routes read it through :data:`RuntimeDep` (or the narrower shorthands in ``kit.deps``); code
holding the app (tests, the CLI) through :func:`runtime_of`. It is the app's only state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, FastAPI, Request

if TYPE_CHECKING:
    from pact_schema.clock import Clock
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

    from pact_settlement.config import SettlementSettings
    from pact_settlement.db.health import DatabaseHealth
    from pact_settlement.kit.observability import Metrics
    from pact_settlement.rails.clients import RailClients
    from pact_settlement.receipts.service import ReceiptIssuer
    from pact_settlement.settlements.lifecycle import LifecycleApplier
    from pact_settlement.workers.runner import WorkerRunner

__all__ = ["RuntimeDep", "SettlementRuntime", "get_runtime", "runtime_of"]


@dataclass
class SettlementRuntime:
    settings: SettlementSettings
    metrics: Metrics
    clock: Clock
    """The service's one clock; every session of ``sessionmaker`` carries it."""
    receipts: ReceiptIssuer
    applier: LifecycleApplier
    rail_clients: RailClients
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    db_health: DatabaseHealth
    workers: WorkerRunner | None = None
    """The sweeper, the reconciler (and the authorisation-expiry sweep), when enabled."""


def runtime_of(app: FastAPI) -> SettlementRuntime:
    runtime = getattr(app.state, "settlement", None)
    if not isinstance(runtime, SettlementRuntime):
        raise RuntimeError("the settlement app has not started: its lifespan has not run")
    return runtime


async def get_runtime(request: Request) -> SettlementRuntime:
    # async on purpose: FastAPI runs a plain ``def`` dependency in its thread pool, which costs
    # two thread hand-offs on every request for an attribute read.
    return runtime_of(request.app)


RuntimeDep = Annotated[SettlementRuntime, Depends(get_runtime)]
