"""One error base class and one RFC 9457 ``application/problem+json`` renderer.

Every refusal the service makes is a :class:`SettlementError` subclass carrying an HTTP status
and a machine-readable ``code``: a :class:`pact_schema.FailureCode` for protocol refusals, or a
:class:`ProblemCode` for transport-level problems no protocol code describes.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, ClassVar

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pact_schema import FailureCode
from pact_schema.problem import PROBLEM_MEDIA_TYPE, problem_document
from pact_schema.problem import problem_type as _problem_type
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

__all__ = [
    "PROBLEM_CONTENT_TYPE",
    "BadRequestError",
    "ConflictError",
    "DatabaseUnavailableError",
    "DeadlineExceededError",
    "ForbiddenError",
    "NotFoundError",
    "Outage",
    "ProblemCode",
    "SettlementError",
    "UnauthorizedError",
    "UnprocessableError",
    "database_outage",
    "install_error_handlers",
    "is_unavailable",
    "lost_connection",
    "problem_response",
    "problem_type",
    "settlement_problem",
]

PROBLEM_CONTENT_TYPE = PROBLEM_MEDIA_TYPE
_TYPE_BASE = "https://pact.dev/problems/"

log = structlog.get_logger(__name__)


def problem_type(code: str) -> str:
    """The problem ``type`` URI of a code: ``INSUFFICIENT_ESCROW`` → …/insufficient-escrow."""
    return _problem_type(_TYPE_BASE, code)


def settlement_problem(
    status: int, *, title: str, detail: str, code: str, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The settlement service's problem document (``pact_schema.problem.problem_document``)."""
    return problem_document(status, code, detail, type_base=_TYPE_BASE, title=title, extra=extra)


class ProblemCode(StrEnum):
    """Transport-level codes (no pact/1.0 FailureCode describes these)."""

    UNAUTHORIZED = "UNAUTHORIZED"
    FORBIDDEN = "FORBIDDEN"
    NOT_FOUND = "NOT_FOUND"
    BAD_REQUEST = "BAD_REQUEST"
    IDEMPOTENCY_KEY_REUSED = "IDEMPOTENCY_KEY_REUSED"
    DUPLICATE_INTENT = "DUPLICATE_INTENT"
    AMBIGUOUS_INTENT_ID = "AMBIGUOUS_INTENT_ID"
    STATE_CONFLICT = "STATE_CONFLICT"
    RAIL_NOT_AVAILABLE = "RAIL_NOT_AVAILABLE"
    DATABASE_UNAVAILABLE = "DATABASE_UNAVAILABLE"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    BALANCE_LIMIT_EXCEEDED = "BALANCE_LIMIT_EXCEEDED"
    ASSET_NOT_SUPPORTED = "ASSET_NOT_SUPPORTED"  # no enabled rail settles in that asset
    ASSET_MISMATCH = "ASSET_MISMATCH"  # the asset is not the one the rail moves
    INSUFFICIENT_BALANCE = "INSUFFICIENT_BALANCE"  # a payout beyond the available balance
    PAYOUT_NOT_SUPPORTED = "PAYOUT_NOT_SUPPORTED"  # the rail cannot pay a balance out
    PERMIT_INVALID = "PERMIT_INVALID"  # a buyer's EIP-2612 permit could not fund the lock
    RAIL_UNAVAILABLE = "RAIL_UNAVAILABLE"  # the rail did not answer a read in time: retry
    INTERNAL_ERROR = "INTERNAL_ERROR"
    NOT_READY = "NOT_READY"  # /readyz: the readiness report rides along as extra members


