"""The FastAPI application: ``create_app(settings)``. Nothing is made at import time.

Configuration, the signing key, the price book, metrics and the logger are made once per app in
:func:`create_app`; the settlement HTTP client and the negotiator in the lifespan. All of it
lives on ``app.state.provider`` and nothing on module level, so any number of replicas (or app
instances in one process) with the same settings and key behave identically.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TextIO

import httpx
from fastapi import FastAPI
from pact_schema import Keypair, now_ms
from pact_schema.docs_pages import install_docs

from pact_provider import __version__
from pact_provider.config import ProviderSettings
from pact_provider.discovery.endpoints import build_router as discovery_router
from pact_provider.discovery.service import well_known_document
from pact_provider.errors import install_error_handlers
from pact_provider.fulfilment.committed import (
    CommittedPayloads,
    InMemoryCommittedPayloads,
    RedisCommittedPayloads,
)
from pact_provider.fulfilment.coverage import check_coverage
from pact_provider.fulfilment.handlers import HandlerBook, fulfilment_handlers
from pact_provider.fulfilment.service import Fulfiller
from pact_provider.identity import load_identity
from pact_provider.jsonio import json_bytes
from pact_provider.negotiation.endpoints import PactFastPath
from pact_provider.negotiation.endpoints import build_router as negotiation_router
from pact_provider.negotiation.examples import build_examples
from pact_provider.negotiation.pricing import PriceBook, build_price_book
from pact_provider.negotiation.schemas import Envelope
from pact_provider.negotiation.service import (
    AfterSettlement,
    Clock,
    Negotiator,
    Policy,
    no_fulfilment,
)
from pact_provider.observability import Metrics, RequestContextMiddleware, make_logger
from pact_provider.openapi import install_openapi, operation_id
from pact_provider.quotes.store import QuoteStore, RedisQuoteStore
from pact_provider.reference.endpoints import build_router as reference_router
from pact_provider.reference.service import ReferenceAdapter
from pact_provider.runtime import ProviderRuntime
from pact_provider.settlement_client import HttpSettlementClient, SettlementGateway
from pact_provider.streaming.endpoints import build_router as streaming_router
from pact_provider.streaming.service import Streamer, StreamHandler, load_stream_handler
from pact_provider.streaming.shared import SharedStreams

__all__ = ["app_from_env", "create_app", "freeze_startup_objects"]

DESCRIPTION = """\
A stateless Pact (pact/1.0) provider. Buyers negotiate with signed envelopes at
`POST /pact`:

1. **INTENT** → signed **ASK**. The ASK carries, as signed extra fields, the buyer's key, the
   round number, the intent type, the settlement mode and the list price.
2. Optionally up to two **BID**s, each carrying the latest ASK in its `quote` field → a new
   ASK one round later (meet halfway, never below the floor). A third BID is refused with
   `ROUND_EXCEEDED`.
3. **ACCEPT** carrying the ASK in `quote` with `agreed_price` equal to its price → forwarded to
   the settlement service → signed **ACCEPT** acknowledgement with the settlement's id and state.

