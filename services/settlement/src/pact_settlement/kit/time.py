"""UTC timestamps from the service's one injected clock; SQLite drops tzinfo, restored on load.

The clock (``create_app(clock=...)``, the system clock by default) travels with every database
session: :func:`pact_settlement.db.engine.create_sessionmaker` puts it in ``session.info``, and
everything that stamps a row (event times, ``locked_at``, reconciler leases, ledger postings)
reads it with :func:`session_now`. New rows get ``created_at``/``updated_at``/``received_at``
from the same clock when they are flushed (:class:`ClockedSession`), so a test that freezes or
advances the clock sees every timestamp follow it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pact_schema.clock import Clock, to_datetime
from sqlalchemy import DateTime, event
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, UOWTransaction
from sqlalchemy.types import TypeDecorator

__all__ = [
    "CLOCK_KEY",
    "ClockedSession",
    "UTCDateTime",
    "clock_info",
    "from_ms",
    "session_clock",
    "session_now",
    "to_ms",
]

CLOCK_KEY = "pact_settlement.clock"
_STAMPED_ON_INSERT = ("created_at", "updated_at", "received_at")


def clock_info(clock: Clock) -> dict[str, Any]:
    """The ``info`` a session carries its clock in."""
    return {CLOCK_KEY: clock}


def session_clock(session: AsyncSession | Session) -> Clock:
    clock = session.info.get(CLOCK_KEY)
    if clock is None:
        raise RuntimeError(
            "this session carries no clock: make sessions with create_sessionmaker(engine, clock)"
        )
    found: Clock = clock
    return found


def session_now(session: AsyncSession | Session) -> datetime:
    """The service's clock, as an aware UTC datetime."""
    return from_ms(session_clock(session)())


def from_ms(ms: int) -> datetime:
    return to_datetime(ms)


def to_ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


class ClockedSession(Session):
    """A session that stamps the insert-time columns of new rows from its clock, and that
    retries the first statement of a transaction once when its pooled connection turns out to
    be dead (the server restarted or dropped it): instead of the pool's pre-ping, a round
    trip before every checkout, a dead connection costs one failed statement, once. Nothing
    ran in the transaction before that statement, so running it again on a fresh connection
    is the same request; timeouts and refusals are not retried
    (:func:`pact_settlement.kit.errors.lost_connection`)."""

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        if self.in_transaction():
            return super().execute(*args, **kwargs)
        try:
            return super().execute(*args, **kwargs)
        except DBAPIError as exc:
            from pact_settlement.kit.errors import lost_connection

            if not lost_connection(exc):
                raise
            self.rollback()
            return super().execute(*args, **kwargs)


@event.listens_for(ClockedSession, "before_flush")
def _stamp_new_rows(session: Session, _flush: UOWTransaction, _instances: object) -> None:
    if not session.new:
        return
    now = session_now(session)
    for row in session.new:
        for column in _STAMPED_ON_INSERT:
            if hasattr(type(row), column) and getattr(row, column) is None:
                setattr(row, column, now)


class UTCDateTime(TypeDecorator[datetime]):
    """``TIMESTAMP WITH TIME ZONE``; values are always aware and in UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise ValueError("UTCDateTime needs an aware datetime")
        aware: datetime = value.astimezone(UTC)
        return aware.replace(tzinfo=None) if dialect.name == "sqlite" else aware

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        result: datetime = value
        return result.replace(tzinfo=UTC) if result.tzinfo is None else result.astimezone(UTC)
