"""The FastAPI application. ``create_app(settings)``; the engine is made in ``lifespan``, which
puts the app's one state, a :class:`SettlementRuntime`, on it."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass

import structlog
from fastapi import FastAPI
from pact_schema.clock import Clock, now_ms
from pact_schema.docs_pages import install_docs
from sqlalchemy.ext.asyncio import AsyncEngine

from pact_settlement.accounts.endpoints import router as accounts_router
from pact_settlement.config import SettlementSettings
from pact_settlement.db import migrate
from pact_settlement.db.engine import create_engine, create_sessionmaker
from pact_settlement.db.health import DatabaseHealth
from pact_settlement.delivery.endpoints import router as delivery_router
from pact_settlement.health.endpoints import router as health_router
from pact_settlement.kit.deadline import RequestDeadlineMiddleware
from pact_settlement.kit.errors import install_error_handlers
from pact_settlement.kit.limits import BodySizeLimitMiddleware
from pact_settlement.kit.observability import (
    Metrics,
    RequestContextMiddleware,
    configure_logging,
)
from pact_settlement.kit.openapi import install_openapi, operation_id
from pact_settlement.outbound_webhooks.endpoints import router as webhook_endpoints_router
from pact_settlement.outbound_webhooks.worker import WebhookDispatcher
from pact_settlement.payouts.endpoints import router as payouts_router
from pact_settlement.rails.clients import RailClients
from pact_settlement.rails.endpoints import router as rails_router
from pact_settlement.receipts.endpoints import router as receipts_router
from pact_settlement.receipts.keys import load_signing_key
from pact_settlement.receipts.service import ReceiptIssuer
from pact_settlement.runtime import SettlementRuntime, runtime_of
from pact_settlement.settlements.endpoints import router as settlements_router
from pact_settlement.settlements.lifecycle import LifecycleApplier
from pact_settlement.streams.endpoints import router as streams_router
from pact_settlement.webhooks.endpoints import router as webhooks_router
from pact_settlement.workers.authorization_expiry import AuthorizationExpirySweeper
from pact_settlement.workers.reconciler import Reconciler
from pact_settlement.workers.runner import Worker, WorkerRunner
from pact_settlement.workers.sweeper import Sweeper

__all__ = ["SettlementRuntime", "app_from_env", "create_app", "runtime_of"]

log = structlog.get_logger(__name__)

DESCRIPTION = """
The stateful half of the Pact suite: it re-verifies signed ACCEPTs (buyer signature, the
provider-signed ASK carried in `quote`, prices and validity windows), records each settlement
in its own database and holds the money on a rail.

* Authentication: `Authorization: Bearer <token>`. Each operation names the token it takes:
  `providerToken` (the provider's `PACT_SETTLEMENT_API_TOKEN`: creates settlements, records
  COMMIT, REVEAL and abort), `adminToken` (the operators' `PACT_SETTLEMENT_ADMIN_TOKEN`:
  deposits, top-ups, payment profiles), either (reads), or none: the buyer's challenge is
  authenticated by the buyer's signature on the envelope, the Stripe webhook by its
  `Stripe-Signature`.
* `{settlement_ref}` is a settlement id (`st_…`) or an intent id (unique per buyer; `?buyer=`
  narrows one that several buyers used).
* Money is always a decimal string (`"0.00008"`), never a JSON number.
* Every error is `application/problem+json` (RFC 9457) with a machine-readable `code`: the
  `Problem` schema.
* Every request ends within `REQUEST_TIMEOUT_S`; an outage (database unreachable, frozen,
  read-only or full) is a 503 problem with `Retry-After`: resend the same request.
* Mutating calls are idempotent: `Idempotency-Key` where it is declared required; a missing one
  is 400 `BAD_REQUEST`.

