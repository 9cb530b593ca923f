"""The mock ledger: double-entry movements, and invariants the database enforces itself."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from pact_settlement.kit.ids import new_id
from pact_settlement.ledger.service import (
    EXTERNAL_ACCOUNT,
    Bucket,
    LedgerError,
    LedgerService,
    Posting,
)
from pact_settlement.rails.base import (
    Rail,
    RailInsufficientFundsError,
    RailOpStatus,
    RailSettlement,
)
from pact_settlement.rails.ledger import LedgerRail
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

D = Decimal
BUYER, SELLER = "buyer-key", "seller-key"
USD, EUR = "USD", "EUR"

Maker = async_sessionmaker[AsyncSession]


async def _seed_settlement(session: AsyncSession, sid: str) -> None:
    """A bare settlements row so journal rows can reference it (FK)."""
    await session.execute(
        text(
            "INSERT INTO settlements (id, intent_id, state, rail, asset, amount, bond, "
            "bond_locked, buyer, seller, settlement_mode, proof_type, challenge_window_ms, "
            "delivery_deadline_ms, delivery_deadline_at, quote_expires_at, accept_hash, "
            "request_fingerprint, created_at, updated_at) VALUES (:id, :id, 'locked', 'ledger', "
            "'USD', "
            ":one, :zero, :zero, 'b', 's', 'hash_reveal', 'hash_reveal', 0, 0, "
            "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 'h', 'f', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
        ),
        {
            "id": sid,
            "one": "1.000000000000000000" if session.get_bind().dialect.name == "sqlite" else D(1),
            "zero": "0.000000000000000000" if session.get_bind().dialect.name == "sqlite" else D(0),
        },
    )


async def _balances(maker: Maker, owner: str) -> tuple[Decimal, Decimal]:
    async with maker() as session:
        account = await LedgerService(session).account(owner, USD)
    return (account.available, account.locked) if account else (D(0), D(0))


def _rs(sid: str, amount: str = "0.3", bond: str = "0.1") -> RailSettlement:
    return RailSettlement(
        sid,
        f"intent-{sid}",
        BUYER,
        SELLER,
        D(amount),
        D(bond),
        USD,
        delivery_deadline_at=datetime(2026, 1, 1, tzinfo=UTC),
        challenge_window=timedelta(minutes=5),
    )


async def _setup(maker: Maker, sid: str) -> None:
    async with maker() as session, session.begin():
        ledger = LedgerService(session)
        await ledger.deposit(BUYER, D(1), asset=USD, idempotency_key="dep-b")
        await ledger.deposit(SELLER, D(1), asset=USD, idempotency_key="dep-s")
        await _seed_settlement(session, sid)
        await LedgerRail(session).lock(_rs(sid), idempotency_key=f"settlement-{sid}-lock")


async def test_ledger_rail_satisfies_the_rail_protocol(sessionmaker: Maker) -> None:
    async with sessionmaker() as session:
        rail = LedgerRail(session)
        assert isinstance(rail, Rail)
        assert rail.asset == "USD"  # LEDGER_ASSET's default


async def test_lock_moves_available_to_locked_for_buyer_and_bond(sessionmaker: Maker) -> None:
    await _setup(sessionmaker, "st_1")
    assert await _balances(sessionmaker, BUYER) == (D("0.7"), D("0.3"))
    assert await _balances(sessionmaker, SELLER) == (D("0.9"), D("0.1"))


@pytest.mark.parametrize(
    ("step", "buyer", "seller"),
    [
        ("release", (D("0.7"), D(0)), (D("1.3"), D(0))),
        ("refund", (D(1), D(0)), (D(1), D(0))),
        ("slash", (D("1.1"), D(0)), (D("0.9"), D(0))),
    ],
)
async def test_terminal_movements_unwind_the_lock(
    sessionmaker: Maker, step: str, buyer: tuple[Decimal, Decimal], seller: tuple[Decimal, Decimal]
) -> None:
    await _setup(sessionmaker, "st_2")
    key = f"settlement-st_2-{step}"
    async with sessionmaker() as session, session.begin():
        rail = LedgerRail(session)
        result = await getattr(rail, step)(_rs("st_2"), idempotency_key=key)
        assert result.status is RailOpStatus.SUCCEEDED
        again = await getattr(rail, step)(_rs("st_2"), idempotency_key=key)
        assert again.reference == result.reference  # exactly once per key
        assert (await rail.status(_rs("st_2"), idempotency_key=key)).reference == result.reference
    assert await _balances(sessionmaker, BUYER) == buyer
    assert await _balances(sessionmaker, SELLER) == seller
    async with sessionmaker() as session:
        assert await LedgerService(session).integrity_report() == []


async def test_status_of_a_call_never_made_is_not_found(sessionmaker: Maker) -> None:
    async with sessionmaker() as session:
        result = await LedgerRail(session).status(
            _rs("st_9"), idempotency_key="settlement-st_9-lock"
        )
    assert result.status is RailOpStatus.NOT_FOUND


async def test_insufficient_funds_raise_and_write_nothing(sessionmaker: Maker) -> None:
    async with sessionmaker() as session, session.begin():
        await LedgerService(session).deposit(BUYER, D("0.2"), asset=USD, idempotency_key="dep")
        await _seed_settlement(session, "st_3")
    async with sessionmaker() as session:
        with pytest.raises(RailInsufficientFundsError) as info:
            async with session.begin():
                await LedgerRail(session).lock(_rs("st_3"), idempotency_key="settlement-st_3-lock")
    assert info.value.code == "INSUFFICIENT_ESCROW"
    assert await _balances(sessionmaker, BUYER) == (D("0.2"), D(0))


async def test_code_refuses_unbalanced_or_zero_postings(sessionmaker: Maker) -> None:
    async with sessionmaker() as session, session.begin():
        ledger = LedgerService(session)
        with pytest.raises(LedgerError, match="sum to zero"):
            await ledger.post(
                kind="deposit",
                idempotency_key="x1",
                postings=[
                    Posting(EXTERNAL_ACCOUNT, Bucket.AVAILABLE, D(-1), USD),
                    Posting(BUYER, Bucket.AVAILABLE, D("1.000000000000000001"), USD),
                ],
            )
        with pytest.raises(LedgerError, match="non-zero"):
            await ledger.post(
                kind="deposit",
                idempotency_key="x2",
                postings=[
                    Posting(EXTERNAL_ACCOUNT, Bucket.AVAILABLE, D(0), USD),
                    Posting(BUYER, Bucket.AVAILABLE, D(0), USD),
                ],
            )


async def _raw_transaction(
    session: AsyncSession,
    legs: list[tuple[str, str, Decimal]],
    *,
    assets: list[str] | None = None,
    leg_assets: list[str] | None = None,
) -> None:
    """Write journal rows straight to the database, bypassing the service's checks. Leg ``i``
    is on its owner's ``assets[i]`` account (default USD) and names ``leg_assets[i]`` (default:
    its account's asset)."""
    ledger = LedgerService(session)
    assets = assets or [USD] * len(legs)
    leg_assets = leg_assets or assets
    for (owner, _, _), asset in zip(legs, assets, strict=True):
        await ledger.accounts.ensure(owner, asset, kind="agent")
    tx_id = new_id("jtx")
    await session.execute(
        text(
            "INSERT INTO journal_transactions (id, kind, idempotency_key, created_at) "
            "VALUES (:id, 'deposit', :id, CURRENT_TIMESTAMP)"
        ),
        {"id": tx_id},
    )
    sqlite = session.get_bind().dialect.name == "sqlite"
    for (owner, bucket, amount), asset, leg_asset in zip(legs, assets, leg_assets, strict=True):
        account = await ledger.accounts.get_by_owner(owner, asset)
        assert account is not None
        await session.execute(
            text(
                "INSERT INTO journal_legs (transaction_id, account_id, bucket, amount, asset) "
                "VALUES (:tx, :acct, :bucket, :amount, :asset)"
            ),
            {
                "tx": tx_id,
                "acct": account.id,
                "bucket": bucket,
                "amount": f"{amount:.18f}" if sqlite else amount,
                "asset": leg_asset,
            },
        )


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_postgres_refuses_to_commit_unbalanced_legs(sessionmaker: Maker) -> None:
    async with sessionmaker() as session:
        await session.begin()
        await _raw_transaction(session, [("a", "available", D(1)), ("b", "available", D(-2))])
        with pytest.raises(IntegrityError, match="unbalanced"):
            await session.commit()
    async with sessionmaker() as session:
        await session.begin()
        await _raw_transaction(session, [("a", "available", D(1))])  # a single leg
        with pytest.raises(IntegrityError, match="unbalanced"):
            await session.commit()
    async with sessionmaker() as session:
        await session.begin()
        await _raw_transaction(session, [("a", "available", D(1)), ("b", "available", D(-1))])
        await session.commit()  # balanced: accepted


