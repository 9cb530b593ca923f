"""The journal's plain INSERTs are built from the tables' columns: a column added to a model
is written (or, when nothing sets it and it may not be NULL, refused), never silently dropped."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from pact_settlement.ledger.models import JournalLeg, JournalTransaction
from pact_settlement.ledger.repository import JournalRepository, insert_columns, insert_params
from sqlalchemy import Integer, String, Table, create_engine, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class _Toy(DeclarativeBase):
    pass


class Posting(_Toy):
    """A journal-like table that grew a column (``note``) after its INSERT was written."""

    __tablename__ = "postings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    bucket: Mapped[str] = mapped_column(String(16))
    note_text: Mapped[str] = mapped_column("note", String(32))  # attribute ≠ column name


class RecordingSession:
    """Stands in for the AsyncSession: keeps each statement's table and parameters."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.info: dict[str, Any] = {}  # AsyncSession.info (no write batch open)

    async def execute(self, statement: Any, params: Any = None) -> None:
        self.calls.append((statement.table.name, params))


def test_every_column_but_the_numbered_key_is_written_under_its_column_name() -> None:
    assert insert_columns(Posting) == (("bucket", "bucket"), ("note", "note_text"))
    params = insert_params(Posting(bucket="available", note_text="n"), insert_columns(Posting))
    assert params == {"bucket": "available", "note": "n"}


def test_a_new_column_is_stored_when_set_and_refused_when_not() -> None:
    engine = create_engine("sqlite://")
    _Toy.metadata.create_all(engine)
    table = Posting.__table__
    assert isinstance(table, Table)
    columns = insert_columns(Posting)
    with engine.begin() as connection:
        connection.execute(
            insert(table), [insert_params(Posting(bucket="a", note_text="kept"), columns)]
        )
        assert connection.execute(select(table.c.note)).scalars().all() == ["kept"]
    with pytest.raises(IntegrityError), engine.begin() as connection:
        connection.execute(insert(table), insert_params(Posting(bucket="a"), columns))


async def test_the_journal_insert_sends_every_column_of_both_tables() -> None:
    session = RecordingSession()
    transaction = JournalTransaction(
        id="jtx_1", kind="lock", idempotency_key="k", settlement_id=None, memo="m"
    )
    leg = JournalLeg(
        transaction_id="jtx_1", account_id="acct_1", bucket="locked", amount=Decimal("1")
    )
    await JournalRepository(session).insert(transaction, [leg, leg])  # type: ignore[arg-type]
    [(tx_table, tx_params), (legs_table, legs_params)] = session.calls
    tx_columns = {c.key for c in JournalTransaction.__table__.columns}
    leg_columns = {c.key for c in JournalLeg.__table__.columns} - {"id"}  # numbered by the DB
    assert (tx_table, set(tx_params)) == ("journal_transactions", tx_columns)
    assert legs_table == "journal_legs"
    assert [set(p) for p in legs_params] == [leg_columns, leg_columns]
    assert legs_params[0]["amount"] == Decimal("1")