No replica remembers anything between messages: everything it needs travels inside the signed
quote. Protocol refusals are signed **REJECT** envelopes with a failure code; transport problems
are `application/problem+json` (RFC 9457 + `code`: the `Problem` schema). No route takes a
token: `POST /pact` is authenticated by the envelope's own signature. The provider's identity
and prices are at `/.well-known/pact-provider`. The protocol, the failure codes and the
commit rule: `docs/protocol.md` in the repository.
"""

ROUTES = (
    "/pact",
    "/quote",
    "/commit",
    "/reveal",
    "/stream/chunk",
    "/health",
    "/.well-known/pact-provider",
    "/healthz",
    "/readyz",
    "/metrics",
)


def create_app(
    settings: ProviderSettings | None = None,
    *,
    keypair: Keypair | None = None,
    clock: Clock = now_ms,
    settlement_transport: httpx.AsyncBaseTransport | None = None,
    after_settlement: AfterSettlement | None = None,
    handlers: HandlerBook | None = None,
    price_book: PriceBook | None = None,
    log_stream: TextIO | None = None,
    stream_handler: StreamHandler | None = None,
) -> FastAPI:
    """Build one provider app. Raises ``ConfigError`` when the key or price book is unusable.

    ``keypair``, ``clock``, ``settlement_transport`` and ``log_stream`` exist for tests and
    embedding; ``after_settlement`` is the fulfilment hook run after settlement took an ACCEPT
    (default: from the FULFILMENT settings); ``handlers`` replaces the handlers the settings
    choose and ``price_book`` the one they describe (:class:`~pact_provider.seller.PactSeller`
    passes its sold routes and their prices); ``stream_handler`` is the seller's streaming
    goods (an async iterator of byte chunks, docs/protocol.md "Streaming"; none: streaming is
    refused).
    """
    settings = settings if settings is not None else ProviderSettings()
    log = make_logger(settings.log_level, log_stream, json=settings.log_json)
    identity = load_identity(settings, keypair)
    if identity.ephemeral:
        log.warning(
            "pact.key.ephemeral",
            public_key=identity.public_key_b58,
            message="NO SIGNING KEY CONFIGURED: using a throwaway key for this process only. "
            "Its quotes die with it and other replicas cannot honour them. Set "
            "PACT_PROVIDER_SIGNING_KEY_FILE or PACT_PROVIDER_SIGNING_KEY (required in "
            "production).",
        )
    price_book = price_book if price_book is not None else build_price_book(settings)
    policy = Policy.from_settings(settings)
    handler_book = handlers if handlers is not None else fulfilment_handlers(settings)
    if stream_handler is None and settings.stream_module:
        stream_handler = load_stream_handler(settings.stream_module)
    if after_settlement is None:
        check_coverage(settings, price_book, handler_book, log)
    metrics = Metrics()
    well_known = json_bytes(well_known_document(settings, identity, price_book))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settlement: SettlementGateway | None = None
        if settings.settlement_url is not None:
            settlement = HttpSettlementClient(
                settings.settlement_url,
                settings.settlement_token_value,
                total_timeout_s=settings.settlement_timeout_s,
                connect_timeout_s=settings.settlement_connect_timeout_s,
                attempts=settings.settlement_attempts,
                backoff_s=settings.settlement_backoff_s,
                retry_after_s=settings.settlement_retry_after_s,
                max_connections=settings.settlement_max_connections,
                transport=settlement_transport,
                observe=metrics.settlement_attempt,
            )
        quote_store: QuoteStore | None = None
        if settings.quote_store_url_value is not None:
            quote_store = RedisQuoteStore(
                settings.quote_store_url_value,
                prefix=settings.quote_store_prefix,
                timeout_s=settings.quote_store_timeout_s,
            )
        payloads: CommittedPayloads = InMemoryCommittedPayloads()
        if settings.quote_store_url_value is not None:
            payloads = RedisCommittedPayloads(
                settings.quote_store_url_value,
                prefix=settings.quote_store_prefix,
                timeout_s=settings.quote_store_timeout_s,
            )
        hook: AfterSettlement = no_fulfilment
        can_fulfil: Callable[[str], bool] | None = None
        if after_settlement is not None:
            hook = after_settlement
        elif settlement is not None and handler_book is not None:
            fulfiller = Fulfiller(
                keypair=identity.keypair,
                settlement=settlement,
                handlers=handler_book,
                log=log,
                clock=clock,
                message_ttl_ms=settings.reply_ttl_ms,
                handler_timeout_s=settings.fulfilment_timeout_s,
                payloads=payloads,
                payload_retention_ms=settings.payload_retention_s * 1000,
            )
            hook, can_fulfil = fulfiller, fulfiller.can_fulfil
        negotiator = Negotiator(
            identity=identity,
            price_book=price_book,
            policy=policy,
            clock=clock,
            settlement=settlement,
            log=log,
            after_settlement=hook,
            can_fulfil=can_fulfil,
            quote_store=quote_store,
        )
        shared_streams: SharedStreams | None = None
        if settings.quote_store_url_value is not None and stream_handler is not None:
            shared_streams = SharedStreams(
                settings.quote_store_url_value,
                prefix=settings.quote_store_prefix,
                timeout_s=settings.quote_store_timeout_s,
            )
        streamer = Streamer(
            keypair=identity.keypair,
            settlement=settlement,
            handler=stream_handler,
            log=log,
            clock=clock,
            message_ttl_ms=settings.reply_ttl_ms,
            credit_ticks=settings.stream_credit_ticks,
            checkpoint_ticks=settings.stream_checkpoint_ticks,
            voucher_timeout_ms=settings.stream_voucher_timeout_ms,
            shared=shared_streams,
        )
        streamer.start()
        app.state.provider = ProviderRuntime(
            settings=settings,
            identity=identity,
            negotiator=negotiator,
            settlement=settlement,
            metrics=metrics,
            log=log,
            well_known=well_known,
            reference=ReferenceAdapter(
                negotiator=negotiator,
                settlement=settlement,
                keypair=identity.keypair,
                trusted_keys=frozenset(identity.trusted_keys),
                clock=clock,
                message_ttl_ms=settings.reply_ttl_ms,
                quote_valid_for_ms=settings.quote_valid_for_ms,
                settlement_modes=frozenset(settings.settlement_modes),
            ),
            quote_store=quote_store,
            streamer=streamer,
        )
        log.info(
            "pact.provider.started",
            env=settings.env,
            public_key=identity.public_key_b58,
            settlement_url=settings.settlement_url,
            lenient_accept=settings.lenient_accept,
            quote_store=quote_store is not None,
        )
        try:
            yield
        finally:
            await streamer.aclose()
            if settlement is not None:
                await settlement.aclose()
            if quote_store is not None:
                await quote_store.aclose()
            await payloads.aclose()
            if handler_book is not None:
                await handler_book.aclose()
            log.info("pact.provider.stopped")

    app = FastAPI(
        title="Pact provider",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        # FastAPI's OpenTelemetry bridge stays off: the provider's observability is its own
        # logs and Prometheus registry, and the bridge costs CPU on every request
        # (bench/results/findings.md).
        telemetry={"tracing": False, "metrics": False, "logs": False},
        openapi_tags=[
            {"name": "negotiation", "description": "The pact/1.0 message exchange."},
            {
                "name": "reference adapter",
                "description": "The reference SDK's provider HTTP surface (the reference "
                "protocol §11.2), mapped onto our quote binding and settlement: see the provider "
                'README, "Compatibility with the reference SDK".',
            },
            {
                "name": "streaming",
                "description": "Paid streams: signed chunks as server-sent events, paid by "
                "the buyer's cumulative vouchers.",
            },
            {"name": "identity", "description": "Who this provider is and what it sells."},
            {"name": "operations", "description": "Health, readiness and metrics."},
        ],
        generate_unique_id_function=operation_id,
        docs_url=None,  # install_docs: the same pages, with assets served from here
        redoc_url=None,
    )
    install_error_handlers(app)
    negotiation = negotiation_router(build_examples())
    app.include_router(negotiation)
    app.include_router(reference_router())
    app.include_router(streaming_router())
    app.include_router(discovery_router())
    install_docs(app)
    # The first middleware added is the innermost: every one added after it, here or by an
    # embedder, wraps POST /pact too.
    app.add_middleware(PactFastPath, route=negotiation.routes[0])
    app.add_middleware(RequestContextMiddleware, log=log, metrics=metrics, routes=ROUTES)
    install_openapi(app, extra_models=(Envelope,))
    return app


def freeze_startup_objects() -> None:
    """Move everything made so far (modules, the app, its routes, models and OpenAPI
    examples) into the garbage collector's permanent generation.

    They live as long as the process anyway, and a full collection that walks them pauses every
    request in flight (the provider's p99: bench/results/findings.md). Called by the server
    entry points only (``pact-provider serve`` and the uvicorn factory), never by
    ``create_app``, so tests and embedders keep the default behaviour.
    """
    gc.collect()
    gc.freeze()


def app_from_env() -> FastAPI:
    """Factory for uvicorn (``pact_provider.app:app_from_env``): settings from the environment."""
    app = create_app()
    freeze_startup_objects()
    return app
