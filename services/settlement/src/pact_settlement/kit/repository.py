"""``RepositoryBase[M]``: all SQL lives in repositories bound to the caller's session."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, Self, TypeVar, cast

from sqlalchemy import Select, Table, bindparam, insert, inspect, select, text, update
from sqlalchemy.dialects import postgresql
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
            statement, params = _one_statement(self.items)
            await session.execute(statement, params)
            return
        for table, rows, key, values in self.items:
            if rows is not None:
                await session.execute(insert(table), rows)
            else:
                await session.execute(
                    update(table).where(table.c.id == key).values(**(values or {}))
                )


_Shape = tuple[tuple[str, int, tuple[str, ...]], ...]
#: The WITH statement of each batch shape (tables, row counts, columns), built once with
#: named, typed parameters (a handful of shapes: only the create uses batches). Compiling a
#: new statement per request cost about 3 ms of Python, more than the round trips it saves.
_STATEMENTS: dict[_Shape, Any] = {}


def _one_statement(
    items: list[tuple[Table, list[dict[str, Any]] | None, Any, dict[str, Any] | None]],
) -> tuple[Any, dict[str, Any]]:
    shape: list[tuple[str, int, tuple[str, ...]]] = []
    params: dict[str, Any] = {}
    for i, (table, rows, key, values) in enumerate(items):
        if rows is not None:
            columns = tuple(rows[0])
            shape.append((table.name, len(rows), columns))
            for r, row in enumerate(rows):
                params.update({f"w{i}_{r}_{c}": row[c] for c in columns})
        else:
            columns = tuple(values or {})
            shape.append((table.name, -1, columns))
            params[f"w{i}_key"] = key
            params.update({f"w{i}_{c}": (values or {})[c] for c in columns})
    key_ = tuple(shape)
    statement = _STATEMENTS.get(key_)
    if statement is None:
        statement = _STATEMENTS[key_] = _build_statement(items, key_)
    return statement, params


def _build_statement(
    items: list[tuple[Table, list[dict[str, Any]] | None, Any, dict[str, Any] | None]],
    shape: _Shape,
) -> Any:
    """The batch as a ``text()`` statement with typed parameters: SQLAlchemy cannot cache a
    statement made of DML common table expressions (it would compile it on every request),
    but it caches a text clause like any other statement."""
    quote: Callable[[str], str] = _QUOTE
    parts: list[str] = []
    binds = []
    for i, ((table, *_), (_name, count, columns)) in enumerate(zip(items, shape, strict=True)):
        names = ", ".join(quote(c) for c in columns)
        if count >= 0:
            rows = []
            for r in range(count):
                rows.append("(" + ", ".join(f":w{i}_{r}_{c}" for c in columns) + ")")
                binds += [bindparam(f"w{i}_{r}_{c}", type_=table.c[c].type) for c in columns]
            # table and column names from our own metadata, values only as bound parameters
            sql = f"INSERT INTO {quote(table.name)} ({names}) VALUES {', '.join(rows)}"  # noqa: S608
        else:
            sets = ", ".join(f"{quote(c)} = :w{i}_{c}" for c in columns)
            sql = f"UPDATE {quote(table.name)} SET {sets} WHERE id = :w{i}_key"  # noqa: S608
            binds += [bindparam(f"w{i}_{c}", type_=table.c[c].type) for c in columns]
            binds.append(bindparam(f"w{i}_key", type_=table.c.id.type))
        parts.append(f"w{i} AS ({sql})")
    return text(f"WITH {', '.join(parts)} SELECT 1").bindparams(*binds)


_QUOTE = postgresql.dialect().identifier_preparer.quote  # type: ignore[no-untyped-call]


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
