"""Money on the wire: JSON numbers (doubles, as JavaScript reads them) ↔ ``Decimal``.

Arithmetic is always on ``Decimal``. A wire number becomes the ``Decimal`` of its shortest
round-trip text (``0.00008`` → ``Decimal("0.00008")``), never the binary expansion of the double.

Three rules hold everywhere an amount enters or leaves:

* **in from JSON**: a finite number below ``MAX_AMOUNT`` (10**20, the integer part of the
  settlement ledger's ``NUMERIC(38, 18)``) in magnitude (:func:`decimal_from_wire`);
* **in from text** (API bodies, the CLI, price books, settings): plain ASCII decimal notation
  only, ``[-]digits[.digits]``, at most ``MAX_AMOUNT_TEXT`` characters — no exponents,
  underscores, signs other than ``-``, whitespace, non-ASCII digits, NaN or Infinity
  (:func:`parse_decimal_text`, the only parser of amount text);
* **out to people**: :func:`format_amount` (``0.00008``, never ``8E-5``, ``0E-18`` or
  ``0.000080000000000000``).
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from functools import lru_cache
from typing import Annotated, Final

from pydantic import BeforeValidator

__all__ = [
    "MAX_AMOUNT",
    "MAX_AMOUNT_TEXT",
    "AmountText",
    "WireMoneyError",
    "check_magnitude",
    "decimal_from_wire",
    "decimal_to_wire",
    "format_amount",
    "format_wire_amount",
    "parse_decimal_text",
]

_MAX_SAFE_INT = 2**53 - 1
MAX_AMOUNT: Final = Decimal(10) ** 20
"""Every amount is smaller than this in magnitude (NUMERIC(38, 18) keeps 20 integer digits)."""
MAX_AMOUNT_TEXT: Final = 64
"""The longest amount text accepted (20 integer digits, a point and 18 decimals fit easily)."""
_PLAIN_DECIMAL: Final = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")


class WireMoneyError(ValueError):
    """A value cannot be used as money (wrong type, not finite, not representable)."""


def check_magnitude(value: Decimal) -> Decimal:
    """``value`` when it is finite and smaller than :data:`MAX_AMOUNT` in magnitude."""
    if not value.is_finite():
        raise WireMoneyError("amount must be finite")
    if value.copy_abs() >= MAX_AMOUNT:
        raise WireMoneyError("amount must be less than 1e20 in magnitude")
    return value


def decimal_from_wire(value: object) -> Decimal:
    """Decimal of a JSON number as received. Strings, booleans, non-finite numbers and
    magnitudes of :data:`MAX_AMOUNT` or more are refused."""
    if isinstance(value, bool):
        raise WireMoneyError("expected a number, got a boolean")
    if isinstance(value, Decimal):
        return check_magnitude(value)
    if isinstance(value, int):
        if abs(value) > _MAX_SAFE_INT:
            if abs(value) >= MAX_AMOUNT:  # before float(): a huge int overflows a double
                raise WireMoneyError("amount must be less than 1e20 in magnitude")
            # The double JavaScript reads, as its shortest text (2**64 is 18446744073709552000),
            # like every other wire number, so that it goes back to the wire unchanged.
            return Decimal(repr(float(value)))
        return Decimal(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise WireMoneyError("amount must be finite")
        return check_magnitude(Decimal(repr(value)))
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
        raise WireMoneyError(
            f"{format_amount(value)} has more precision than a JSON number carries"
        )
    return as_float


def parse_decimal_text(text: str) -> Decimal:
    """The amount written as plain ASCII decimal text: ``"1.25"``, ``"0.00008"``, ``"-3"``.

    The only way an amount is read from text. Refused with :class:`WireMoneyError`: anything
    but ``[-]digits[.digits]`` — whitespace, ``+``, ``1_000``, ``1e-5``, ``.5``, ``5.``,
    non-ASCII (Arabic-Indic, fullwidth) digits, ``NaN``, ``Infinity`` —, text longer than
    :data:`MAX_AMOUNT_TEXT`, and magnitudes of :data:`MAX_AMOUNT` or more. ``Decimal()``
    itself accepts all of those, which is why it is never called on amount text directly.
    """
    if not isinstance(text, str):
        raise WireMoneyError(f"an amount is decimal text, got {type(text).__name__}")
    if len(text) > MAX_AMOUNT_TEXT:
        raise WireMoneyError(f"amount text is longer than {MAX_AMOUNT_TEXT} characters")
    if not text.isascii() or _PLAIN_DECIMAL.fullmatch(text) is None:
        raise WireMoneyError(
            f"not a plain decimal amount (ASCII digits with an optional '-' and one '.'): {text!r}"
        )
    return check_magnitude(Decimal(text))


def _amount_text(value: object) -> object:
    return parse_decimal_text(value) if isinstance(value, str) else value


AmountText = Annotated[Decimal, BeforeValidator(_amount_text)]
"""A ``Decimal`` setting or field whose text form goes through :func:`parse_decimal_text`
(pydantic's own ``Decimal`` parsing accepts ``1_000``, ``" 1 "`` and non-ASCII digits)."""


def format_amount(value: Decimal) -> str:
    """An amount as people read it: the shortest plain decimal text, never an exponent.

    ``Decimal("0.000080000000000000")`` → ``"0.00008"``, ``Decimal("0E-18")`` → ``"0"``,
    ``Decimal("-0")`` → ``"0"``, ``Decimal("8E-5")`` → ``"0.00008"``, ``Decimal("1E+3")`` →
    ``"1000"``. The one formatter of amounts in API bodies, error texts and CLI output.
    """
    if not value.is_finite():
        return str(value)
    if value == 0:
        return "0"
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def format_wire_amount(value: object) -> str:
    """:func:`format_amount` of a wire amount (``8e-05`` → ``0.00008``); the raw text of a
    value that is not one."""
    try:
        return format_amount(decimal_from_wire(value))
    except WireMoneyError:
        return str(value)
