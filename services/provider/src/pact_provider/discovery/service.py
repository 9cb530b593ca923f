"""The provider's discovery document (``/.well-known/pact-provider``), rendered once."""

from __future__ import annotations

from typing import Any

from pact_schema import ENVELOPE_VERSION, PROTOCOL_VERSION
from pact_schema.money import format_amount

from pact_provider.config import MAX_QUOTE_VALID_FOR_MS, MIN_QUOTE_VALID_FOR_MS, ProviderSettings
from pact_provider.identity import ProviderIdentity
from pact_provider.negotiation import pricing
from pact_provider.negotiation.pricing import PriceBook

__all__ = ["well_known_document"]


def _amount(value: Any) -> str:
    return format_amount(value)


def well_known_document(
    settings: ProviderSettings, identity: ProviderIdentity, book: PriceBook
) -> dict[str, Any]:
    """Public key, intents and prices, policy limits, protocol versions. Amounts are strings."""
    return {
        "public_key_b58": identity.public_key_b58,
        "previous_keys_b58": sorted(identity.trusted_keys - {identity.public_key_b58}),
        "protocol_versions": [PROTOCOL_VERSION],
        "envelope_versions": [ENVELOPE_VERSION],
        "endpoint": "/pact",
        "accepts": ["INTENT", "BID", "ACCEPT", "REJECT"],
        "reference_endpoints": {
            "quote": "/quote",
            "commit": "/commit",
            "reveal": "/reveal",
            "stream_chunk": "/stream/chunk (refused: streaming is not offered)",
            "health": "/health",
        },
        "bare_accept": "quote_store"
        if settings.quote_store_url is not None
        else ("lenient" if settings.lenient_accept else "refused"),
        "intents": {name: _amount(price) for name, price in sorted(book.prices.items())},
        "default_price": None if book.restricted else _amount(book.default_price),
        "latency_ms": {
            "default": book.default_latency_ms,
            "intents": dict(sorted(book.latencies.items())),
            "measured": "by settlement, from the funds locking to the provider's COMMIT",
        },
        "freshness_sec": {
            "intents": dict(sorted(book.freshness.items())),
            "meaning": "the oldest data delivered; an INTENT asking for fresher data is refused "
            "(FRESHNESS_BREACH) before any quote",
        },
        "restrict_intents": book.restricted,
        "pricing": {
            "unit": "request",
            "multipliers": [
                {
                    "when": f"the promised latency_ms < {pricing.LATENCY_THRESHOLD_MS}",
                    "factor": _amount(pricing.LATENCY_FACTOR),
                },
                {
                    "when": f"constraints.freshness_sec < {pricing.FRESHNESS_THRESHOLD_SEC}",
                    "factor": _amount(pricing.FRESHNESS_FACTOR),
                },
                {"when": "urgent", "factor": _amount(pricing.URGENT_FACTOR)},
            ],
            "bond_required": f"max({_amount(pricing.MIN_BOND)}, 2 * price)",
            "decimal_places": pricing.PRICE_DECIMALS,
            "rounding": "half-up",
        },
        "negotiation": {
            "max_rounds": settings.max_rounds,
            "strategy": "meet-halfway",
            "price_floor_ratio": _amount(settings.price_floor_ratio),
            "quote_field": "quote",
        },
        "policy": {
            "quote_valid_for_ms": settings.quote_valid_for_ms,
            "max_clock_skew_ms": settings.max_clock_skew_ms,
            "quote_grace_ms": settings.quote_grace_ms,
            "settlement_modes": list(settings.settlement_modes),
            "lenient_accept": settings.lenient_accept,
            "max_body_bytes": settings.max_body_bytes,
            "min_delivery_window_ms": settings.min_delivery_window_ms,
            "max_negotiation_ms": settings.max_negotiation_ms,
            "bid_valid_for_ms": [MIN_QUOTE_VALID_FOR_MS, MAX_QUOTE_VALID_FOR_MS],
        },
    }
