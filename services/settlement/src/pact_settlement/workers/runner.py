"""Run the workers as asyncio tasks next to the API, and stop them gracefully.

Each worker's ``run_once()`` is called, then the loop sleeps its interval (or until stop is
requested). A failing pass is logged and counted, never fatal. On shutdown the stop event is
set and running passes are awaited (up to ``stop_timeout_s``; then cancelled: a pass is
transaction-per-settlement, so a cancelled one leaves nothing half-done that the next pass or
the reconciler cannot finish).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from typing import Any, Protocol

import structlog

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
        self, workers: list[Worker], *, metrics: Metrics, stop_timeout_s: float = 10.0
    ) -> None:
        self.workers = workers
        self.metrics = metrics
        self.stop_timeout_s = stop_timeout_s
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
        while not self._stop.is_set():
            try:
                await worker.run_once()
            except Exception:
                self.metrics.worker_runs.labels(worker.name, "error").inc()
                log.exception("workers.pass_failed", worker=worker.name)
            else:
                self.metrics.worker_runs.labels(worker.name, "ok").inc()
            await self._sleep(worker.interval_s)

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
