"""How an external rail reads and updates its binding around a call.

The two-phase executor calls a non-transactional rail with no transaction open in its
session, and resolves the step in a new transaction afterwards. A rail that read through that
session during the call would open a transaction there and hold it (on SQLite: the write lock)
for the whole network round trip. So, outside a transaction, the rail uses a short session of
its own on the same engine: read, write, commit, close. Inside one (``prepare``, tests that
call a rail directly), it uses the caller's session, which also sees what the caller wrote.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime

from pact_schema import FailureCode
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from pact_settlement.kit.time import session_now
from pact_settlement.rails.base import RailError, RailStep
from pact_settlement.rails.bindings import RailBinding
from pact_settlement.rails.models import RailOperation

__all__ = ["BindingIO"]


class BindingIO:
    def __init__(self, session: AsyncSession, rail: str) -> None:
        self.session = session
        self.rail = rail

    @asynccontextmanager
    async def _session(self) -> AsyncIterator[tuple[AsyncSession, bool]]:
        """(session, owned): the caller's inside a transaction, else a short one of our own."""
        if self.session.in_transaction() or self.session.bind is None:
            yield self.session, False
            return
        async with AsyncSession(
            bind=self.session.bind,
            expire_on_commit=False,
            info=dict(self.session.info),  # the service's clock travels with it
            sync_session_class=self.session.sync_session_class,
        ) as own:
            yield own, True

    async def load(self, settlement_id: str) -> RailBinding:
        async with self._session() as (session, owned):
            binding = await session.get(RailBinding, settlement_id)
            if owned:
                await session.commit()
        if binding is None or binding.rail != self.rail:
            raise RailError(
                FailureCode.FAILED_ESCROW,
                f"settlement {settlement_id} has no {self.rail} rail binding (it was not "
                "prepared by this rail)",
            )
        return binding

    async def update(
        self,
        settlement_id: str,
        *,
        external_id: str | None = None,
        hold_expires_at: datetime | None = None,
    ) -> None:
        async with self._session() as (session, owned):
            binding = await session.get(RailBinding, settlement_id, populate_existing=True)
            if binding is None:
                return
            changed = False
            if external_id is not None and binding.external_id != external_id:
                binding.external_id = external_id
                changed = True
            if hold_expires_at is not None and binding.hold_expires_at != hold_expires_at:
                binding.hold_expires_at = hold_expires_at
                changed = True
            if changed:
                binding.updated_at = session_now(session)
                await session.flush()
            if owned:
                await session.commit()

    async def operation_ref(self, settlement_id: str, step: RailStep) -> str | None:
        """The external reference recorded on this settlement's ``step`` operation, if any."""
        async with self._session() as (session, owned):
            ref = (
                await session.execute(
                    select(RailOperation.external_ref).where(
                        RailOperation.settlement_id == settlement_id,
                        RailOperation.step == step.value,
                    )
                )
            ).scalar_one_or_none()
            if owned:
                await session.commit()
        return ref
