"""Reverse-proxy fulfilment: the seller's own HTTP API answers, the provider sells it.

``PACT_PROVIDER_UPSTREAM_URL`` is the API's base URL; the price book file's ``routes`` table
says, per intent type, how to call it::

    [routes."weather.data"]
    method = "GET"                      # default GET
    path = "/weather/{scope}"           # filled from the INTENT's scope
    headers = { "X-Api-Key" = "..." }   # added to every call (optional)
    timeout_s = 3.0                     # optional; FULFILMENT_TIMEOUT_S bounds it anyway

The path template takes ``{name}`` placeholders: an object scope fills each from its key of that
name; a string scope fills the template's one placeholder (``{scope}`` when it has several),
so ``/weather/{city}`` serves both ``"NYC"`` and ``{"city": "NYC"}``. Every value is
percent-encoded, so a scope can never reach another path or host. A non-GET
route sends an object scope as the JSON body. The response body of a 2xx is the payload; any
other status, a transport error or a timeout is a :class:`FulfilmentError`, so the buyer is
refunded at once and an error page is never delivered as goods.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from pact_provider.config import ConfigError, ProviderSettings
from pact_provider.fulfilment.handlers import FulfilmentError, FulfilmentRequest, HandlerBook
from pact_provider.negotiation.pricing import read_price_book

__all__ = ["Route", "UpstreamHandler", "load_routes", "upstream_handlers"]

METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
ROUTE_KEYS = frozenset({"method", "path", "headers", "timeout_s"})
MAX_PAYLOAD_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Route:
    path: str
    method: str = "GET"
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout_s: float | None = None

    def placeholders(self) -> set[str]:
        return {name for _, name, _, _ in string.Formatter().parse(self.path) if name}

    def target(self, scope: str | dict[str, Any] | None) -> str:
        """The path with the scope filled in, each value percent-encoded."""
        names = self.placeholders()
        if isinstance(scope, dict):
            values = {key: value for key, value in scope.items() if isinstance(key, str)}
        elif len(names) == 1:  # a string scope fills the one placeholder, whatever its name
            values = {next(iter(names)): "" if scope is None else scope}
        else:
            values = {"scope": "" if scope is None else scope}
        missing = names - set(values)
        if missing:
            raise FulfilmentError(f"the scope lacks {', '.join(sorted(missing))}")
        encoded = {name: quote(str(values[name]), safe="") for name in names}
        return self.path.format(**encoded)


def _route(intent_type: str, raw: Any) -> Route:
    where = f"price book: routes.{intent_type}"
    if not isinstance(raw, dict) or not isinstance(raw.get("path"), str):
        raise ConfigError(f"{where} must be a table with a `path`")
    unknown = set(raw) - ROUTE_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown keys {', '.join(sorted(unknown))}")
    path = raw["path"]
    if not path.startswith("/"):
        raise ConfigError(f"{where}.path must start with /")
    method = str(raw.get("method", "GET")).upper()
    if method not in METHODS:
        raise ConfigError(f"{where}.method must be one of {', '.join(sorted(METHODS))}")
    headers = raw.get("headers", {})
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        raise ConfigError(f"{where}.headers must map header names to strings")
    timeout = raw.get("timeout_s")
    if timeout is not None:
        try:
            timeout = float(timeout)
        except (TypeError, ValueError):
            timeout = -1.0
        if not 0 < timeout <= 600:
            raise ConfigError(f"{where}.timeout_s must be a number of seconds in (0, 600]")
    route = Route(path=path, method=method, headers=dict(headers), timeout_s=timeout)
    try:
        route.target(dict.fromkeys(route.placeholders(), "x"))
    except (ValueError, IndexError, KeyError) as exc:
        raise ConfigError(f"{where}.path is not a valid template: {exc}") from exc
    return route


def load_routes(document: Any) -> dict[str, Route]:
    """The ``routes`` table of a price book document (``{}`` when it has none)."""
    routes = document.get("routes", {}) if isinstance(document, dict) else {}
    if not isinstance(routes, dict):
        raise ConfigError("price book: `routes` must be a table of intent type -> route")
    return {str(name): _route(str(name), raw) for name, raw in routes.items()}


class UpstreamHandler:
    """One intent type's handler: calls its route on the upstream, returns the 2xx body."""

    def __init__(self, client: httpx.AsyncClient, route: Route) -> None:
        self._client = client
        self._route = route

    async def __call__(self, request: FulfilmentRequest) -> bytes:
        route = self._route
        body = request.scope if route.method != "GET" and isinstance(request.scope, dict) else None
        timeout = httpx.USE_CLIENT_DEFAULT if route.timeout_s is None else route.timeout_s
        try:
            response = await self._client.request(
                route.method,
                route.target(request.scope),
                headers={**route.headers, "Pact-Intent-Id": request.intent_id},
                json=body,
                timeout=timeout,
            )
        except httpx.TimeoutException as exc:
            raise FulfilmentError("the seller's API did not answer in time") from exc
        except httpx.HTTPError as exc:
            raise FulfilmentError(
                f"the seller's API could not be reached ({type(exc).__name__})"
            ) from exc
        if not response.is_success:
            raise FulfilmentError(f"the seller's API answered HTTP {response.status_code}")
        if len(response.content) > MAX_PAYLOAD_BYTES:
            raise FulfilmentError("the seller's API answered more than 8 MiB")
        return response.content


def upstream_handlers(
    settings: ProviderSettings, *, transport: httpx.AsyncBaseTransport | None = None
) -> HandlerBook:
    """Handlers for every routed intent type, sharing one connection pool to the upstream."""
    if settings.upstream_url is None:
        raise ConfigError("PACT_PROVIDER_UPSTREAM_URL is not set")
    if settings.price_book_file is None:
        raise ConfigError(
            "PACT_PROVIDER_UPSTREAM_URL needs PACT_PROVIDER_PRICE_BOOK_FILE with a `routes` "
            "table (intent type -> method, path)"
        )
    routes = load_routes(read_price_book(settings.price_book_file))
    client = httpx.AsyncClient(
        base_url=settings.upstream_url,
        timeout=httpx.Timeout(settings.fulfilment_timeout_s),
        transport=transport,
        follow_redirects=False,
    )
    return HandlerBook(
        handlers={name: UpstreamHandler(client, route) for name, route in routes.items()},
        closers=(client.aclose,),
    )
