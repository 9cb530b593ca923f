"""The provider as a library: sell routes of an existing FastAPI app.

    from pact_provider.seller import PactSeller

    seller = PactSeller()                       # PACT_PROVIDER_* settings, as the service

    @seller.sell("weather.data", price="0.00008", latency_ms=2000)
    @app.get("/weather/{city}")
    async def weather(city: str) -> dict: ...

    seller.mount(app)                           # the provider at /pact-provider

The sold function stays the free route it was; for a paid call the provider calls it once,
after the buyer's funds locked, with the INTENT's ``scope``: a string scope goes to the
function's first required parameter, an object scope's keys to the parameters of those names.
The result (bytes, text, a pydantic model or anything FastAPI can encode as JSON) is the
payload; an ``HTTPException`` refunds the buyer. Negotiation, quote binding, settlement and
fulfilment are the standalone service's own (:func:`pact_provider.app.create_app`): the book
offers exactly the intent types sold here, and ``FULFILMENT`` is not consulted.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from decimal import Decimal
from types import MappingProxyType
from typing import Any, TypeVar

import orjson
from fastapi import FastAPI, HTTPException
from fastapi.encoders import jsonable_encoder
from pact_schema.money import WireMoneyError, parse_decimal_text
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from pact_provider.app import create_app
from pact_provider.config import ConfigError, ProviderSettings
from pact_provider.fulfilment.handlers import (
    FulfilmentError,
    FulfilmentRequest,
    Handler,
    HandlerBook,
)
from pact_provider.negotiation.pricing import (
    MAX_FRESHNESS_SEC,
    MAX_LATENCY_MS,
    PriceBook,
    build_price_book,
)

__all__ = ["PactSeller", "route_handler"]

F = TypeVar("F", bound=Callable[..., Any])


def _as_bytes(result: Any) -> bytes:
    if isinstance(result, bytes):
        return result
    if isinstance(result, str):
        return result.encode()
    if isinstance(result, Response):
        if not 200 <= result.status_code < 300:
            raise FulfilmentError(f"the route answered HTTP {result.status_code}")
        return bytes(result.body)
    if isinstance(result, BaseModel):
        return result.model_dump_json().encode()
    return orjson.dumps(jsonable_encoder(result))


def route_handler(func: Callable[..., Any]) -> Handler:
    """A fulfilment handler that calls ``func`` (async or not) with the INTENT's scope."""
    signature = inspect.signature(func)
    named = {
        name
        for name, p in signature.parameters.items()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }
    required = [
        name
        for name, p in signature.parameters.items()
        if name in named and p.default is inspect.Parameter.empty
    ]

    async def handler(request: FulfilmentRequest) -> bytes:
        scope = request.scope
        if isinstance(scope, dict):
            kwargs = {key: value for key, value in scope.items() if key in named}
        elif required:
            kwargs = {required[0]: scope}
        else:
            kwargs = {}
        try:
            signature.bind(**kwargs)
        except TypeError as exc:
            raise FulfilmentError(f"the scope does not fit the sold route: {exc}") from exc
        try:
            if inspect.iscoroutinefunction(func):
                result = await func(**kwargs)
            else:
                result = await run_in_threadpool(func, **kwargs)
        except HTTPException as exc:
            raise FulfilmentError(f"the route answered HTTP {exc.status_code}") from exc
        return _as_bytes(result)

    return handler


class PactSeller:
    """Priced intents backed by functions of this process, served by one provider app."""

    def __init__(self, settings: ProviderSettings | None = None, **overrides: Any) -> None:
        """``settings`` as the standalone service (default: from ``PACT_PROVIDER_*``), with
        ``overrides`` applied (field names of :class:`ProviderSettings`)."""
        if settings is None:
            # FULFILMENT=none: the sold functions deliver, so the demo is never in play
            # (production would refuse it).
            settings = ProviderSettings(**{"fulfilment": "none", **overrides})
        elif overrides:
            settings = ProviderSettings(**{**settings.model_dump(), **overrides})
        self.settings = settings
        self._handlers: dict[str, Handler] = {}
        self._prices: dict[str, Decimal] = {}
        self._latencies: dict[str, int] = {}
        self._freshness: dict[str, int] = {}
        self._app: FastAPI | None = None

    def sell(
        self,
        intent_type: str,
        *,
        price: str | Decimal,
        latency_ms: int | None = None,
        freshness_sec: int | None = None,
    ) -> Callable[[F], F]:
        """Decorator: ``intent_type`` is sold at list ``price`` (a decimal string) and
        delivered by the decorated function, which is returned unchanged. ``latency_ms`` and
        ``freshness_sec`` are the promises a price book entry makes."""
        try:
            amount = price if isinstance(price, Decimal) else parse_decimal_text(price)
        except WireMoneyError as exc:
            raise ConfigError(f"the price of {intent_type!r}: {exc}") from exc
        if not amount.is_finite() or amount <= 0:
            raise ConfigError(f"the price of {intent_type!r} must be a positive decimal")
        if latency_ms is not None and not 0 <= latency_ms <= MAX_LATENCY_MS:
            raise ConfigError(f"latency_ms of {intent_type!r} must be 0 to {MAX_LATENCY_MS}")
        if freshness_sec is not None and not 0 <= freshness_sec <= MAX_FRESHNESS_SEC:
            raise ConfigError(f"freshness_sec of {intent_type!r} must be 0 to {MAX_FRESHNESS_SEC}")

        def register(func: F) -> F:
            if self._app is not None:
                raise ConfigError("sell() after the provider app was built")
            self._handlers[intent_type] = route_handler(func)
            self._prices[intent_type] = amount
            if latency_ms is not None:
                self._latencies[intent_type] = latency_ms
            if freshness_sec is not None:
                self._freshness[intent_type] = freshness_sec
            return func

        return register

    def price_book(self) -> PriceBook:
        """The settings' book (default price and latency) offering exactly what is sold."""
        base = build_price_book(self.settings)
        return PriceBook(
            prices=MappingProxyType(dict(self._prices)),
            default_price=base.default_price,
            restricted=True,
            latencies=MappingProxyType(dict(self._latencies)),
            default_latency_ms=base.default_latency_ms,
            freshness=MappingProxyType(dict(self._freshness)),
        )

    def app(self, **create_app_options: Any) -> FastAPI:
        """The provider app (built once): the standalone service with the sold handlers."""
        if self._app is None:
            if not self._handlers:
                raise ConfigError("nothing is sold: decorate a function with seller.sell()")
            self._app = create_app(
                self.settings,
                handlers=HandlerBook(handlers=dict(self._handlers)),
                price_book=self.price_book(),
                **create_app_options,
            )
        return self._app

    def mount(self, app: FastAPI, path: str = "/pact-provider") -> FastAPI:
        """Serve the provider under ``path`` of ``app``, starting and stopping with it
        (a mounted app's own lifespan would never run)."""
        provider = self.app()
        app.mount(path, provider)
        outer = app.router.lifespan_context

        @asynccontextmanager
        async def lifespan(parent: Any) -> AsyncIterator[Any]:
            async with provider.router.lifespan_context(provider), outer(parent) as state:
                yield state

        app.router.lifespan_context = lifespan
        return provider
