"""``RepositoryBase[M]``: all SQL lives in repositories bound to the caller's session."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, Self, TypeVar, cast

from sqlalchemy import Select, Table, insert, inspect, literal, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from pact_settlement.db.base import Base

__all__ = [
    "RepositoryBase",
    "batched_writes",
    "in_batch",
    "insert_columns",
    "insert_params",
    "insert_rows",
    "update_row",
]

_BATCH = "pact_write_batch"


@dataclass
class _WriteBatch:
    """Writes collected by :func:`batched_writes`: ``(table, rows)`` INSERTs and
    ``(table, id, values)`` UPDATEs, in order."""

    items: list[tuple[Table, list[dict[str, Any]] | None, Any, dict[str, Any] | None]] = field(
        default_factory=list
    )

    async def flush(self, session: AsyncSession) -> None:
        if not self.items:
            return
        if session.get_bind().dialect.name == "postgresql":
            # One statement: every write a data-modifying WITH query. Postgres runs each
            # exactly once; foreign keys between them are checked at the end of the
            # statement, deferred constraints at COMMIT.
            ctes = [
                (
                    insert(table).values(rows)
                    if rows is not None
                    else update(table).where(table.c.id == key).values(**(values or {}))
                ).cte(f"w{i}")
                for i, (table, rows, key, values) in enumerate(self.items)
            ]
            await session.execute(select(literal(1)).add_cte(*ctes))
            return
        for table, rows, key, values in self.items:
            if rows is not None:
                await session.execute(insert(table), rows)
            else:
                await session.execute(
                    update(table).where(table.c.id == key).values(**(values or {}))
                )


@asynccontextmanager
async def batched_writes(session: AsyncSession) -> AsyncIterator[None]:
    """Inside the block, :func:`insert_rows` and :func:`update_row` are collected instead of
    sent; at its end (unless it raised) they go to the database together, in order: on
    Postgres as ONE statement, one round trip, elsewhere one by one. Only for writes that
    nothing read inside the block depends on (reads are still sent at once)."""
    batch = _WriteBatch()
    session.info[_BATCH] = batch
    try:
        yield
    finally:
        session.info.pop(_BATCH, None)
    await batch.flush(session)


def in_batch(session: AsyncSession) -> bool:
    """Whether writes are being collected (:func:`batched_writes`)."""
    return _BATCH in session.info


async def insert_rows(session: AsyncSession, table: Table, rows: list[dict[str, Any]]) -> None:
    """INSERT ``rows`` (one statement; collected inside :func:`batched_writes`)."""
    batch = session.info.get(_BATCH)
    if batch is not None:
        batch.items.append((table, rows, None, None))
        return
    await session.execute(insert(table), rows if len(rows) != 1 else rows[0])


async def update_row(session: AsyncSession, table: Table, key: Any, values: dict[str, Any]) -> bool:
    """``UPDATE table SET values WHERE id = key`` (collected inside :func:`batched_writes`,
    where it is reported as done)."""
    batch = session.info.get(_BATCH)
    if batch is not None:
        batch.items.append((table, None, key, values))
        return True
    result = await session.execute(update(table).where(table.c.id == key).values(**values))
    return bool(getattr(result, "rowcount", 0) == 1)


def insert_columns(model: type[object]) -> tuple[tuple[str, str], ...]:
    """``(column, attribute)`` for every column of ``model``'s table but the one the database
    numbers itself (an autoincrement key): what a plain INSERT of one of its objects writes.
    Read from the table, so a column added to the model is written, never silently dropped."""
    mapper = inspect(model)
    table = cast(Table, mapper.local_table)
    return tuple(
        (column.key, mapper.get_property_by_column(column).key)
        for column in table.columns
        if column is not table.autoincrement_column
    )


def insert_params(obj: object, columns: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    """The INSERT parameters of ``obj``: one per column of :func:`insert_columns`."""
    return {column: getattr(obj, attribute) for column, attribute in columns}


M = TypeVar("M", bound=Base)


class RepositoryBase(Generic[M]):
    """Queries for one model. Repositories ``flush()``; only the session owner commits."""

    model: type[M]

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    @classmethod
    def from_session(cls, session: AsyncSession) -> Self:
        return cls(session)

    @property
    def dialect(self) -> str:
        return self.session.get_bind().dialect.name

    def base_select(self) -> Select[Any]:
        return select(self.model)

    async def get(self, id_: Any) -> M | None:
        return await self.session.get(self.model, id_)

    async def get_one_or_none(
        self, statement: Select[Any], params: Mapping[str, Any] | None = None
    ) -> M | None:
        result = await self.session.execute(statement, params)
        return cast("M | None", result.scalar_one_or_none())

    async def get_all(
        self, statement: Select[Any], params: Mapping[str, Any] | None = None
    ) -> list[M]:
        result = await self.session.execute(statement, params)
        return cast("list[M]", list(result.scalars().all()))

    async def add(self, obj: M, *, flush: bool = True) -> M:
        self.session.add(obj)
        if flush:
            await self.session.flush()
        return obj
