"""Price book, multipliers, rounding and the concession strategy, in Decimal."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from pact_provider.config import ConfigError, ProviderSettings
from pact_provider.negotiation.pricing import (
    DEFAULT_BOOK,
    bond_for,
    build_price_book,
    concede,
    quantize_price,
)
from pact_schema import decimal_to_wire

D = Decimal


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0.0000000000005", "0.000000000001"),  # half-up at 12 places
        ("0.00000000000049", "0"),
        ("0.000096000000", "0.000096"),
        ("123456789.123456789", "123456789.123457"),  # at most 15 significant digits
    ],
)
def test_prices_are_rounded_half_up_to_12_places_and_15_digits(value: str, expected: str) -> None:
    assert quantize_price(D(value)) == D(expected)


def test_every_rounded_price_travels_as_a_json_number_exactly() -> None:
    for value in ("0.000123456789123", "987654.321098765", "0.00018216"):
        rounded = quantize_price(D(value))
        assert D(repr(decimal_to_wire(rounded))) == rounded


def test_bond_is_twice_the_price_with_a_minimum() -> None:
    assert bond_for(D("0.00008")) == D("0.00016")
    assert bond_for(D("0.000001")) == D("0.00001")


@pytest.mark.parametrize(
    ("previous", "bid", "expected"),
    [
        ("0.0001", "0.00009", "0.000095"),  # halfway
        ("0.0001", "0.00008", "0.00009"),  # halfway to the floor
        ("0.0001", "0.00001", "0.00009"),  # a lowball counts as the floor
        ("0.0001", "0.0002", "0.0001"),  # never above the previous ask
        ("0.00008", "0.00008", "0.00008"),  # at the floor: stays there
    ],
)
def test_concession_meets_halfway_never_below_floor(previous: str, bid: str, expected: str) -> None:
    price = concede(
        previous_ask=D(previous), bid=D(bid), list_price=D("0.0001"), floor_ratio=D("0.8")
    )
    assert price == D(expected)


def test_floor_is_rounded_up_so_no_quote_is_below_it() -> None:
    price = concede(
        previous_ask=D("0.000000000003"),
        bid=D("0.000000000001"),
        list_price=D("0.000000000003"),
        floor_ratio=D("0.5"),
    )
    assert price >= D("0.0000000000015")


def test_highest_price_applies_every_multiplier_to_the_dearest_intent() -> None:
    assert DEFAULT_BOOK.highest_price == D("0.00012") * D("1.2") * D("1.1") * D("1.15")


def test_price_book_file_in_toml_replaces_the_prices(tmp_path: Path) -> None:
    path = tmp_path / "prices.toml"
    path.write_text('default_price = 0.0003\n[prices]\n"weather.data" = 0.00007\n')
    book = build_price_book(ProviderSettings(price_book_file=path, restrict_intents=True))
    assert dict(book.prices) == {"weather.data": D("0.00007")}
    assert book.default_price == D("0.0003")
    assert book.list_price("data.query") is None


def test_price_book_file_in_json(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text('{"prices": {"a.b": "0.5", "c.d": 0.25}}')
    book = build_price_book(ProviderSettings(price_book_file=path))
    assert dict(book.prices) == {"a.b": D("0.5"), "c.d": D("0.25")}
    assert book.list_price("zzz") == D("0.0001")


@pytest.mark.parametrize(
    ("name", "text", "match"),
    [
        ("p.toml", "prices = 1", "prices"),
        ("p.toml", "[prices\n", "not valid"),
        ("p.json", '{"prices": {"a": -1}}', "> 0"),
        ("p.json", '{"prices": {"a": "0.0000000000001"}}', "12 decimal places"),
        ("p.json", '{"prices": {"a": true}}', "boolean"),
        ("p.yaml", "prices: {}", ".toml or .json"),
        ("missing.toml", None, "cannot read"),
    ],
)
def test_bad_price_books_are_config_errors(
    tmp_path: Path, name: str, text: str | None, match: str
) -> None:
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        build_price_book(ProviderSettings(price_book_file=path))
