"""Money is exact: Decimal in Python, NUMERIC(38, 18) on Postgres, fixed-scale text on SQLite."""

from __future__ import annotations

from decimal import Decimal

import pytest
from pact_settlement.kit.money import MoneyError, add, decimal_text, to_money
from pact_settlement.ledger.models import LedgerAccount
from pact_settlement.ledger.service import EXTERNAL_ACCOUNT, LedgerService
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

AMOUNTS = [
    Decimal("0.000000000000000001"),
    Decimal("0.00008"),
    Decimal("1.1"),
    Decimal("99999999999999999999.999999999999999999"),
]


@pytest.mark.parametrize("amount", AMOUNTS, ids=str)
async def test_money_round_trips_exactly(
    sessionmaker: async_sessionmaker[AsyncSession], amount: Decimal
) -> None:
    async with sessionmaker() as session, session.begin():
        await LedgerService(session).deposit("agent-x", amount, asset="USD", idempotency_key="d1")
    async with sessionmaker() as session:
        account = (
            await session.execute(select(LedgerAccount).where(LedgerAccount.owner == "agent-x"))
        ).scalar_one()
        external = (
            await session.execute(
                select(LedgerAccount).where(LedgerAccount.owner == EXTERNAL_ACCOUNT)
            )
        ).scalar_one()
    assert account.available == amount
    assert isinstance(account.available, Decimal)
    assert external.available == amount.copy_negate()
    assert add(account.available, external.available) == 0


def test_to_money_refuses_floats_and_excess_precision() -> None:
    with pytest.raises(MoneyError):
        to_money(0.1)  # type: ignore[arg-type]
    with pytest.raises(MoneyError):
        to_money(Decimal("1e-19"))
    with pytest.raises(MoneyError):
        to_money(Decimal("1e20"))
    with pytest.raises(MoneyError):
        to_money(Decimal("NaN"))
    assert not to_money(Decimal("-0")).is_signed()


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Decimal("0.000080000000000000"), "0.00008"),
        (Decimal("100.000000000000000000"), "100"),
        (Decimal("0E-18"), "0"),
        (Decimal("1E-18"), "0.000000000000000001"),
        (Decimal("-2.50"), "-2.5"),
    ],
)
def test_decimal_text_is_plain_and_shortest(value: Decimal, text: str) -> None:
    assert decimal_text(value) == text
