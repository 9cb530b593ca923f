"""Idempotency key rows."""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, select

from pact_settlement.idempotency.models import IdempotencyKey
from pact_settlement.kit.ids import new_id
from pact_settlement.kit.repository import RepositoryBase
from pact_settlement.kit.time import session_now

__all__ = ["IdempotencyRepository"]

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

    async def complete(
        self, row: IdempotencyKey, status_code: int, response: dict[str, Any]
    ) -> None:
        row.status_code = status_code
        row.response = response
        row.completed_at = session_now(self.session)
        await self.session.flush()
