"""Decimal amounts to a rail's integer units (cents, yen, wei), exactly or with explicit rounding.

Money is :class:`~decimal.Decimal` everywhere in the service; it becomes an integer only here,
at the rail boundary. Every conversion either is exact or rounds with a rounding mode the
caller names; nothing is ever rounded silently, and floats are refused outright (a float has
already lost the amount before we see it).

- :func:`to_minor_units` / :func:`from_minor_units`: generic, for a currency exponent.
- :func:`to_wei` / :func:`from_wei`: ether <-> wei (exponent 18). ``to_wei`` is **exact by
  default**: an amount with more than 18 decimal places raises :class:`AmountPrecisionError`
  instead of being rounded; pass ``rounding=`` to round on purpose.
- :func:`to_stripe_amount` / :func:`from_stripe_amount`: Stripe's integer ``amount`` for a
  currency, using Stripe's zero- and three-decimal currency lists, and refusing amounts below
  Stripe's minimum charge for the currency with :class:`AmountBelowRailMinimumError`
  (failure code ``AMOUNT_BELOW_RAIL_MINIMUM``) *before* anything is sent. Every caller in the
  service asks for an exact conversion (``rounding=None``): an amount that is not a whole
  number of minor units raises :class:`AmountPrecisionError` (``AMOUNT_NOT_IN_RAIL_UNITS``)
  instead of being charged as a different amount.

Micropayments: protocol prices go far below a cent, but Stripe refuses charges below its
per-currency minimum (USD 0.50, ...). The operator aggregates instead of charging each price:
buyers pre-fund a balance (one Stripe charge, e.g. USD 20.00, credited to their account in the
ledger), micropayment settlements run on the ledger rail against that balance, and sellers are
paid out in aggregate. The Stripe rail is for settlements at or above the minimum.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_HALF_UP, Context, Decimal, Inexact, InvalidOperation
from types import MappingProxyType
from typing import Final

from pact_schema.codes import FailureCode
from pact_schema.money import format_amount

__all__ = [
    "MAX_UINT256",
    "STRIPE_MINIMUM_CHARGE",
    "STRIPE_THREE_DECIMAL_CURRENCIES",
    "STRIPE_ZERO_DECIMAL_CURRENCIES",
    "WEI_PER_ETHER_EXPONENT",
    "AmountBelowRailMinimumError",
    "AmountError",
    "AmountPrecisionError",
    "UnsupportedCurrencyError",
    "from_minor_units",
    "from_stripe_amount",
    "from_wei",
    "stripe_exponent",
    "stripe_minimum_minor_units",
    "to_minor_units",
    "to_stripe_amount",
    "to_wei",
]

WEI_PER_ETHER_EXPONENT: Final = 18
MAX_UINT256: Final = 2**256 - 1

# https://docs.stripe.com/currencies#zero-decimal
STRIPE_ZERO_DECIMAL_CURRENCIES: Final = frozenset(
    {
        "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga",
        "pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf",
    }
)  # fmt: skip
# https://docs.stripe.com/currencies#three-decimal : sent with 3 decimals, but the last digit
# must be 0, so these are rounded to 2 decimals first and then multiplied by 10.
STRIPE_THREE_DECIMAL_CURRENCIES: Final = frozenset({"bhd", "jod", "kwd", "omr", "tnd"})

# https://docs.stripe.com/currencies#minimum-and-maximum-charge-amounts (in major units).
# Only currencies listed here can be charged: for any other, Stripe's minimum is "the
# equivalent of USD 0.50", which cannot be checked without an exchange rate.
STRIPE_MINIMUM_CHARGE: Final[Mapping[str, Decimal]] = MappingProxyType(
    {
        "usd": Decimal("0.50"),
        "aed": Decimal("2.00"),
        "aud": Decimal("0.50"),
        "bgn": Decimal("1.00"),
        "brl": Decimal("0.50"),
        "cad": Decimal("0.50"),
        "chf": Decimal("0.50"),
        "czk": Decimal("15.00"),
        "dkk": Decimal("2.50"),
        "eur": Decimal("0.50"),
        "gbp": Decimal("0.30"),
        "hkd": Decimal("4.00"),
        "huf": Decimal("175.00"),
        "inr": Decimal("0.50"),
        "jpy": Decimal("50"),
        "mxn": Decimal("10"),
        "myr": Decimal("2"),
        "nok": Decimal("3.00"),
        "nzd": Decimal("0.50"),
        "pln": Decimal("2.00"),
        "ron": Decimal("2.00"),
        "sek": Decimal("3.00"),
        "sgd": Decimal("0.50"),
        "thb": Decimal("10"),
    }
)


class AmountError(ValueError):
    """An amount that cannot be converted for a rail (float, negative, NaN, too large, ...)."""

    failure_code: FailureCode = FailureCode.SETTLEMENT_FAILED


class AmountPrecisionError(AmountError):
    """The amount has more precision than the rail's unit and no rounding was asked for."""

    failure_code = FailureCode.AMOUNT_NOT_IN_RAIL_UNITS


