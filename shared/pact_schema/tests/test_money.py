from __future__ import annotations

from decimal import Decimal

import pytest
from pact_schema.money import (
    WireMoneyError,
    decimal_from_wire,
    decimal_to_wire,
    parse_decimal_text,
)


@pytest.mark.parametrize(
    ("wire", "expected"),
    [(0.00008, "0.00008"), (0.1, "0.1"), (5, "5"), (1e-7, "1E-7"), (5.0, "5.0")],
)
def test_wire_numbers_become_the_decimal_of_their_shortest_text(
    wire: object, expected: str
) -> None:
    assert decimal_from_wire(wire) == Decimal(expected)


@pytest.mark.parametrize("bad", ["0.1", True, None, float("nan"), float("inf"), [1]])
def test_non_numbers_are_not_money(bad: object) -> None:
    with pytest.raises(WireMoneyError):
        decimal_from_wire(bad)


def test_decimals_go_to_the_wire_exactly_or_not_at_all() -> None:
    assert decimal_to_wire(Decimal("0.000096")) == 0.000096
    assert decimal_to_wire(Decimal("5.000")) == 5
    assert isinstance(decimal_to_wire(Decimal("5.000")), int)
    with pytest.raises(WireMoneyError):
        decimal_to_wire(Decimal("0.12345678901234567890123"))


def test_equal_decimals_give_one_wire_number_and_refusals_repeat() -> None:
    # decimal_to_wire is memoised by value: equal Decimals of any exponent share an answer.
    assert decimal_to_wire(Decimal("5")) == 5
    assert isinstance(decimal_to_wire(Decimal("5.000")), int)
    assert decimal_to_wire(Decimal("0.10")) == decimal_to_wire(Decimal("0.1")) == 0.1
    for _ in range(2):
        with pytest.raises(WireMoneyError):
            decimal_to_wire(Decimal("0.12345678901234567890123"))
        with pytest.raises(WireMoneyError):
            decimal_to_wire(Decimal("NaN"))


def test_decimal_text_parsing_refuses_nan_and_garbage() -> None:
    assert parse_decimal_text("1.25") == Decimal("1.25")
    for bad in ["NaN", "Infinity", "abc", ""]:
        with pytest.raises(WireMoneyError):
            parse_decimal_text(bad)