class SettlementError(Exception):
    """Base error: an HTTP status, a code, a short title and a human detail.

    ``persist`` asks the transaction owner to COMMIT before the error is rendered: used when
    a refusal is itself a recorded outcome (a settlement that ended ``failed``).
    """

    status: ClassVar[int] = 400
    title: ClassVar[str] = "Bad request"
    default_code: ClassVar[str] = ProblemCode.BAD_REQUEST

    def __init__(
        self,
        detail: str,
        *,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
        persist: bool = False,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.code = str(code or self.default_code)
        self.headers = headers or {}
        self.extra = extra or {}
        self.persist = persist

    def to_problem(self) -> dict[str, Any]:
        return settlement_problem(
            self.status, title=self.title, detail=self.detail, code=self.code, extra=self.extra
        )


class BadRequestError(SettlementError):
    status = 400
    title = "Bad request"


class UnauthorizedError(SettlementError):
    status = 401
    title = "Unauthorized"
    default_code = ProblemCode.UNAUTHORIZED

    def __init__(self, detail: str = "a valid bearer token is required") -> None:
        super().__init__(detail, headers={"WWW-Authenticate": 'Bearer realm="pact-settlement"'})


class ForbiddenError(SettlementError):
    status = 403
    title = "Forbidden"
    default_code = ProblemCode.FORBIDDEN


class NotFoundError(SettlementError):
    status = 404
    title = "Not found"
    default_code = ProblemCode.NOT_FOUND


class ConflictError(SettlementError):
    status = 409
    title = "Conflict"
    default_code = ProblemCode.STATE_CONFLICT


class UnprocessableError(SettlementError):
    status = 422
    title = "Unprocessable request"
    default_code = FailureCode.SCHEMA_VALIDATION_FAILED


class Outage(StrEnum):
    """Why the database cannot serve a request now (the same request will work later)."""

    UNREACHABLE = "unreachable"  # connection refused or lost, restarting, pool exhausted
    READ_ONLY = "read_only"  # writes refused: a standby, a failover, a read-only switch
    DISK_FULL = "disk_full"  # writes refused: no space left
    OVERLOADED = "overloaded"  # out of memory, too many connections, other limits
    TIMEOUT = "timeout"  # statement, lock or client-side command timeout
    CONFLICT = "conflict"  # serialization failure or deadlock: rolled back, retry


#: Outages that refuse writes while reads may still work (``/readyz`` turns red on them).
WRITE_REFUSALS = frozenset({Outage.READ_ONLY, Outage.DISK_FULL})

_DETAILS = {
    Outage.READ_ONLY: "the database refuses writes (read-only); retry shortly",
    Outage.DISK_FULL: "the database is out of disk space; retry later",
    Outage.TIMEOUT: "the database did not answer in time; retry shortly",
    Outage.CONFLICT: "the database rolled the request back (a conflict); retry it",
}


class DatabaseUnavailableError(SettlementError):
    status = 503
    title = "Service unavailable"
    default_code = ProblemCode.DATABASE_UNAVAILABLE

    def __init__(
        self,
        detail: str = "the database is unavailable; retry shortly",
        *,
        reason: Outage = Outage.UNREACHABLE,
    ) -> None:
        super().__init__(
            _DETAILS.get(reason, detail),
            headers={"Retry-After": "1"},
            extra={"reason": reason.value},
        )


class RailUnavailableError(SettlementError):
    """A rail a request must read before it records anything (an escrow's credit) did not
    answer; nothing was recorded, the same request will work later."""

    status = 503
    title = "Service unavailable"
    default_code = ProblemCode.RAIL_UNAVAILABLE

    def __init__(self, detail: str) -> None:
        super().__init__(detail, headers={"Retry-After": "1"})


class DeadlineExceededError(SettlementError):
    """The request did not finish within ``REQUEST_TIMEOUT_S``; nothing it did was kept."""

    status = 503
    title = "Service unavailable"
    default_code = ProblemCode.DEADLINE_EXCEEDED

    def __init__(self, budget_s: float) -> None:
        super().__init__(
            f"the request did not finish within its {budget_s:g} s budget and was rolled "
            "back; resend the same request",
            headers={"Retry-After": "1"},
        )


def problem_response(
    status: int,
    *,
    title: str,
    detail: str,
    code: str,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> JSONResponse:
    body = settlement_problem(status, title=title, detail=detail, code=code, extra=extra)
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_CONTENT_TYPE)


def _render(exc: SettlementError) -> JSONResponse:
    return JSONResponse(
        exc.to_problem(),
        status_code=exc.status,
        headers=exc.headers,
        media_type=PROBLEM_CONTENT_TYPE,
    )


def database_outage(exc: BaseException) -> Outage | None:
    """The outage ``exc`` reports, or ``None`` when it is a bug (or a refusal) instead.

    Looks through SQLAlchemy's wrapper and the driver adapter's at the driver's own error:
    its SQLSTATE (Postgres), its result code (SQLite) or its type.
    """
    if isinstance(exc, PoolTimeoutError):
        return Outage.OVERLOADED
    if isinstance(exc, TimeoutError):  # asyncpg's command_timeout, connect timeouts
        return Outage.TIMEOUT
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        found = _driver_outage(current)
        if found is not None:
            return found
        orig = getattr(current, "orig", None)
        current = orig if isinstance(orig, BaseException) else current.__cause__
    if isinstance(exc, DBAPIError) and (
        exc.connection_invalidated or isinstance(exc, OperationalError)
    ):
        return Outage.UNREACHABLE  # connection refused or lost, "database is locked", …
    if isinstance(exc, ConnectionError | OSError):
        return Outage.UNREACHABLE
    return None


def lost_connection(exc: BaseException) -> bool:
    """Whether ``exc`` says the connection was already dead when used (the server restarted or
    dropped it while it sat in the pool): retrying on a fresh connection is safe and should
    work. Not a timeout (the server may be frozen: waiting again would double the wait) and
    not a refusal (read-only, disk full: a fresh connection is refused the same way)."""
    if not isinstance(exc, DBAPIError) or not exc.connection_invalidated:
        return False
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, TimeoutError):
            return False
        seen.add(id(current))
        orig = getattr(current, "orig", None)
        current = orig if isinstance(orig, BaseException) else current.__cause__
    return database_outage(exc) is Outage.UNREACHABLE


def is_unavailable(exc: BaseException) -> bool:
    return database_outage(exc) is not None


