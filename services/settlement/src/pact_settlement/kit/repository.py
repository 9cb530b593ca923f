"""``RepositoryBase[M]``: all SQL lives in repositories bound to the caller's session."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Generic, Self, TypeVar, cast

from sqlalchemy import Select, Table, inspect, select
from sqlalchemy.ext.asyncio import AsyncSession

from pact_settlement.db.base import Base

__all__ = ["RepositoryBase", "insert_columns", "insert_params"]


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
