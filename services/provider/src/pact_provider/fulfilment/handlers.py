"""Per-intent fulfilment handlers and how they are chosen.

A handler turns a settled agreement's intent type and scope into the payload bytes the buyer
paid for. It must be deterministic for the same intent id and scope: a buyer may resend the
same ACCEPT (settlement is idempotent), any replica may get it, and the commitment sent to
settlement must come out the same each time.

Operators plug in their own handlers with ``PACT_PROVIDER_FULFILMENT_MODULE=package.module``:
that module exposes ``HANDLERS: dict[str, Handler]`` (intent type → handler) and optionally
``DEFAULT_HANDLER``.
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from pact_provider.config import ConfigError, ProviderSettings

__all__ = [
    "FulfilmentRequest",
    "Handler",
    "HandlerBook",
    "demo_handlers",
    "fulfilment_handlers",
    "load_handler_book",
]


@dataclass(frozen=True, slots=True)
class FulfilmentRequest:
    intent_id: str
    intent_type: str
    scope: str | dict[str, Any] | None
    buyer_key: str


Handler = Callable[[FulfilmentRequest], Awaitable[bytes]]


@dataclass(frozen=True, slots=True)
class HandlerBook:
    handlers: Mapping[str, Handler]
    default: Handler | None = None

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
    return demo_handlers() if settings.fulfilment == "demo" else None
