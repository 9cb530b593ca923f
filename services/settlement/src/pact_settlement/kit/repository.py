"""``RepositoryBase[M]``: all SQL lives in repositories bound to the caller's session."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Generic, Self, TypeVar, cast

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from pact_settlement.db.base import Base

__all__ = ["RepositoryBase"]

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
