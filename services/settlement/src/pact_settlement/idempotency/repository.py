"""Idempotency key rows."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Table, bindparam, select

from pact_settlement.idempotency.models import IdempotencyKey
from pact_settlement.kit.ids import new_id
from pact_settlement.kit.repository import (
    RepositoryBase,
    insert_columns,
    insert_params,
    insert_rows,
)
from pact_settlement.kit.time import session_now

__all__ = ["IdempotencyRepository"]

_IDEMPOTENCY_KEYS = cast(Table, IdempotencyKey.__table__)
_COLUMNS = insert_columns(IdempotencyKey)
_BY_SCOPE_KEY = select(IdempotencyKey).where(
    IdempotencyKey.scope == bindparam("scope"), IdempotencyKey.key == bindparam("key")
)


class IdempotencyRepository(RepositoryBase[IdempotencyKey]):
    model = IdempotencyKey

    async def find(self, scope: str, key: str) -> IdempotencyKey | None:
        return await self.get_one_or_none(_BY_SCOPE_KEY, {"scope": scope, "key": key})

    async def create(
        self,
        *,
        scope: str,
        key: str,
        fingerprint: str,
        resource_id: str | None,
        flush: bool = True,
    ) -> IdempotencyKey:
        row = IdempotencyKey(
            id=new_id("idk"),
            scope=scope,
            key=key,
            fingerprint=fingerprint,
            resource_id=resource_id,
            created_at=session_now(self.session),
        )
        return await self.add(row, flush=flush)

    async def insert_completed(
        self,
        *,
        scope: str,
        key: str,
        fingerprint: str,
        resource_id: str | None,
        status_code: int,
        response: dict[str, Any],
    ) -> IdempotencyKey:
        """The record of a request answered in the same transaction: written once, with its
        answer, by one INSERT outside the unit of work."""
        now = session_now(self.session)
        row = IdempotencyKey(
            id=new_id("idk"),
            scope=scope,
            key=key,
            fingerprint=fingerprint,
            resource_id=resource_id,
            status_code=status_code,
            response=response,
            created_at=now,
            completed_at=now,
        )
        await insert_rows(self.session, _IDEMPOTENCY_KEYS, [insert_params(row, _COLUMNS)])
        return row

    async def complete(
        self, row: IdempotencyKey, status_code: int, response: dict[str, Any]
    ) -> None:
        row.status_code = status_code
        row.response = response
        row.completed_at = session_now(self.session)
        await self.session.flush()