class UnsupportedCurrencyError(AmountError):
    """The rail cannot charge this currency (not in its table)."""


class AmountBelowRailMinimumError(AmountError):
    """The amount is positive but below the smallest charge the rail accepts."""

    failure_code = FailureCode.AMOUNT_BELOW_RAIL_MINIMUM

    def __init__(self, *, amount: Decimal, minimum: Decimal, currency: str, rail: str) -> None:
        super().__init__(
            f"{format_amount(amount)} {currency.upper()} is below the {rail} minimum charge of "
            f"{minimum} {currency.upper()}; aggregate such amounts (e.g. a pre-funded "
            "ledger balance) instead of charging them one by one"
        )
        self.amount = amount
        self.minimum = minimum
        self.currency = currency
        self.rail = rail


def _check_decimal(amount: object) -> Decimal:
    # bool is an int subclass; float has already lost the exact value.
    if isinstance(amount, bool) or not isinstance(amount, (Decimal, int)):
        raise AmountError(
            f"amount must be a Decimal (or int), not {type(amount).__name__}: {amount!r}"
        )
    value = Decimal(amount)
    if not value.is_finite():
        raise AmountError(f"amount must be finite, got {value}")
    if value < 0:
        raise AmountError(f"amount must not be negative, got {value}")
    return value


def to_minor_units(
    amount: Decimal | int, exponent: int, rounding: str | None = ROUND_HALF_UP
) -> int:
    """``amount * 10**exponent`` as an int, rounded with ``rounding`` (a ``decimal.ROUND_*``).

    ``rounding=None`` means "must be exact": a remainder raises :class:`AmountPrecisionError`.
    Refuses floats, bools, NaN/infinity and negative amounts with :class:`AmountError`.
    """
    value = _check_decimal(amount)
    if isinstance(exponent, bool) or not isinstance(exponent, int) or exponent < 0:
        raise AmountError(f"exponent must be a non-negative int, got {exponent!r}")
    # Enough precision for any amount we will ever see (and then some): no context rounding
    # can happen before the explicit to_integral_value below.
    digits = len(value.as_tuple().digits)
    ctx = Context(prec=max(digits + exponent + 2, 28), traps=[InvalidOperation])
    scaled = value.scaleb(exponent, context=ctx)
    if rounding is None:
        integral = scaled.to_integral_value(context=ctx)
        if integral != scaled:
            raise AmountPrecisionError(
                f"{format_amount(value)} has more than {exponent} decimal places and no "
                "rounding was requested"
            )
    else:
        try:
            integral = scaled.to_integral_value(rounding=rounding, context=ctx)
        except (TypeError, ValueError) as exc:  # an unknown rounding name
            raise AmountError(f"unknown rounding mode {rounding!r}") from exc
    return int(integral)


def from_minor_units(minor: int, exponent: int) -> Decimal:
    """The exact Decimal for ``minor`` units (``1234, 2 -> Decimal("12.34")``)."""
    if isinstance(minor, bool) or not isinstance(minor, int):
        raise AmountError(f"minor units must be an int, not {type(minor).__name__}")
    if isinstance(exponent, bool) or not isinstance(exponent, int) or exponent < 0:
        raise AmountError(f"exponent must be a non-negative int, got {exponent!r}")
    ctx = Context(prec=max(len(str(abs(minor))) + 2, 28), traps=[Inexact, InvalidOperation])
    return Decimal(minor).scaleb(-exponent, context=ctx)


