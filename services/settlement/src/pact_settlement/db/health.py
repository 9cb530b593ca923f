"""What the database told this process lately, that a connect and a ``SELECT 1`` cannot show.

A read-only or full database still connects and still answers reads; only writes fail. Every
database error of the engine passes through :func:`pact_settlement.db.engine.make_engine`'s
error hook, which reports refused writes here (requests and workers alike); ``/readyz`` stays
red while one was seen within ``WRITE_REFUSAL_HOLD_S``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from pact_settlement.kit.errors import Outage

__all__ = ["DatabaseHealth"]


class DatabaseHealth:
    def __init__(self, hold_s: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.hold_s = hold_s
        self.clock = clock
        self._refused: tuple[float, Outage] | None = None

    def write_refused(self, outage: Outage) -> None:
        self._refused = (self.clock(), outage)

    def refusing_writes(self) -> Outage | None:
        """The last refusal, while it is at most ``hold_s`` old."""
        if self._refused is None:
            return None
        at, outage = self._refused
        if self.clock() - at > self.hold_s:
            self._refused = None
            return None
        return outage
