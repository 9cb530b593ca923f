"""Money: ``Decimal`` in Python, ``NUMERIC(38, 18)`` in SQL, decimal strings on the API.

SQLite has no exact decimal type (its NUMERIC affinity keeps 15 significant digits), so on
SQLite money is stored as fixed-scale text (``"0.000080000000000000"``): exact, and its sign
is checkable in SQL (the migrations' CHECK constraints test the leading ``-``). Floats are
refused at the boundary, as django-hordak does.
"""

from __future__ import annotations

import decimal
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from pact_schema.money import MAX_AMOUNT, format_amount
from sqlalchemy import Numeric, String
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

__all__ = [
    "MONEY_LIMIT",
    "MONEY_PRECISION",
    "MONEY_SCALE",
    "Money",
    "MoneyError",
    "add",
    "decimal_text",
    "fits",
    "neg",
    "to_money",
    "total",
]

MONEY_PRECISION = 38
MONEY_SCALE = 18
_QUANTUM = Decimal(1).scaleb(-MONEY_SCALE)
MONEY_LIMIT = Decimal(10) ** (MONEY_PRECISION - MONEY_SCALE)
"""Every stored amount and balance is smaller than this in magnitude (NUMERIC(38, 18))."""
assert MONEY_LIMIT == MAX_AMOUNT  # the wire's limit is the ledger's (pact_schema.money)
_CONTEXT = decimal.Context(
    prec=MONEY_PRECISION + 2, traps=[decimal.Inexact, decimal.InvalidOperation]
)


#: Arithmetic on money never rounds silently: Python's default context keeps only 28 digits,
#: fewer than NUMERIC(38, 18) holds, so every sum goes through this context, which traps.
_ARITH = decimal.Context(
    prec=80, traps=[decimal.Inexact, decimal.InvalidOperation, decimal.Overflow]
)


def add(a: Decimal, b: Decimal) -> Decimal:
    return _ARITH.add(a, b)


def neg(a: Decimal) -> Decimal:
    return a.copy_negate()


def total(values: Iterable[Decimal]) -> Decimal:
    result = Decimal(0)
    for value in values:
        result = _ARITH.add(result, value)
    return result


class MoneyError(ValueError):
    """An amount cannot be stored exactly (float, too precise, too large, not finite)."""


def to_money(value: Decimal) -> Decimal:
    """``value`` at the ledger's fixed scale; refuses anything that would be rounded."""
    if isinstance(value, bool) or not isinstance(value, Decimal | int):
        raise MoneyError(f"money must be Decimal, got {type(value).__name__}")
    value = Decimal(value)
    if not value.is_finite():
        raise MoneyError("money must be finite")
    try:
        quantized = value.quantize(_QUANTUM, context=_CONTEXT)
    except (decimal.Inexact, decimal.InvalidOperation) as exc:
        raise MoneyError(
            f"{format_amount(value)} has more than {MONEY_SCALE} decimal places"
        ) from exc
    if quantized.copy_abs() >= MONEY_LIMIT:
        raise MoneyError(
            f"{format_amount(value)} is too large: amounts must be below 1e20 "
            f"(NUMERIC({MONEY_PRECISION}, {MONEY_SCALE}))"
        )
    if quantized == 0:
        quantized = Decimal(0).quantize(_QUANTUM)  # never "-0"
    return quantized


def fits(value: Decimal) -> bool:
    """True when ``value`` can be stored in a money column (magnitude below the limit)."""
    return value.copy_abs() < MONEY_LIMIT


#: Shortest plain decimal text (``Decimal("0.000080000000000000")`` → ``"0.00008"``, ``0E-18``
#: → ``"0"``): the one amount formatter, ``pact_schema.money.format_amount``, for API bodies
#: and every problem detail.
decimal_text = format_amount


class Money(TypeDecorator[Decimal]):
    """Exact money column: NUMERIC(38, 18); fixed-scale text on SQLite."""

    impl = Numeric(MONEY_PRECISION, MONEY_SCALE, asdecimal=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(48))
        return dialect.type_descriptor(Numeric(MONEY_PRECISION, MONEY_SCALE, asdecimal=True))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        quantized = to_money(value)
        return format(quantized, "f") if dialect.name == "sqlite" else quantized

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        if isinstance(value, float):  # pragma: no cover - would be a schema bug
            raise MoneyError("money column returned a float")
        return Decimal(value) if not isinstance(value, Decimal) else value

    @property
    def python_type(self) -> type[Decimal]:
        return Decimal
