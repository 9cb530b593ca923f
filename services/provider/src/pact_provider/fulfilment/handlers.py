"""Per-intent fulfilment handlers and how they are chosen.

A handler turns a settled agreement's intent type and scope into the payload bytes the buyer
paid for. It is called once per settlement: the fulfiller keeps the bytes it committed to
(:mod:`pact_provider.fulfilment.committed`) and reveals exactly those, on whichever replica
the buyer's resent ACCEPT lands, so a handler may answer differently on every call (real
weather changes). A handler that cannot deliver raises :class:`FulfilmentError` (its message
is the reason the buyer reads) or any other exception (the buyer reads only its type); either
way the trade is called off and the buyer refunded at once.

Sellers plug in their own handlers three ways, all ending in a :class:`HandlerBook`:

* ``PACT_PROVIDER_FULFILMENT_MODULE=package.module``: that module exposes
  ``HANDLERS: dict[str, Handler]`` (intent type → handler) and optionally ``DEFAULT_HANDLER``;
* ``PACT_PROVIDER_UPSTREAM_URL`` with a route table (:mod:`pact_provider.fulfilment.upstream`);
* :class:`pact_provider.seller.PactSeller` on an existing FastAPI app.
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from pact_provider.config import ConfigError, ProviderSettings

__all__ = [
    "FulfilmentError",
    "FulfilmentRequest",
    "Handler",
    "HandlerBook",
    "demo_handlers",
    "fulfilment_handlers",
    "load_handler_book",
]


@dataclass(frozen=True, slots=True)
class FulfilmentRequest:
    """What a handler is asked to deliver: the settled intent, as the buyer stated it."""

    intent_id: str
    intent_type: str
    scope: str | dict[str, Any] | None
    """The INTENT's ``scope``: a string (``"NYC"``) or a JSON object."""
    buyer_key: str
    """The buyer's base58 public key."""


class Handler(Protocol):
    """The handler protocol: ``async def handler(request: FulfilmentRequest) -> bytes``."""

    def __call__(self, request: FulfilmentRequest, /) -> Awaitable[bytes]: ...


class FulfilmentError(Exception):
    """A handler cannot deliver; the message is the reason the refunded buyer reads (never
    put a secret in it)."""


@dataclass(frozen=True, slots=True)
class HandlerBook:
    handlers: Mapping[str, Handler]
    default: Handler | None = None
    closers: tuple[Callable[[], Awaitable[None]], ...] = ()
    """Called once at shutdown (an upstream's connection pool)."""

    def unfulfilled(self, intent_types: Iterable[str]) -> list[str]:
        """The intent types among ``intent_types`` that no handler delivers."""
        return sorted(name for name in intent_types if self.for_intent(name) is None)

    async def aclose(self) -> None:
        for close in self.closers:
            await close()

    def for_intent(self, intent_type: str) -> Handler | None:
        return self.handlers.get(intent_type, self.default)


def _scope_digest(request: FulfilmentRequest) -> bytes:
    return hashlib.sha256(orjson.dumps(request.scope, option=orjson.OPT_SORT_KEYS)).digest()


async def weather_report(request: FulfilmentRequest) -> bytes:
    """Demo ``weather.data``: a deterministic, plausible observation for the scope."""
    seed = _scope_digest(request)
    report = {
        "intent_id": request.intent_id,
        "scope": request.scope,
        "observation": {
            "temperature_c": round(-10 + seed[0] / 255 * 45, 1),
            "humidity_pct": 20 + seed[1] % 75,
            "wind_kph": round(seed[2] / 255 * 60, 1),
            "conditions": ["clear", "clouds", "rain", "snow", "fog"][seed[3] % 5],
        },
        "source": "pact-provider demo handler (deterministic, not real weather)",
    }
    return orjson.dumps(report, option=orjson.OPT_SORT_KEYS)


async def echo_receipt(request: FulfilmentRequest) -> bytes:
    """Demo handler for any other intent type: states what was bought, deterministically."""
    return orjson.dumps(
        {
            "intent_id": request.intent_id,
            "intent": request.intent_type,
            "scope": request.scope,
            "result_sha256": _scope_digest(request).hex(),
            "source": "pact-provider demo handler",
        },
        option=orjson.OPT_SORT_KEYS,
    )


def demo_handlers() -> HandlerBook:
    return HandlerBook(handlers={"weather.data": weather_report}, default=echo_receipt)


def load_handler_book(module_name: str) -> HandlerBook:
    """Handlers from an operator's module (``HANDLERS`` and optional ``DEFAULT_HANDLER``)."""
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"PACT_PROVIDER_FULFILMENT_MODULE: cannot import {module_name}") from exc
    handlers = getattr(module, "HANDLERS", None)
    if not isinstance(handlers, Mapping) or not all(callable(h) for h in handlers.values()):
        raise ConfigError(f"{module_name}.HANDLERS must map intent types to async handlers")
    default = getattr(module, "DEFAULT_HANDLER", None)
    if default is not None and not callable(default):
        raise ConfigError(f"{module_name}.DEFAULT_HANDLER must be an async handler")
    return HandlerBook(handlers=dict(handlers), default=default)


def fulfilment_handlers(settings: ProviderSettings) -> HandlerBook | None:
    """The handlers the settings ask for; None when delivery is left to another process."""
    if settings.fulfilment_module:
        return load_handler_book(settings.fulfilment_module)
    if settings.upstream_url:
        from pact_provider.fulfilment.upstream import upstream_handlers

        return upstream_handlers(settings)
    return demo_handlers() if settings.fulfilment == "demo" else None