async def test_code_refuses_legs_that_balance_only_across_assets(sessionmaker: Maker) -> None:
    """One USD out, one EUR in: the total is zero, but money would change currency."""
    async with sessionmaker() as session, session.begin():
        with pytest.raises(LedgerError, match="per asset"):
            await LedgerService(session).post(
                kind="deposit",
                idempotency_key="fx",
                postings=[
                    Posting(EXTERNAL_ACCOUNT, Bucket.AVAILABLE, D(-1), USD),
                    Posting(BUYER, Bucket.AVAILABLE, D(1), EUR),
                ],
            )
        with pytest.raises(LedgerError, match="asset must be"):
            await LedgerService(session).post(
                kind="deposit",
                idempotency_key="lower",
                postings=[
                    Posting(EXTERNAL_ACCOUNT, Bucket.AVAILABLE, D(-1), "usd"),
                    Posting(BUYER, Bucket.AVAILABLE, D(1), "usd"),
                ],
            )


async def test_each_asset_is_its_own_account(sessionmaker: Maker) -> None:
    async with sessionmaker() as session, session.begin():
        ledger = LedgerService(session)
        await ledger.deposit(BUYER, D(1), asset=USD, idempotency_key="d-usd")
        await ledger.deposit(BUYER, D("2.5"), asset=EUR, idempotency_key="d-eur")
    async with sessionmaker() as session:
        ledger = LedgerService(session)
        accounts = {a.asset: a.available for a in await ledger.accounts_of(BUYER)}
        assert accounts == {EUR: D("2.5"), USD: D(1)}
        external = {a.asset: a.available for a in await ledger.accounts_of(EXTERNAL_ACCOUNT)}
        assert external == {EUR: D("-2.5"), USD: D(-1)}
        assert await ledger.integrity_report() == []


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_postgres_refuses_legs_balanced_only_across_assets(sessionmaker: Maker) -> None:
    async with sessionmaker() as session:
        await session.begin()
        await _raw_transaction(
            session,
            [("a", "available", D(1)), ("b", "available", D(-1))],
            assets=[USD, EUR],
        )
        with pytest.raises(IntegrityError, match="unbalanced"):
            await session.commit()


