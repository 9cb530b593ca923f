"""The EVM operator account's nonces, shared by every process and replica of the service.

Each worker process (``serve --workers N``) and each replica signs escrow transactions with the
same operator key. A lock inside one process does not stop another from reading the same
``pending`` count from the node and signing the same nonce: one of the two transactions is then
refused ("nonce too low", "transaction can't be replaced"). :class:`DatabaseNonceGuard` makes
the database the one place that says who may send:

* Postgres: a transaction-scoped advisory lock on ``evm-nonce:<chain id>:<address>``, held
  while the nonce is read from the node, the transaction signed and broadcast. It is released
  when that transaction ends — by us, by Postgres when the process dies, or by
  ``idle_in_transaction_session_timeout`` when it freezes. Waiting for it is bounded by
  ``RAIL_CALL_TIMEOUT_S`` (the caller's own bound on the whole call).
* SQLite (one host): the transaction's write lock (``BEGIN IMMEDIATE``), which serialises the
  processes sharing the file; other writers wait for the broadcast.

Nothing is written: the nonce itself still comes from the node, which counts the holder's
broadcast transaction in ``pending`` by the time the next holder asks.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from pact_settlement.db.locks import lock_names
from pact_settlement.rails.evm.errors import EscrowTransientError

__all__ = ["DatabaseNonceGuard"]


class DatabaseNonceGuard:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], *, wait_s: float) -> None:
        self.sessionmaker = sessionmaker
        self.wait_ms = max(1, int(wait_s * 1000))

    @asynccontextmanager
    async def hold(self, chain_id: int, address: str) -> AsyncIterator[None]:
        session = self.sessionmaker()
        try:
            try:
                connection = await session.connection()  # BEGIN (IMMEDIATE on SQLite)
                if connection.dialect.name == "postgresql":  # this transaction only
                    await session.execute(
                        text(
                            "SELECT set_config('lock_timeout', :ms, true),"
                            " set_config('statement_timeout', :ms, true)"
                        ),
                        {"ms": str(self.wait_ms)},
                    )
                await lock_names(session, f"evm-nonce:{chain_id}:{address.lower()}")
            except Exception as exc:  # nothing was sent: the step may simply be retried
                raise EscrowTransientError(
                    f"the operator's nonce lock could not be taken: {type(exc).__name__}",
                    outcome_unknown=False,
                ) from exc
            yield
        finally:
            # Nothing was written: ending the transaction only releases the lock (and a
            # failure to end it cleanly drops the connection, which releases it too).
            with contextlib.suppress(Exception):
                await session.rollback()
            with contextlib.suppress(Exception):
                await session.close()