def _driver_outage(error: BaseException) -> Outage | None:
    if type(error).__name__ in _UNAVAILABLE_DRIVER_ERRORS:
        return Outage.UNREACHABLE
    sqlstate = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
    if isinstance(sqlstate, str):
        if sqlstate.startswith("08"):
            return Outage.UNREACHABLE
        return _OUTAGE_SQLSTATES.get(sqlstate)
    sqlite_code = getattr(error, "sqlite_errorcode", None)
    if isinstance(sqlite_code, int):
        return _OUTAGE_SQLITE_CODES.get(sqlite_code & 0xFF)
    return None


_UNAVAILABLE_DRIVER_ERRORS = frozenset(
    {
        "CannotConnectNowError",
        "ConnectionDoesNotExistError",
        "TooManyConnectionsError",
        "AdminShutdownError",
        "CrashShutdownError",
        "ConnectionFailureError",
    }
)
# Postgres SQLSTATEs (appendix A) that mean "not now": class 08 (connection) is matched above.
_OUTAGE_SQLSTATES = {
    "25006": Outage.READ_ONLY,  # read_only_sql_transaction
    "25P03": Outage.TIMEOUT,  # idle_in_transaction_session_timeout
    "40001": Outage.CONFLICT,  # serialization_failure
    "40P01": Outage.CONFLICT,  # deadlock_detected
    "53000": Outage.OVERLOADED,  # insufficient_resources
    "53100": Outage.DISK_FULL,  # disk_full
    "53200": Outage.OVERLOADED,  # out_of_memory
    "53300": Outage.OVERLOADED,  # too_many_connections
    "53400": Outage.OVERLOADED,  # configuration_limit_exceeded
    "55P03": Outage.TIMEOUT,  # lock_not_available (lock_timeout)
    "57014": Outage.TIMEOUT,  # query_canceled (statement_timeout)
    "57P01": Outage.UNREACHABLE,  # admin_shutdown
    "57P02": Outage.UNREACHABLE,  # crash_shutdown
    "57P03": Outage.UNREACHABLE,  # cannot_connect_now (starting up)
    "57P05": Outage.TIMEOUT,  # idle_session_timeout
    "58030": Outage.UNREACHABLE,  # io_error
}
# SQLite primary result codes (sqlite3 exceptions carry them as ``sqlite_errorcode``).
_OUTAGE_SQLITE_CODES = {
    5: Outage.TIMEOUT,  # SQLITE_BUSY: the write lock was not free within the busy timeout
    6: Outage.TIMEOUT,  # SQLITE_LOCKED
    7: Outage.OVERLOADED,  # SQLITE_NOMEM
    8: Outage.READ_ONLY,  # SQLITE_READONLY
    10: Outage.UNREACHABLE,  # SQLITE_IOERR
    13: Outage.DISK_FULL,  # SQLITE_FULL
    14: Outage.UNREACHABLE,  # SQLITE_CANTOPEN
}


def install_error_handlers(app: FastAPI) -> None:
    """Register the one problem+json renderer for every error path."""

    async def settlement_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, SettlementError)
        return _render(exc)

    async def validation_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = exc.errors()
        parts = []
        for err in errors[:5]:
            where = ".".join(str(p) for p in err.get("loc", ()))
            parts.append(f"{where}: {err.get('msg')}")
        return problem_response(
            422,
            title="Unprocessable request",
            detail="; ".join(parts) or "request validation failed",
            code=FailureCode.SCHEMA_VALIDATION_FAILED,
        )

    async def http_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = {
            401: ProblemCode.UNAUTHORIZED,
            403: ProblemCode.FORBIDDEN,
            404: ProblemCode.NOT_FOUND,
        }.get(exc.status_code, ProblemCode.BAD_REQUEST)
        if exc.status_code >= 500:
            code = ProblemCode.INTERNAL_ERROR
        return problem_response(
            exc.status_code,
            title=str(exc.detail) if isinstance(exc.detail, str) else "HTTP error",
            detail=str(exc.detail),
            code=code,
            headers=dict(exc.headers or {}),
        )

    async def database_error(_: Request, exc: Exception) -> JSONResponse:
        outage = database_outage(exc)
        if outage is not None:
            log.warning("settlement.database.unavailable", reason=outage, error=str(exc)[:300])
            return _render(DatabaseUnavailableError(reason=outage))
        log.error("settlement.database.error", error_type=type(exc).__name__, error=str(exc)[:300])
        return problem_response(
            500,
            title="Internal server error",
            detail="an unexpected database error occurred; it has been logged",
            code=ProblemCode.INTERNAL_ERROR,
        )

    async def unexpected_error(_: Request, exc: Exception) -> JSONResponse:
        outage = database_outage(exc)
        if outage is not None:
            log.warning("settlement.database.unavailable", reason=outage, error=str(exc)[:300])
            return _render(DatabaseUnavailableError(reason=outage))
        log.exception("settlement.internal_error", error_type=type(exc).__name__)
        return problem_response(
            500,
            title="Internal server error",
            detail="an unexpected error occurred; it has been logged",
            code=ProblemCode.INTERNAL_ERROR,
        )

    app.add_exception_handler(SettlementError, settlement_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    for kind in (DBAPIError, PoolTimeoutError, ConnectionError, OSError):
        app.add_exception_handler(kind, database_error)
    app.add_exception_handler(Exception, unexpected_error)