async def test_database_refuses_a_leg_in_another_asset_than_its_account(
    sessionmaker: Maker,
) -> None:
    """Both databases: a leg naming EUR cannot land on a USD account, whatever the code does."""
    async with sessionmaker() as session:
        await session.begin()
        with pytest.raises(DBAPIError, match="asset"):
            await _raw_transaction(
                session,
                [("a", "available", D(1)), ("b", "available", D(-1))],
                leg_assets=[EUR, EUR],
            )
        await session.rollback()


async def test_database_refuses_zero_legs(sessionmaker: Maker) -> None:
    async with sessionmaker() as session:
        await session.begin()
        with pytest.raises(IntegrityError):
            await _raw_transaction(session, [("a", "available", D(0)), ("b", "available", D(0))])
        await session.rollback()


async def test_database_refuses_negative_agent_balances(sessionmaker: Maker) -> None:
    async with sessionmaker() as session, session.begin():
        await LedgerService(session).deposit(BUYER, D(1), asset=USD, idempotency_key="dep")
    async with sessionmaker() as session:
        await session.begin()
        value = "-0.000000000000000001"
        sqlite = session.get_bind().dialect.name == "sqlite"
        with pytest.raises(IntegrityError):
            await session.execute(
                text("UPDATE ledger_accounts SET available = :v WHERE owner = :o"),
                {"v": value if sqlite else D(value), "o": BUYER},
            )
        await session.rollback()


@pytest.mark.parametrize("table", ["journal_legs", "journal_transactions"])
async def test_journal_is_append_only(sessionmaker: Maker, table: str) -> None:
    async with sessionmaker() as session, session.begin():
        await LedgerService(session).deposit(BUYER, D(1), asset=USD, idempotency_key="dep")
    async with sessionmaker() as session:
        await session.begin()
        with pytest.raises(DBAPIError, match="append-only"):
            await session.execute(text(f"DELETE FROM {table}"))  # noqa: S608
        await session.rollback()
