"""Ledger queries: accounts (row-locked for balance changes), journal transactions, legs."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import cast

from sqlalchemy import Table, bindparam, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm.attributes import set_committed_value

from pact_settlement.kit.ids import new_id
from pact_settlement.kit.repository import (
    RepositoryBase,
    in_batch,
    insert_columns,
    insert_params,
    insert_rows,
    update_row,
)
from pact_settlement.kit.time import session_now
from pact_settlement.ledger.models import JournalLeg, JournalTransaction, LedgerAccount

__all__ = [
    "AccountKey",
    "JournalRepository",
    "LedgerAccountRepository",
    "insert_columns",
    "insert_params",
]

_ZERO = Decimal(0)

#: An account is named by (owner, asset).
AccountKey = tuple[str, str]
_ACCOUNTS = cast(Table, LedgerAccount.__table__)
# A Core UPDATE of the table (not the mapped class): with several parameter sets it is one
# executemany, where the ORM would turn it into its per-row bulk UPDATE by primary key.
_SET_BALANCES = (
    update(_ACCOUNTS)
    .where(_ACCOUNTS.c.id == bindparam("b_account_id"))
    .values(
        available=bindparam("b_available"),
        locked=bindparam("b_locked"),
        updated_at=bindparam("b_now"),
    )
)
_JOURNAL_TRANSACTIONS = cast(Table, JournalTransaction.__table__)
_JOURNAL_LEGS = cast(Table, JournalLeg.__table__)


_TRANSACTION_COLUMNS = insert_columns(JournalTransaction)
_LEG_COLUMNS = insert_columns(JournalLeg)
_JOURNAL_BY_KEY = select(JournalTransaction).where(
    JournalTransaction.idempotency_key == bindparam("key")
)


class LedgerAccountRepository(RepositoryBase[LedgerAccount]):
    model = LedgerAccount

    async def get_by_owner(self, owner: str, asset: str) -> LedgerAccount | None:
        return await self.get_one_or_none(
            select(LedgerAccount).where(LedgerAccount.owner == owner, LedgerAccount.asset == asset)
        )

    async def of_owner(self, owner: str) -> list[LedgerAccount]:
        """Every account of ``owner``, one per asset, by asset."""
        return await self.get_all(
            select(LedgerAccount).where(LedgerAccount.owner == owner).order_by(LedgerAccount.asset)
        )

    async def ensure(
        self, owner: str, asset: str, *, kind: str, allow_negative: bool = False
    ) -> None:
        """Create the account if it does not exist (race-safe: INSERT … ON CONFLICT DO NOTHING)."""
        now = session_now(self.session)
        values = {
            "id": new_id("acct"),
            "owner": owner,
            "asset": asset,
            "kind": kind,
            "allow_negative": allow_negative,
            "available": _ZERO,
            "locked": _ZERO,
            "created_at": now,
            "updated_at": now,
        }
        insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        stmt = (
            insert(LedgerAccount)
            .values(**values)
            .on_conflict_do_nothing(index_elements=["owner", "asset"])
        )
        await self.session.execute(stmt)

    async def lock_by_keys(self, keys: Iterable[AccountKey]) -> dict[AccountKey, LedgerAccount]:
        """``SELECT … FOR UPDATE`` in a fixed order (by owner, asset) so two movements never
        deadlock."""
        wanted = sorted(set(keys))
        rows = await self.get_all(
            select(LedgerAccount)
            .where(tuple_(LedgerAccount.owner, LedgerAccount.asset).in_(wanted))
            .order_by(LedgerAccount.owner, LedgerAccount.asset)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return {(account.owner, account.asset): account for account in rows}

    async def set_balances(
        self, account: LedgerAccount, available: Decimal, locked: Decimal
    ) -> None:
        await self.set_many_balances([(account, available, locked)])

    async def set_many_balances(
        self, balances: list[tuple[LedgerAccount, Decimal, Decimal]]
    ) -> None:
        """One UPDATE statement for all the accounts (one round trip: the driver sends every
        row's parameters before it waits)."""
        if not balances:
            return
        now = session_now(self.session)
        if in_batch(self.session):
            for account, available, locked in balances:
                await update_row(
                    self.session,
                    _ACCOUNTS,
                    account.id,
                    {"available": available, "locked": locked, "updated_at": now},
                )
        else:
            await self.session.execute(
                _SET_BALANCES,
                [
                    {
                        "b_account_id": account.id,
                        "b_available": available,
                        "b_locked": locked,
                        "b_now": now,
                    }
                    for account, available, locked in balances
                ],
            )
        # The UPDATE above wrote them: record them as the loaded values, so the next flush
        # does not write the same row a second time.
        for account, available, locked in balances:
            set_committed_value(account, "available", available)
            set_committed_value(account, "locked", locked)
            set_committed_value(account, "updated_at", now)

    async def all_accounts(self) -> list[LedgerAccount]:
        return await self.get_all(
            select(LedgerAccount).order_by(LedgerAccount.owner, LedgerAccount.asset)
        )


class JournalRepository(RepositoryBase[JournalTransaction]):
    model = JournalTransaction

    async def get_by_key(self, idempotency_key: str) -> JournalTransaction | None:
        return await self.get_one_or_none(_JOURNAL_BY_KEY, {"key": idempotency_key})

    async def legs_of(self, transaction_id: str) -> list[JournalLeg]:
        result = await self.session.execute(
            select(JournalLeg)
            .where(JournalLeg.transaction_id == transaction_id)
            .order_by(JournalLeg.id)
        )
        return list(result.scalars().all())

    async def all_legs(self) -> list[JournalLeg]:
        result = await self.session.execute(select(JournalLeg).order_by(JournalLeg.id))
        return list(result.scalars().all())

    async def for_settlement(self, settlement_id: str) -> list[JournalTransaction]:
        return await self.get_all(
            select(JournalTransaction)
            .where(JournalTransaction.settlement_id == settlement_id)
            .order_by(JournalTransaction.created_at, JournalTransaction.id)
        )

    async def insert(self, transaction: JournalTransaction, legs: list[JournalLeg]) -> None:
        """Two plain INSERTs (the legs in one statement). The ORM's unit of work is skipped on
        purpose: a posting is written once and never changed, and the flush machinery cost
        more than the statements; the objects stay outside the session, for reading only."""
        await insert_rows(
            self.session,
            _JOURNAL_TRANSACTIONS,
            [insert_params(transaction, _TRANSACTION_COLUMNS)],
        )
        await insert_rows(
            self.session, _JOURNAL_LEGS, [insert_params(leg, _LEG_COLUMNS) for leg in legs]
        )
