"""Decimal -> integer rail units: exact, explicitly rounded, never from floats."""

from __future__ import annotations

from decimal import ROUND_DOWN, ROUND_HALF_EVEN, ROUND_HALF_UP, ROUND_UP, Decimal

import pytest
from pact_schema.codes import FailureCode
from pact_settlement.rails.minor_units import (
    MAX_UINT256,
    STRIPE_MINIMUM_CHARGE,
    AmountBelowRailMinimumError,
    AmountError,
    AmountPrecisionError,
    UnsupportedCurrencyError,
    from_minor_units,
    from_stripe_amount,
    from_wei,
    stripe_exponent,
    stripe_minimum_minor_units,
    to_minor_units,
    to_stripe_amount,
    to_wei,
)


@pytest.mark.parametrize(
    ("amount", "exponent", "rounding", "expected"),
    [
        (Decimal("12.34"), 2, ROUND_HALF_UP, 1234),
        (Decimal("0.005"), 2, ROUND_HALF_UP, 1),
        (Decimal("0.005"), 2, ROUND_HALF_EVEN, 0),
        (Decimal("0.015"), 2, ROUND_HALF_EVEN, 2),
        (Decimal("0.0049999"), 2, ROUND_HALF_UP, 0),
        (Decimal("0.001"), 2, ROUND_UP, 1),
        (Decimal("0.999"), 2, ROUND_DOWN, 99),
        (Decimal("7"), 0, ROUND_HALF_UP, 7),
        (Decimal("1E+3"), 2, ROUND_HALF_UP, 100000),
        (Decimal("0"), 2, ROUND_HALF_UP, 0),
        (5, 2, ROUND_HALF_UP, 500),
    ],
)
def test_to_minor_units_rounds_as_asked(
    amount: Decimal | int, exponent: int, rounding: str, expected: int
) -> None:
    assert to_minor_units(amount, exponent, rounding) == expected


@pytest.mark.parametrize(
    "bad", [0.5, 1.0, True, "1.00", Decimal("NaN"), Decimal("Infinity"), Decimal("-0.01"), -1]
)
def test_to_minor_units_refuses_floats_non_finite_and_negative(bad: object) -> None:
    with pytest.raises(AmountError):
        to_minor_units(bad, 2)  # type: ignore[arg-type]


def test_exact_conversion_refuses_a_remainder_instead_of_rounding() -> None:
    assert to_minor_units(Decimal("1.20"), 2, rounding=None) == 120
    with pytest.raises(AmountPrecisionError):
        to_minor_units(Decimal("1.205"), 2, rounding=None)


def test_unknown_rounding_mode_is_an_amount_error() -> None:
    with pytest.raises(AmountError, match="rounding"):
        to_minor_units(Decimal("1"), 2, "ROUND_SIDEWAYS")


def test_from_minor_units_is_exact_and_inverse() -> None:
    assert from_minor_units(1234, 2) == Decimal("12.34")
    assert from_minor_units(1, 18) == Decimal("0.000000000000000001")
    for value in (Decimal("0.01"), Decimal("123456.78"), Decimal("99999999.99")):
        assert from_minor_units(to_minor_units(value, 2, None), 2) == value
    with pytest.raises(AmountError):
        from_minor_units(1.5, 2)  # type: ignore[arg-type]


def test_wei_is_exact_down_to_one_wei() -> None:
    assert to_wei(Decimal("0.000000000000000001")) == 1
    assert to_wei(Decimal("1")) == 10**18
    # 30 significant digits: more than the default decimal context precision (28).
    big = Decimal("123456789012.123456789012345678")
    assert to_wei(big) == 123456789012123456789012345678
    assert from_wei(to_wei(big)) == big


def test_sub_wei_precision_is_refused_unless_rounding_is_explicit() -> None:
    with pytest.raises(AmountPrecisionError):
        to_wei(Decimal("0.0000000000000000015"))
    assert to_wei(Decimal("0.0000000000000000015"), rounding=ROUND_HALF_UP) == 2
    assert to_wei(Decimal("0.0000000000000000015"), rounding=ROUND_DOWN) == 1


def test_wei_above_uint256_is_refused() -> None:
    assert to_wei(from_wei(MAX_UINT256)) == MAX_UINT256
    with pytest.raises(AmountError, match="uint256"):
        to_wei(from_wei(MAX_UINT256 + 1))


def test_stripe_exponents_follow_stripe_currency_lists() -> None:
    assert stripe_exponent("usd") == 2
    assert stripe_exponent("JPY") == 0
    assert stripe_exponent("krw") == 0
    assert stripe_exponent("kwd") == 3


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        (Decimal("0.50"), "usd", 50),
        (Decimal("0.495"), "usd", 50),  # rounds half up to the minimum
        (Decimal("12.345"), "EUR", 1235),
        (Decimal("0.30"), "gbp", 30),
        (Decimal("50"), "jpy", 50),
        (Decimal("1234.5"), "jpy", 1235),
        (Decimal("15.00"), "czk", 1500),
    ],
)
def test_to_stripe_amount(amount: Decimal, currency: str, expected: int) -> None:
    assert to_stripe_amount(amount, currency, rounding=ROUND_HALF_UP) == expected
    assert from_stripe_amount(expected, currency) == Decimal(expected).scaleb(
        -stripe_exponent(currency)
    )


@pytest.mark.parametrize(
    ("amount", "currency"),
    [
        (Decimal("0.49"), "usd"),
        (Decimal("0.4949"), "usd"),
        (Decimal("0.000001"), "usd"),
        (Decimal("0.29"), "gbp"),
        (Decimal("49"), "jpy"),
        (Decimal("49.4"), "jpy"),
        (Decimal("0"), "eur"),
    ],
)
def test_below_stripe_minimum_is_refused_with_failure_code(amount: Decimal, currency: str) -> None:
    for rounding in (None, ROUND_HALF_UP):  # below the minimum whatever the rounding
        with pytest.raises(AmountBelowRailMinimumError) as info:
            to_stripe_amount(amount, currency, rounding=rounding)
    err = info.value
    assert err.failure_code is FailureCode.AMOUNT_BELOW_RAIL_MINIMUM
    assert err.currency == currency
    assert err.minimum == STRIPE_MINIMUM_CHARGE[currency]
    assert err.amount == amount
    assert "minimum" in str(err)


@pytest.mark.parametrize(
    ("amount", "currency"),
    [(Decimal("0.505"), "usd"), (Decimal("12.345"), "eur"), (Decimal("50.5"), "jpy")],
)  # fmt: skip
def test_by_default_a_fraction_of_a_minor_unit_is_refused_not_rounded(
    amount: Decimal, currency: str
) -> None:
    with pytest.raises(AmountPrecisionError) as info:
        to_stripe_amount(amount, currency)
    assert info.value.failure_code is FailureCode.AMOUNT_NOT_IN_RAIL_UNITS


def test_minimum_table_has_the_documented_values() -> None:
    assert stripe_minimum_minor_units("usd") == 50
    assert stripe_minimum_minor_units("eur") == 50
    assert stripe_minimum_minor_units("gbp") == 30
    assert stripe_minimum_minor_units("jpy") == 50


@pytest.mark.parametrize("currency", ["xyz", "kwd", "us", "", "usd1"])
def test_currency_without_known_minimum_is_refused(currency: str) -> None:
    with pytest.raises(UnsupportedCurrencyError):
        to_stripe_amount(Decimal("100"), currency)
