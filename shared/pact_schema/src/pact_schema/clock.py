"""The one place that reads the wall clock.

Everything that needs the time takes a :data:`Clock` (milliseconds since the epoch, UTC) and is
given :func:`now_ms` in production; tests give a clock they freeze or advance. Reading
``time.time()`` or ``datetime.now()`` anywhere else is refused by ruff (TID251), so no timestamp
can escape the injected clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

__all__ = ["Clock", "now_ms", "to_datetime", "utcnow"]

Clock = Callable[[], int]
"""Milliseconds since the Unix epoch."""


def now_ms() -> int:
    """The system clock: the production :data:`Clock`."""
    return time.time_ns() // 1_000_000


def to_datetime(ms: int) -> datetime:
    """An aware UTC datetime for a clock reading."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def utcnow() -> datetime:
    """The system clock as an aware datetime, for code outside the services (tests, scripts):
    service code takes the injected clock instead, and ruff refuses this there."""
    return to_datetime(now_ms())
