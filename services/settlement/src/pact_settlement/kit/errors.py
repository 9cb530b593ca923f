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
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

__all__ = [
    "PROBLEM_CONTENT_TYPE",
    "BadRequest",
    "Conflict",
    "DatabaseUnavailable",
    "Forbidden",
    "NotFound",
    "ProblemCode",
    "SettlementError",
    "Unauthorized",
    "Unprocessable",
    "install_error_handlers",
    "problem_response",
    "problem_type",
]

PROBLEM_CONTENT_TYPE = "application/problem+json"
_TYPE_BASE = "https://pact.dev/problems/"

log = structlog.get_logger(__name__)


def problem_type(code: str) -> str:
    """The problem ``type`` URI of a code: ``INSUFFICIENT_ESCROW`` → …/insufficient-escrow."""
    return _TYPE_BASE + code.lower().replace("_", "-")


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
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    BALANCE_LIMIT_EXCEEDED = "BALANCE_LIMIT_EXCEEDED"
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
        return {
            "type": problem_type(self.code),
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
            **self.extra,
        }


class BadRequest(SettlementError):
    status = 400
    title = "Bad request"


class Unauthorized(SettlementError):
    status = 401
    title = "Unauthorized"
    default_code = ProblemCode.UNAUTHORIZED

    def __init__(self, detail: str = "a valid bearer token is required") -> None:
        super().__init__(detail, headers={"WWW-Authenticate": 'Bearer realm="pact-settlement"'})


class Forbidden(SettlementError):
    status = 403
    title = "Forbidden"
    default_code = ProblemCode.FORBIDDEN


class NotFound(SettlementError):
    status = 404
    title = "Not found"
    default_code = ProblemCode.NOT_FOUND


class Conflict(SettlementError):
    status = 409
    title = "Conflict"
    default_code = ProblemCode.STATE_CONFLICT


class Unprocessable(SettlementError):
    status = 422
    title = "Unprocessable request"
    default_code = FailureCode.SCHEMA_VALIDATION_FAILED


class DatabaseUnavailable(SettlementError):
    status = 503
    title = "Service unavailable"
    default_code = ProblemCode.DATABASE_UNAVAILABLE

    def __init__(self, detail: str = "the database is unavailable; retry shortly") -> None:
        super().__init__(detail, headers={"Retry-After": "1"})


def problem_response(
    status: int,
    *,
    title: str,
    detail: str,
    code: str,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> JSONResponse:
    body = {
        "type": problem_type(code),
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        **(extra or {}),
    }
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_CONTENT_TYPE)


def _render(exc: SettlementError) -> JSONResponse:
    return JSONResponse(
        exc.to_problem(),
        status_code=exc.status,
        headers=exc.headers,
        media_type=PROBLEM_CONTENT_TYPE,
    )


def _is_unavailable(exc: BaseException) -> bool:
    if isinstance(exc, PoolTimeoutError | ConnectionError | OSError):
        return True
    if isinstance(exc, OperationalError):
        return True  # connection refused, server gone, "database is locked", …
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    # The driver's own error, under SQLAlchemy's DBAPIError wrapper (and the asyncpg adapter's):
    # "the database system is starting up / shutting down", too many connections, connection
    # failures (SQLSTATE classes 08, 53300, 57P01-57P03) are outages, not bugs.
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if type(current).__name__ in _UNAVAILABLE_DRIVER_ERRORS:
            return True
        sqlstate = getattr(current, "sqlstate", None) or getattr(current, "pgcode", None)
        if isinstance(sqlstate, str) and (
            sqlstate.startswith("08") or sqlstate in _UNAVAILABLE_SQLSTATES
        ):
            return True
        orig = getattr(current, "orig", None)
        current = orig if isinstance(orig, BaseException) else current.__cause__
    return False


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
_UNAVAILABLE_SQLSTATES = frozenset({"53300", "57P01", "57P02", "57P03"})


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
        if _is_unavailable(exc):
            log.warning("settlement.database.unavailable", error=str(exc)[:300])
            return _render(DatabaseUnavailable())
        log.error("settlement.database.error", error_type=type(exc).__name__, error=str(exc)[:300])
        return problem_response(
            500,
            title="Internal server error",
            detail="an unexpected database error occurred; it has been logged",
            code=ProblemCode.INTERNAL_ERROR,
        )

    async def unexpected_error(_: Request, exc: Exception) -> JSONResponse:
        if _is_unavailable(exc):
            log.warning("settlement.database.unavailable", error=str(exc)[:300])
            return _render(DatabaseUnavailable())
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
