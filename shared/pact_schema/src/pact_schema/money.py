"""Money on the wire: JSON numbers (doubles, as JavaScript reads them) ↔ ``Decimal``.

Arithmetic is always on ``Decimal``. A wire number becomes the ``Decimal`` of its shortest
round-trip text (``0.00008`` → ``Decimal("0.00008")``), never the binary expansion of the double.
"""

from __future__ import annotations

import math
from decimal import Decimal, InvalidOperation
from functools import lru_cache

__all__ = [
    "WireMoneyError",
    "decimal_from_wire",
    "decimal_to_wire",
    "format_wire_amount",
    "parse_decimal_text",
]

_MAX_SAFE_INT = 2**53 - 1


class WireMoneyError(ValueError):
    """A value cannot be used as money (wrong type, not finite, not representable)."""


def decimal_from_wire(value: object) -> Decimal:
    """Decimal of a JSON number as received. Strings and booleans are refused."""
    if isinstance(value, bool):
        raise WireMoneyError("expected a number, got a boolean")
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise WireMoneyError("amount must be finite")
        return value
    if isinstance(value, int):
        return Decimal(float(value)) if abs(value) > _MAX_SAFE_INT else Decimal(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise WireMoneyError("amount must be finite")
        return Decimal(repr(value))
    raise WireMoneyError(f"expected a number, got {type(value).__name__}")


def decimal_to_wire(value: Decimal) -> int | float:
    """The JSON number for ``value``; refuses amounts a double cannot carry exactly."""
    if not value.is_finite():
        raise WireMoneyError("amount must be finite")
    return _finite_to_wire(value)


@lru_cache(maxsize=4096)
def _finite_to_wire(value: Decimal) -> int | float:
    # Memoised: a pure function of the numeric value (equal Decimals such as 5 and 5.000 give
    # the same number), and a provider writes the same few prices over and over (~2 µs each).
    # Refusals are not cached: they raise every time. NaN/sNaN never get here (unhashable).
    if value == value.to_integral_value() and abs(value) <= _MAX_SAFE_INT:
        return int(value)
    as_float = float(value)
    if Decimal(repr(as_float)) != value:
        raise WireMoneyError(f"{value} has more precision than a JSON number carries")
    return as_float


def parse_decimal_text(text: str) -> Decimal:
    """Decimal from a decimal string such as ``"1.25"`` (API amounts); refuses NaN/Inf."""
    try:
        value = Decimal(text.strip())
    except (InvalidOperation, AttributeError) as exc:
        raise WireMoneyError(f"not a decimal amount: {text!r}") from exc
    if not value.is_finite():
        raise WireMoneyError("amount must be finite")
    return value


def format_wire_amount(value: object) -> str:
    """Plain decimal text of a wire amount for people (``8e-05`` → ``0.00008``)."""
    try:
        return format(decimal_from_wire(value), "f")
    except WireMoneyError:
        return str(value)
