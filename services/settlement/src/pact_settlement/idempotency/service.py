"""Idempotent requests: same (scope, key) + same fingerprint → same answer; else 409.

Race safety: callers take a transaction-scoped named lock on the key first
(:func:`pact_settlement.db.locks.lock_names`; SQLite serialises writers anyway), and the
``(scope, key)`` unique constraint backs it up.
"""

from __future__ import annotations

import hashlib
from typing import Any

from pact_schema import CanonicalJSONError, FailureCode, canonical_json
from sqlalchemy.ext.asyncio import AsyncSession

from pact_settlement.idempotency.models import IdempotencyKey
from pact_settlement.idempotency.repository import IdempotencyRepository
from pact_settlement.kit.errors import ConflictError, ProblemCode, UnprocessableError

__all__ = ["IdempotencyService", "fingerprint"]

MAX_KEY_LENGTH = 255


def fingerprint(payload: Any) -> str:
    """SHA-256 of the canonical JSON of a request body (JavaScript number semantics)."""
    try:
        return hashlib.sha256(canonical_json(payload)).hexdigest()
    except (CanonicalJSONError, TypeError, ValueError) as exc:
        raise UnprocessableError(
            f"request body cannot be canonicalised: {exc}",
            code=FailureCode.SCHEMA_VALIDATION_FAILED,
        ) from exc


class IdempotencyService:
    def __init__(self, session: AsyncSession) -> None:
        self.repo = IdempotencyRepository.from_session(session)

    async def lookup(self, scope: str, key: str, request_fingerprint: str) -> IdempotencyKey | None:
        return self.check(await self.repo.find(scope, key), request_fingerprint)

    @staticmethod
    def check(row: IdempotencyKey | None, request_fingerprint: str) -> IdempotencyKey | None:
        """``row`` (the record of the request's key, read by the caller), or 409 when the key
        was used with a different request body."""
        if row is not None and row.fingerprint != request_fingerprint:
            raise ConflictError(
                "this Idempotency-Key was already used with a different request body",
                code=ProblemCode.IDEMPOTENCY_KEY_REUSED,
            )
        return row

    async def record(
        self,
        scope: str,
        key: str,
        request_fingerprint: str,
        resource_id: str | None,
        *,
        flush: bool = True,
    ) -> IdempotencyKey:
        """``flush=False``: written with the caller's next flush (the caller holds the named
        lock on the key, so the unique constraint cannot fire)."""
        return await self.repo.create(
            scope=scope,
            key=key,
            fingerprint=request_fingerprint,
            resource_id=resource_id,
            flush=flush,
        )

    async def record_answered(
        self,
        scope: str,
        key: str,
        request_fingerprint: str,
        resource_id: str | None,
        status_code: int,
        response: dict[str, Any],
    ) -> IdempotencyKey:
        """:meth:`record` and :meth:`complete` in one write, for a request whose answer is
        known before its transaction commits (the caller holds the named lock on the key)."""
        return await self.repo.insert_completed(
            scope=scope,
            key=key,
            fingerprint=request_fingerprint,
            resource_id=resource_id,
            status_code=status_code,
            response=response,
        )

    async def incomplete(self, scope: str, key: str) -> IdempotencyKey | None:
        """The record of ``(scope, key)`` if it has no answer yet (its request answered while
        the outcome was still unknown)."""
        row = await self.repo.find(scope, key)
        return row if row is not None and row.completed_at is None else None

    async def complete(
        self, row: IdempotencyKey, status_code: int, response: dict[str, Any]
    ) -> None:
        await self.repo.complete(row, status_code, response)