The protocol, the state machine and the failure codes: `docs/protocol.md` in the repository.
"""

TAGS = [
    {"name": "settlements", "description": "Create settlements from signed ACCEPTs; read them."},
    {
        "name": "delivery",
        "description": "The seller's COMMIT, REVEAL and abort; the buyer's challenge.",
    },
    {
        "name": "accounts",
        "description": "Balances per asset, deposits, top-ups, payment profiles.",
    },
    {"name": "payouts", "description": "Pay a seller's available balance out through a rail."},
    {
        "name": "streaming",
        "description": "Streaming settlements: checkpoint the buyer's highest voucher, close once.",
    },
    {"name": "rails", "description": "The payment rails a settlement can use."},
    {"name": "identity", "description": "The key that signs RECEIPTs, and what we speak."},
    {
        "name": "webhooks",
        "description": "Events from rails (Stripe); integrators' endpoints for our events.",
    },
    {"name": "operations", "description": "Liveness, readiness, metrics, token check."},
]


@dataclass(frozen=True)
class _Made:
    """What ``create_app`` makes before start-up (the key must load before anything is served)."""

    settings: SettlementSettings
    metrics: Metrics
    clock: Clock
    receipts: ReceiptIssuer
    applier: LifecycleApplier
    rail_clients: RailClients | None


def _lifespan(made: _Made) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings = made.settings
        db_health = DatabaseHealth(settings.write_refusal_hold_s)
        engine = create_engine(settings, health=db_health)
        sessionmaker = create_sessionmaker(engine, clock=made.clock)
        rail_clients = made.rail_clients or RailClients(settings)
        rail_clients.use_database(sessionmaker)  # the evm nonce guard's lock
        runtime = SettlementRuntime(
            settings=settings,
            metrics=made.metrics,
            clock=made.clock,
            receipts=made.receipts,
            applier=made.applier,
            rail_clients=rail_clients,
            engine=engine,
            sessionmaker=sessionmaker,
            db_health=db_health,
        )
        app.state.settlement = runtime
        await _check_database(settings, engine)
        if not settings.provider_keys:
            log.warning(
                "settlement.config.no_provider_keys",
                detail="PACT_SETTLEMENT_PROVIDER_KEYS is empty: every ACCEPT is refused",
            )
        if settings.workers_enabled:
            runtime.workers = _workers(runtime)
            runtime.workers.start()
        log.info(
            "settlement.started",
            env=settings.env.value,
            database=engine.url.get_backend_name(),
            rails=settings.enabled_rails,
            receipt_key=made.receipts.public_key_b58,
            workers=settings.workers_enabled,
        )
        try:
            yield
        finally:
            if runtime.workers is not None:
                await runtime.workers.stop()
            await rail_clients.aclose()
            await engine.dispose()
            log.info("settlement.stopped")

    return lifespan


async def _check_database(settings: SettlementSettings, engine: AsyncEngine) -> None:
    if settings.should_auto_migrate:
        await migrate.upgrade(engine)
        log.info("settlement.migrated", revision=migrate.head_revision())
        return
    try:
        at_head = await migrate.is_at_head(engine)
    except Exception as exc:
        log.warning("settlement.database.unreachable_at_start", error=type(exc).__name__)
    else:
        if not at_head:
            log.warning(
                "settlement.migrations.behind",
                detail="run `pact-settlement migrate`; /readyz answers 503 until then",
            )


def _workers(runtime: SettlementRuntime) -> WorkerRunner:
    """The deadline sweeper, the reconciler, the outbound webhook dispatcher (and, with the
    stripe rail, the card authorisation-expiry sweep), sharing the app's sessions, clock and
    key."""
    settings, metrics, applier, maker = (
        runtime.settings,
        runtime.metrics,
        runtime.applier,
        runtime.sessionmaker,
    )
    workers: list[Worker] = [
        Sweeper(
            maker,
            settings=settings,
            metrics=metrics,
            applier=applier,
            clients=runtime.rail_clients,
            clock=runtime.clock,
        ),
        Reconciler(
            maker,
            settings=settings,
            metrics=metrics,
            applier=applier,
            clients=runtime.rail_clients,
        ),
        WebhookDispatcher(maker, settings=settings, clock=runtime.clock),
    ]
    if "stripe" in settings.enabled_rails:
        workers.append(
            AuthorizationExpirySweeper(
                maker,
                settings=settings,
                metrics=metrics,
                applier=applier,
                clients=runtime.rail_clients,
                clock=runtime.clock,
            )
        )
    return WorkerRunner(
        workers, metrics=runtime.metrics, max_backoff_s=settings.worker_max_backoff_s
    )


def create_app(
    settings: SettlementSettings | None = None,
    *,
    clock: Clock | None = None,
    rail_clients: RailClients | None = None,
) -> FastAPI:
    """``clock``: the service's one clock (default: the system clock; tests freeze or advance
    it). ``rail_clients``: ready-made Stripe/EVM gateways (tests); default: made from settings.
    The running app's state is one :class:`SettlementRuntime` (``runtime_of(app)``)."""
    settings = settings or SettlementSettings()
    clock = clock or now_ms
    metrics = Metrics()
    # The RECEIPT key: loaded (or, in development, generated once) before anything is served;
    # production refuses to start without one.
    receipts = ReceiptIssuer(load_signing_key(settings), clock=clock)
    made = _Made(
        settings=settings,
        metrics=metrics,
        clock=clock,
        receipts=receipts,
        applier=LifecycleApplier(receipts, metrics),
        rail_clients=rail_clients,
    )
    app = FastAPI(
        title="Pact settlement service",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=_lifespan(made),
        openapi_tags=TAGS,
        generate_unique_id_function=operation_id,
        docs_url=None,  # install_docs: the same pages, with assets served from here
        redoc_url=None,
    )
    install_error_handlers(app)
    app.include_router(health_router)
    app.include_router(settlements_router)
    app.include_router(accounts_router)
    app.include_router(payouts_router)
    app.include_router(rails_router)
    app.include_router(delivery_router)
    app.include_router(streams_router)
    app.include_router(receipts_router)
    app.include_router(webhooks_router)
    app.include_router(webhook_endpoints_router)
    install_docs(app)
    install_openapi(app)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestDeadlineMiddleware, budget_s=settings.request_timeout_s)
    app.add_middleware(RequestContextMiddleware, metrics=metrics)
    return app


def app_from_env() -> FastAPI:
    """Factory for uvicorn's worker processes (``pact_settlement.app:app_from_env``, what
    ``pact-settlement serve --workers N`` runs): settings from the environment, logging set up
    in the worker itself (a spawned process does not inherit the parent's configuration)."""
    settings = SettlementSettings()
    configure_logging(settings.log_level, json=settings.log_json)
    # uvicorn muted its access logger (``access_log=False``) before loading this factory, and
    # configure_logging just routed it to the root again: mute it once more, as one worker is.
    logging.getLogger("uvicorn.access").propagate = False
    return create_app(settings)
