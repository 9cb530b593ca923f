"""The transaction owner: one session per request, COMMIT on success, ROLLBACK on error.

Services and repositories only ``flush()``. A :class:`SettlementError` with ``persist=True``
is a refusal that is itself a recorded outcome (e.g. a settlement that ended ``failed``): the
transaction is committed before the problem document is rendered.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from pact_settlement.kit.errors import SettlementError
from pact_settlement.runtime import runtime_of

__all__ = ["DBSession", "get_db_session", "get_sessionmaker"]


def get_sessionmaker(request: Request) -> async_sessionmaker[AsyncSession]:
    return runtime_of(request.app).sessionmaker


async def get_db_session(request: Request) -> AsyncIterator[AsyncSession]:
    maker = get_sessionmaker(request)
    async with maker() as session:
        try:
            yield session
        except SettlementError as exc:
            if exc.persist:
                await session.commit()
            else:
                await session.rollback()
            raise
        except BaseException:
            await session.rollback()
            raise
        else:
            await session.commit()


# ``scope="function"``: the commit happens before the response is sent, so a client never
# sees a success whose transaction then failed to commit.
DBSession = Annotated[AsyncSession, Depends(get_db_session, scope="function")]
