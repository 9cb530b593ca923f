"""Engine construction (called from ``lifespan`` and the CLI, never at import time).

SQLite: the database file created owner-only, WAL, foreign keys, a busy timeout, and
``BEGIN IMMEDIATE`` for every transaction so writers are serialised up front instead of failing
with "database is locked" on upgrade from a read lock. Postgres: asyncpg with a bounded pool,
server-side ``lock_timeout``, ``statement_timeout`` and ``idle_in_transaction_session_timeout``,
and a client-side bound on connecting and on every command (``command_timeout``), which is what
ends a command when the server cannot answer at all (frozen, partitioned).

Every database error passes through one hook (:func:`_on_error`): a connection that timed out
or that the server refused a write on for being read-only is discarded instead of going back to
the pool (a session opened against a read-only server stays read-only after the server recovers;
read-only invalidates the whole pool, so every such session is recycled), and refused writes are
reported to :class:`~pact_settlement.db.health.DatabaseHealth` for ``/readyz``.
"""

from __future__ import annotations

from typing import Any

from pact_schema.clock import Clock, now_ms
from pact_schema.files import create_private_file
from sqlalchemy import event
from sqlalchemy.engine import ExceptionContext, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import NullPool

from pact_settlement.config import SettlementSettings
from pact_settlement.db.health import DatabaseHealth
from pact_settlement.kit.errors import WRITE_REFUSALS, Outage, database_outage
from pact_settlement.kit.time import ClockedSession, clock_info

__all__ = ["create_engine", "create_sessionmaker", "make_engine"]


def make_engine(
    url: str,
    *,
    pool_size: int = 10,
    max_overflow: int = 10,
    pool_timeout_s: float = 10.0,
    sqlite_busy_timeout_ms: int = 15_000,
    lock_timeout_ms: int | None = None,
    statement_timeout_ms: int | None = None,
    idle_in_transaction_timeout_ms: int | None = None,
    command_timeout_s: float | None = None,
    health: DatabaseHealth | None = None,
    echo: bool = False,
) -> AsyncEngine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:" and not database.startswith("file:"):
            # Created here, owner-only (0600, in a 0700 directory when that is new too),
            # before SQLite opens it with the umask's mode; its -wal/-shm files inherit 0600.
            create_private_file(database)
        engine = create_async_engine(
            url,
            echo=echo,
            poolclass=NullPool,
            connect_args={"timeout": sqlite_busy_timeout_ms / 1000},
        )
        _configure_sqlite(engine, sqlite_busy_timeout_ms)
        _watch_errors(engine, health)
        return engine
    kwargs: dict[str, Any] = {
        "pool_size": pool_size,
        "max_overflow": max_overflow,
        "pool_timeout": pool_timeout_s,
        # No pre-ping (a round trip on every checkout): a connection the server closed while
        # it sat in the pool fails its first statement, which the session runs again once on
        # a fresh connection (kit.time.ClockedSession); the error also invalidates the pool.
        "pool_pre_ping": False,
    }
    server_settings = {"application_name": "pact-settlement"}
    if lock_timeout_ms:
        server_settings["lock_timeout"] = str(int(lock_timeout_ms))
    if statement_timeout_ms:
        server_settings["statement_timeout"] = str(int(statement_timeout_ms))
    if idle_in_transaction_timeout_ms:
        server_settings["idle_in_transaction_session_timeout"] = str(
            int(idle_in_transaction_timeout_ms)
        )
    if parsed.get_driver_name() == "asyncpg":
        connect_args: dict[str, Any] = {"server_settings": server_settings}
        if command_timeout_s:
            connect_args["command_timeout"] = command_timeout_s
            connect_args["timeout"] = command_timeout_s  # connecting, too
        kwargs["connect_args"] = connect_args
    engine = create_async_engine(url, echo=echo, **kwargs)
    _watch_errors(engine, health)
    return engine


def _watch_errors(engine: AsyncEngine, health: DatabaseHealth | None) -> None:
    @event.listens_for(engine.sync_engine, "handle_error")
    def _on_error(context: ExceptionContext) -> None:
        outage = database_outage(context.original_exception)
        if outage is None:
            return
        if outage in WRITE_REFUSALS and health is not None:
            health.write_refused(outage)
        if outage is Outage.READ_ONLY:
            # Opened against a read-only server (a standby, a database switched read-only):
            # such a session never becomes writable; recycle every pooled one.
            context.is_disconnect = True
            context.invalidate_pool_on_disconnect = True
        elif isinstance(context.original_exception, TimeoutError):
            # The client gave up on the server (command_timeout): the connection may still be
            # busy or the server frozen; do not wait for it again, discard it.
            context.is_disconnect = True
            context.invalidate_pool_on_disconnect = False


def _configure_sqlite(engine: AsyncEngine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the driver; BEGIN is emitted below.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def create_engine(
    settings: SettlementSettings,
    *,
    for_migrations: bool = False,
    health: DatabaseHealth | None = None,
) -> AsyncEngine:
    """The service's engine. Migrations run without the request-path timeouts."""
    return make_engine(
        settings.resolved_database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout_s=settings.db_pool_timeout_s,
        sqlite_busy_timeout_ms=settings.sqlite_busy_timeout_ms,
        lock_timeout_ms=None if for_migrations else settings.db_lock_timeout_ms,
        statement_timeout_ms=None if for_migrations else settings.db_statement_timeout_ms,
        idle_in_transaction_timeout_ms=(
            None if for_migrations else settings.db_idle_in_transaction_timeout_ms
        ),
        command_timeout_s=None if for_migrations else settings.db_command_timeout_s,
        health=health,
    )


def create_sessionmaker(
    engine: AsyncEngine, *, clock: Clock = now_ms
) -> async_sessionmaker[AsyncSession]:
    """Sessions that carry the service's ``clock``: every timestamp they write comes from it."""
    return async_sessionmaker(
        engine,
        expire_on_commit=False,
        autoflush=False,
        info=clock_info(clock),
        sync_session_class=ClockedSession,
    )
