"""Prices: the price book, the seed's multipliers, the BID concession strategy. ``Decimal`` only.

Rounding: every price the provider quotes is rounded half-up to 12 decimal places
(``PRICE_QUANTUM``) and to at most 15 significant digits, so that it travels as a JSON number
(a double) without loss. A concession floor is rounded *up*, so no quote is ever below it.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, ROUND_UP, Context, Decimal, localcontext
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

from pact_schema import Intent
from pact_schema.money import WireMoneyError, decimal_from_wire, decimal_to_wire, parse_decimal_text

from pact_provider.config import (
    DEFAULT_LATENCY_MS,
    DEFAULT_PRICE,
    DEFAULT_PRICES,
    ConfigError,
    ProviderSettings,
)

__all__ = [
    "DEFAULT_BOOK",
    "MAX_MULTIPLIER",
    "MIN_BOND",
    "PRICE_QUANTUM",
    "AskNumbers",
    "Offer",
    "PriceBook",
    "ask_numbers",
    "bond_for",
    "build_price_book",
    "concede",
    "quantize_price",
    "read_price_book",
]

PRICE_DECIMALS = 12
PRICE_QUANTUM = Decimal(1).scaleb(-PRICE_DECIMALS)
MAX_SIGNIFICANT_DIGITS = 15  # every decimal with ≤ 15 significant digits survives a double
MAX_LIST_PRICE = Decimal("1e9")
MAX_LATENCY_MS = 3_600_000
MAX_FRESHNESS_SEC = 31_536_000
MIN_BOND = Decimal("0.00001")

# The seed's multipliers: (condition, factor).
LATENCY_THRESHOLD_MS = 50
LATENCY_FACTOR = Decimal("1.2")
FRESHNESS_THRESHOLD_SEC = 10
FRESHNESS_FACTOR = Decimal("1.1")
URGENT_FACTOR = Decimal("1.15")
MAX_MULTIPLIER = LATENCY_FACTOR * FRESHNESS_FACTOR * URGENT_FACTOR

_WIDE = Context(prec=60)
_SIGNIFICANT = Context(prec=MAX_SIGNIFICANT_DIGITS, rounding=ROUND_HALF_UP)


def quantize_price(value: Decimal, rounding: str = ROUND_HALF_UP) -> Decimal:
    """``value`` rounded to the price grid (12 dp, ≤ 15 significant digits), normalised."""
    with localcontext(_WIDE):
        rounded = value.quantize(PRICE_QUANTUM, rounding=rounding)
    if len(rounded.as_tuple().digits) > MAX_SIGNIFICANT_DIGITS:
        rounded = _SIGNIFICANT.create_decimal(rounded)
    return rounded.normalize(_WIDE)


def bond_for(price: Decimal) -> Decimal:
    """Bond the seller requires: max(0.00001, 2 * price)."""
    return quantize_price(max(MIN_BOND, 2 * price))


@dataclass(frozen=True, slots=True)
class AskNumbers:
    """The money of one ASK: the bond for ``price`` and both as JSON numbers."""

    bond: Decimal
    wire_price: int | float
    wire_bond: int | float


@lru_cache(maxsize=4096)
def ask_numbers(price: Decimal) -> AskNumbers:
    """Bond and wire numbers of a quoted price (memoised: a pure function of ``price``, and an
    INTENT's price takes one of few values, so the Decimal work runs once per price)."""
    bond = bond_for(price)
    return AskNumbers(bond=bond, wire_price=decimal_to_wire(price), wire_bond=decimal_to_wire(bond))


@lru_cache(maxsize=4096)
def _multiplied(base: Decimal, fast: bool, fresh: bool, urgent: bool) -> Decimal:
    price = base
    if fast:
        price *= LATENCY_FACTOR
    if fresh:
        price *= FRESHNESS_FACTOR
    if urgent:
        price *= URGENT_FACTOR
    return quantize_price(price)


def concede(
    *, previous_ask: Decimal, bid: Decimal, list_price: Decimal, floor_ratio: Decimal
) -> Decimal:
    """Next ask after a BID: meet halfway between the previous ask and the bid, bounded.

    ``floor = ceil(floor_ratio * list_price)``; a bid below the floor counts as the floor (so a
    lowball gains nothing over bidding the floor); the result is never below the floor and
    never above the previous ask. Deterministic, so every replica answers alike.
    """
    floor = max(PRICE_QUANTUM, quantize_price(list_price * floor_ratio, rounding=ROUND_UP))
    target = max(bid, floor)
    halfway = quantize_price((previous_ask + target) / 2)
    return min(previous_ask, max(floor, halfway))


@dataclass(frozen=True, slots=True)
class Offer:
    """What the provider offers for one intent type: its list price and the delivery latency
    it promises (ms from the lock to its COMMIT, on settlement's clock)."""

    list_price: Decimal
    latency_ms: int
    freshness_sec: int | None = None
    """The oldest data the seller may deliver for this intent type (s); None: no promise."""


@dataclass(frozen=True, slots=True)
class PriceBook:
    prices: Mapping[str, Decimal]
    default_price: Decimal
    restricted: bool
    """When set, intent types not in ``prices`` are not offered."""
    latencies: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    """Per-intent latency promises; the others promise ``default_latency_ms``."""
    default_latency_ms: int = DEFAULT_LATENCY_MS
    freshness: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    """Per-intent freshness promises (the oldest data delivered, seconds)."""

    def list_price(self, intent_type: str) -> Decimal | None:
        """Base price of an intent type; None when the type is not offered."""
        price = self.prices.get(intent_type)
        if price is None and not self.restricted:
            return self.default_price
        return price

    def offer(self, intent_type: str) -> Offer | None:
        """The offer for an intent type; None when the type is not offered."""
        price = self.list_price(intent_type)
        if price is None:
            return None
        return Offer(
            price,
            self.latencies.get(intent_type, self.default_latency_ms),
            self.freshness.get(intent_type),
        )

    def price_for(self, intent: Intent, offer: Offer) -> Decimal:
        """The seed's pricing: list price * 1.2 (the *promised* latency < 50 ms) * 1.1
        (freshness asked < 10 s) * 1.15 (urgent), rounded to the price grid. The latency
        factor follows the seller's own promise, never the buyer's demand: a buyer cannot
        make the provider charge for, or promise, a speed it did not choose. Memoised per
        (price, multipliers): few distinct inputs, so the Decimal arithmetic runs once each."""
        return _multiplied(
            offer.list_price,
            offer.latency_ms < LATENCY_THRESHOLD_MS,
            intent.constraints.freshness_sec < FRESHNESS_THRESHOLD_SEC,
            bool(intent.urgent),
        )

    @property
    def highest_price(self) -> Decimal:
        """The most any intent can cost here (every multiplier applied)."""
        return quantize_price(max([self.default_price, *self.prices.values()]) * MAX_MULTIPLIER)


DEFAULT_BOOK = PriceBook(
    prices=MappingProxyType(dict(DEFAULT_PRICES)),
    default_price=DEFAULT_PRICE,
    restricted=False,
)
"""The seed's price book (the settings' defaults)."""


def _as_decimal(name: str, value: Any) -> Decimal:
    try:
        amount = parse_decimal_text(value) if isinstance(value, str) else decimal_from_wire(value)
    except WireMoneyError as exc:
        raise ConfigError(f"price book: {name}: {exc}") from exc
    if amount <= 0 or amount > MAX_LIST_PRICE:
        raise ConfigError(f"price book: {name} must be > 0 and ≤ {MAX_LIST_PRICE}")
    if quantize_price(amount) != amount:
        raise ConfigError(f"price book: {name} has more than 12 decimal places")
    return amount


def read_price_book(path: Path) -> Any:
    """The price book document; its fractional numbers stay text, for
    :func:`~pact_schema.money.parse_decimal_text` (plain decimal notation only: ``1e-5``,
    ``1_000.5``, ``inf``, ``nan`` are refused as they would be anywhere else)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read price book {path}: {exc.strerror}") from exc
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            return tomllib.loads(text, parse_float=str)
        if suffix == ".json":
            return json.loads(text, parse_float=str)
    except ValueError as exc:  # TOMLDecodeError and JSONDecodeError are ValueErrors
        raise ConfigError(f"price book {path} is not valid {suffix[1:]}: {exc}") from exc
    raise ConfigError(f"price book {path}: use a .toml or .json file")


def _as_latency(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_LATENCY_MS:
        raise ConfigError(f"price book: {name} must be an integer from 0 to {MAX_LATENCY_MS} ms")
    return value


def _as_freshness(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_FRESHNESS_SEC:
        raise ConfigError(f"price book: {name} must be an integer from 0 to {MAX_FRESHNESS_SEC} s")
    return value


def _entry(name: str, value: Any) -> tuple[Decimal, int | None, int | None]:
    """A price-book entry: a price, or a table ``{price, latency_ms, freshness_sec}``."""
    if not isinstance(value, dict):
        return _as_decimal(name, value), None, None
    unknown = set(value) - {"price", "latency_ms", "freshness_sec"}
    if unknown or "price" not in value:
        raise ConfigError(
            f"price book: {name} takes `price` and optional `latency_ms`, `freshness_sec` only"
        )
    latency, freshness = value.get("latency_ms"), value.get("freshness_sec")
    return (
        _as_decimal(name, value["price"]),
        None if latency is None else _as_latency(f"{name}.latency_ms", latency),
        None if freshness is None else _as_freshness(f"{name}.freshness_sec", freshness),
    )


def build_price_book(settings: ProviderSettings) -> PriceBook:
    """The effective price book: PRICE_BOOK_FILE if set, else PRICES; DEFAULT_PRICE and
    LATENCY_MS for the rest."""
    prices: Mapping[str, Any] = settings.prices
    default: Any = settings.default_price
    default_latency: Any = settings.latency_ms
    if settings.price_book_file is not None:
        doc = read_price_book(settings.price_book_file)
        if not isinstance(doc, dict) or not isinstance(doc.get("prices"), dict):
            raise ConfigError(
                f"price book {settings.price_book_file} must have a `prices` table/mapping"
            )
        prices = doc["prices"]
        default = doc.get("default_price", default)
        default_latency = doc.get("latency_ms", default_latency)
    entries = {str(name): _entry(str(name), value) for name, value in prices.items()}
    return PriceBook(
        prices=MappingProxyType({name: price for name, (price, _, _) in entries.items()}),
        default_price=_as_decimal("default_price", default),
        restricted=settings.restrict_intents,
        latencies=MappingProxyType(
            {name: latency for name, (_, latency, _) in entries.items() if latency is not None}
        ),
        freshness=MappingProxyType(
            {name: fresh for name, (_, _, fresh) in entries.items() if fresh is not None}
        ),
        default_latency_ms=_as_latency("latency_ms", default_latency),
    )