# --------------------------------------------------------------------------------------------
# wei
# --------------------------------------------------------------------------------------------


def to_wei(ether: Decimal | int, rounding: str | None = None) -> int:
    """Ether (a Decimal) to wei, **exact by default**.

    ``Decimal("0.000000000000000001")`` is 1 wei. An amount with a fraction of a wei raises
    :class:`AmountPrecisionError` unless ``rounding`` is given. Values above ``2**256 - 1`` wei
    cannot exist on chain and raise :class:`AmountError`.
    """
    wei = to_minor_units(ether, WEI_PER_ETHER_EXPONENT, rounding)
    if wei > MAX_UINT256:
        raise AmountError(f"{ether} ether does not fit in a uint256 of wei")
    return wei


def from_wei(wei: int) -> Decimal:
    """Wei to the exact Decimal amount of ether."""
    return from_minor_units(wei, WEI_PER_ETHER_EXPONENT)


# --------------------------------------------------------------------------------------------
# Stripe
# --------------------------------------------------------------------------------------------


def _normalise_currency(currency: str) -> str:
    if not isinstance(currency, str) or len(currency) != 3 or not currency.isalpha():
        raise UnsupportedCurrencyError(f"not an ISO 4217 currency code: {currency!r}")
    code = currency.lower()
    if code not in STRIPE_MINIMUM_CHARGE:
        raise UnsupportedCurrencyError(
            f"currency {code.upper()} has no known Stripe minimum charge; supported: "
            + ", ".join(sorted(c.upper() for c in STRIPE_MINIMUM_CHARGE))
        )
    return code


def stripe_exponent(currency: str) -> int:
    """Decimal places of Stripe's ``amount`` for ``currency`` (0 for JPY, 3 for KWD, else 2)."""
    code = currency.lower()
    if code in STRIPE_ZERO_DECIMAL_CURRENCIES:
        return 0
    if code in STRIPE_THREE_DECIMAL_CURRENCIES:
        return 3
    return 2


def stripe_minimum_minor_units(currency: str) -> int:
    """Stripe's minimum charge for ``currency`` in its integer ``amount`` units."""
    code = _normalise_currency(currency)
    return to_minor_units(STRIPE_MINIMUM_CHARGE[code], stripe_exponent(code), rounding=None)


def to_stripe_amount(amount: Decimal | int, currency: str, rounding: str | None = None) -> int:
    """Stripe's integer ``amount`` for a Decimal price, refusing anything below the minimum.

    Exact by default: an amount that is not a whole number of minor units raises
    :class:`AmountPrecisionError` (``AMOUNT_NOT_IN_RAIL_UNITS``) unless ``rounding`` asks for
    rounding on purpose. Raises :class:`AmountBelowRailMinimumError`
    (``AMOUNT_BELOW_RAIL_MINIMUM``) when the amount (rounded, when rounding is asked for) is
    below Stripe's minimum for the currency, :class:`UnsupportedCurrencyError` for a currency
    without a known minimum, and :class:`AmountError` for invalid amounts.
    """
    code = _normalise_currency(currency)
    exponent = stripe_exponent(code)
    if rounding is None and _check_decimal(amount) < STRIPE_MINIMUM_CHARGE[code]:
        # Below the minimum whatever its precision: that is the reason to give.
        raise AmountBelowRailMinimumError(
            amount=_check_decimal(amount),
            minimum=STRIPE_MINIMUM_CHARGE[code],
            currency=code,
            rail="stripe",
        )
    if exponent == 3:
        # Stripe requires the last of the three decimals to be 0.
        minor = to_minor_units(amount, 2, rounding) * 10
    else:
        minor = to_minor_units(amount, exponent, rounding)
    minimum = stripe_minimum_minor_units(code)
    if minor < minimum:
        raise AmountBelowRailMinimumError(
            amount=_check_decimal(amount),
            minimum=STRIPE_MINIMUM_CHARGE[code],
            currency=code,
            rail="stripe",
        )
    return minor


def from_stripe_amount(minor: int, currency: str) -> Decimal:
    """The Decimal amount for Stripe's integer ``amount`` in ``currency``."""
    return from_minor_units(minor, stripe_exponent(currency))
