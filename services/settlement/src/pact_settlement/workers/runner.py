"""Run the workers as asyncio tasks next to the API, and stop them gracefully.

Each worker's ``run_once()`` is called, then the loop sleeps its interval (or until stop is
requested). A failing pass is logged and counted, never fatal. A pass that failed because the
database is unavailable or refuses writes (read-only, disk full; see
:func:`pact_settlement.kit.errors.database_outage`) is logged as one warning without a
traceback, and the worker backs off: its pause doubles from its interval up to
``WORKER_MAX_BACKOFF_S`` until a pass succeeds again. Workers end a pass at the first such
error instead of trying every item of their batch against a database that refuses them all.

On shutdown the stop event is set and running passes are awaited (up to ``stop_timeout_s``;
then cancelled: a pass is transaction-per-settlement, so a cancelled one leaves nothing
half-done that the next pass or the reconciler cannot finish).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from typing import Any, Protocol

import structlog

from pact_settlement.kit.errors import database_outage
from pact_settlement.kit.observability import Metrics

__all__ = ["Worker", "WorkerRunner"]

log = structlog.get_logger(__name__)


class Worker(Protocol):
    name: str

    @property
    def interval_s(self) -> float: ...

    async def run_once(self) -> Any: ...


class WorkerRunner:
    def __init__(
        self,
        workers: list[Worker],
        *,
        metrics: Metrics,
        stop_timeout_s: float = 10.0,
        max_backoff_s: float = 30.0,
    ) -> None:
        self.workers = workers
        self.metrics = metrics
        self.stop_timeout_s = stop_timeout_s
        self.max_backoff_s = max_backoff_s
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        for worker in self.workers:
            task = asyncio.create_task(self._loop(worker), name=f"pact-settlement-{worker.name}")
            self._tasks.append(task)
        log.info("workers.started", workers=[w.name for w in self.workers])

    async def _loop(self, worker: Worker) -> None:
        # A random first delay spreads replicas that start together.
        await self._sleep(random.uniform(0, worker.interval_s))
        outages = 0
        while not self._stop.is_set():
            pause = worker.interval_s
            try:
                await worker.run_once()
            except Exception as exc:
                outage = database_outage(exc)
                if outage is None:
                    self.metrics.worker_runs.labels(worker.name, "error").inc()
                    log.exception("workers.pass_failed", worker=worker.name)
                else:
                    outages += 1
                    pause = self.backoff(worker.interval_s, outages)
                    self.metrics.worker_runs.labels(worker.name, "unavailable").inc()
                    log.warning(
                        "workers.database_unavailable",
                        worker=worker.name,
                        reason=outage,
                        failed_passes=outages,
                        retry_in_s=round(pause, 3),
                        error=str(exc)[:200],
                    )
            else:
                outages = 0
                self.metrics.worker_runs.labels(worker.name, "ok").inc()
            await self._sleep(pause)

    def backoff(self, interval_s: float, outages: int) -> float:
        """The pause after ``outages`` passes in a row failed on a database outage."""
        pause: float = interval_s * 2.0 ** min(outages, 32)
        return min(pause, max(interval_s, self.max_backoff_s))

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), timeout=seconds)

    async def stop(self) -> None:
        self._stop.set()
        if not self._tasks:
            return
        done, pending = await asyncio.wait(self._tasks, timeout=self.stop_timeout_s)
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        log.info("workers.stopped", cancelled=len(pending), finished=len(done))
