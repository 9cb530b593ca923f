"""Deterministic regressions for the bugs the fault tests found.

1. Postgres restarting answers connections with "the database system is starting up"
   (asyncpg ``CannotConnectNowError``, SQLSTATE 57P03) wrapped in SQLAlchemy's ``DBAPIError``:
   that is an outage (503 + Retry-After), not a 500.
2. A structlog call passing ``event=`` as a keyword collides with the event name and raises
   ``TypeError`` (a 500 from a concurrent webhook delivery when a step's transition was no
   longer due).
"""

from __future__ import annotations

import ast
from pathlib import Path

import asyncpg
import pact_settlement
import pytest
from pact_settlement.kit.errors import Outage, database_outage, is_unavailable
from sqlalchemy.exc import DBAPIError

pytestmark = pytest.mark.faults


class _AdapterError(Exception):
    """Stands in for SQLAlchemy's asyncpg adapter error (the driver error is its cause)."""


def _wrapped(driver_error: BaseException) -> DBAPIError:
    adapter = _AdapterError(str(driver_error))
    adapter.__cause__ = driver_error
    return DBAPIError("SELECT 1", {}, adapter)


@pytest.mark.parametrize(
    "driver_error",
    [
        asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
        asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator"),
        asyncpg.exceptions.TooManyConnectionsError("sorry, too many clients already"),
    ],
)
def test_wrapped_driver_outages_are_unavailable(driver_error: BaseException) -> None:
    assert is_unavailable(_wrapped(driver_error))


@pytest.mark.parametrize(
    ("driver_error", "outage"),
    [
        (asyncpg.exceptions.ReadOnlySQLTransactionError("read-only"), Outage.READ_ONLY),
        (asyncpg.exceptions.DiskFullError("could not extend file"), Outage.DISK_FULL),
        (asyncpg.exceptions.OutOfMemoryError("out of memory"), Outage.OVERLOADED),
        (asyncpg.exceptions.QueryCanceledError("statement timeout"), Outage.TIMEOUT),
        (asyncpg.exceptions.LockNotAvailableError("lock timeout"), Outage.TIMEOUT),
        (asyncpg.exceptions.DeadlockDetectedError("deadlock"), Outage.CONFLICT),
        (asyncpg.exceptions.SerializationError("could not serialize"), Outage.CONFLICT),
        (asyncpg.exceptions.IdleInTransactionSessionTimeoutError("idle"), Outage.TIMEOUT),
    ],
)
def test_refused_writes_and_timeouts_are_outages_not_bugs(
    driver_error: BaseException, outage: Outage
) -> None:
    """Issue 13 item 3: read-only (25006), disk full (53100) and their family were 500s."""
    assert database_outage(_wrapped(driver_error)) is outage


def test_other_database_errors_stay_errors() -> None:
    assert not is_unavailable(_wrapped(asyncpg.exceptions.UniqueViolationError("dup")))
    assert not is_unavailable(_wrapped(ValueError("bug")))


def test_no_log_call_passes_event_as_a_keyword() -> None:
    root = Path(pact_settlement.__file__).parent
    offenders = []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id in {"log", "logger"}
                and any(k.arg == "event" for k in node.keywords)
            ):
                offenders.append(f"{path.relative_to(root)}:{node.lineno}")
    assert offenders == []
