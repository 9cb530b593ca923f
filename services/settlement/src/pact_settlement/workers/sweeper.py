"""The sweeper: no settlement hangs (docs/decisions.md, decision 3).

Each pass ends every open settlement that is due, one settlement per transaction:

* ``locked`` past ``commit_by_at`` (the quote's expiry + ``COMMIT_GRACE_MS``, at most the
  delivery deadline) with no COMMIT → refund the buyer in full and return the bond
  (``refunded``, ``COMMIT_WINDOW_MISSED``): nobody is delivering this trade, so its money must
  not stay locked until a deadline that may be a day away;
* ``committed`` (or a ``locked`` one made before the commit window existed) past
  ``delivery_deadline_at`` → refund the buyer and slash the seller's bond to the buyer
  (``slashed``; ``refunded`` when no bond is held), failure code ``DELIVERY_DEADLINE_MISSED``;
* ``streaming`` past ``delivery_deadline_at`` (nobody closed the stream) → closed at the last
  checkpointed voucher: that amount to the seller, the rest back to the buyer
  (``STREAM_DEADLINE_PASSED``);
* ``delivered`` past ``challenge_ends_at`` with no upheld challenge → ``released`` (seller
  paid, bond returned).

Several replicas may sweep at once: candidates are read without locks, then each one is
re-selected ``FOR UPDATE SKIP LOCKED`` *with its due condition* (Postgres), so a settlement
another sweeper holds is skipped and one that has moved on is not touched; on SQLite every
transaction is ``BEGIN IMMEDIATE`` (one writer), and the re-check under it is as safe. The
state machine's compare-and-set backs both up: a settlement transitions once.

A settlement whose rail step is stuck never holds the front of the queue: while its step is in
flight (pending: its caller's or the reconciler's) or failed and waiting for its retry time (a
pause doubling from ``SWEEP_INTERVAL_S``, capped at an hour), or failed ``RAIL_MAX_ATTEMPTS``
times (an operator's), it is not a candidate; candidates come by next attempt (when they fell
due, or when their failed step may be retried).

Bound: a settlement ends within its deadline (or window end) + ``SWEEP_INTERVAL_S`` + the rail
call (immediate for the ledger), whatever other settlements' rail steps are doing; an external
rail whose answer is lost is finished by the reconciler after ``RECONCILE_GRACE_S``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import structlog
from pact_schema import FailureCode, now_ms
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from pact_settlement.config import SettlementSettings
from pact_settlement.kit.errors import is_unavailable
from pact_settlement.kit.observability import Metrics
from pact_settlement.kit.time import from_ms, session_now
from pact_settlement.rails.clients import RailClients
from pact_settlement.settlements.lifecycle import Lifecycle, LifecycleApplier
from pact_settlement.settlements.rail_steps import StepStatus
from pact_settlement.settlements.repository import SettlementRepository
from pact_settlement.settlements.state_machine import SettlementState

__all__ = ["SweepReport", "Sweeper"]

log = structlog.get_logger(__name__)
ACTOR = "sweeper"


@dataclass
class SweepReport:
    ended: dict[str, str] = field(default_factory=dict)  # intent_id → outcome
    in_flight: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # the rail refused; retried after a pause
    skipped: int = 0
    errors: int = 0

    @property
    def handled(self) -> int:
        return len(self.ended) + len(self.in_flight)


class Sweeper:
    name = "sweeper"

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        settings: SettlementSettings,
        metrics: Metrics,
        applier: LifecycleApplier,
        clock: Callable[[], int] = now_ms,
        clients: RailClients | None = None,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.settings = settings
        self.metrics = metrics
        self.applier = applier
        self.clock = clock
        self.clients = clients  # the app's gateways, for the stripe and evm rails

    @property
    def interval_s(self) -> float:
        return self.settings.sweep_interval_s

    async def run_once(self, *, now: datetime | None = None) -> SweepReport:
        now = now or from_ms(self.clock())
        report = SweepReport()
        async with self.sessionmaker() as session, session.begin():
            ids = await SettlementRepository.from_session(session).due_ids(
                now,
                self.settings.worker_batch_size,
                retry_now=session_now(session),
                max_attempts=self.settings.rail_max_attempts,
            )
        for settlement_id in ids:
            async with self.sessionmaker() as session:
                try:
                    await self._end(session, settlement_id, now, report)
                    await session.commit()
                except Exception as exc:
                    with contextlib.suppress(Exception):
                        await session.rollback()
                    report.errors += 1
                    if is_unavailable(exc):
                        # The database refuses (down, read-only, full): the rest of the batch
                        # would fail the same way. End the pass; the runner backs off.
                        self.metrics.sweeps.labels("unavailable").inc()
                        raise
                    self.metrics.sweeps.labels("error").inc()
                    log.exception("sweeper.error", settlement_id=settlement_id)
        return report

    async def _end(
        self, session: AsyncSession, settlement_id: str, now: datetime, report: SweepReport
    ) -> None:
        settlement = await SettlementRepository.from_session(session).lock_if_due(
            settlement_id, now
        )
        if settlement is None:
            report.skipped += 1
            self.metrics.sweeps.labels("skipped").inc()
            return
        lifecycle = Lifecycle(
            session,
            settings=self.settings,
            metrics=self.metrics,
            applier=self.applier,
            clients=self.clients,
        )
        intent_id = settlement.intent_id
        if settlement.state == SettlementState.DELIVERED:
            outcome = await lifecycle.release(settlement, actor=ACTOR)
        elif settlement.state == SettlementState.STREAMING:
            # Nobody closed the stream by its deadline (a vanished buyer or seller): it ends at
            # the last checkpointed voucher, the rest refunded.
            outcome = await lifecycle.close_stream(
                settlement,
                stop_code=FailureCode.STREAM_DEADLINE_PASSED,
                reason=f"the stream was not closed by its delivery deadline "
                f"{settlement.delivery_deadline_ms}: closed at the last checkpoint",
                chunks=None,
                actor=ACTOR,
            )
        elif (
            settlement.state == SettlementState.LOCKED
            and settlement.commit_by_at is not None
            and settlement.commit_by_at <= now
        ):
            outcome = await lifecycle.cancel(
                settlement,
                FailureCode.COMMIT_WINDOW_MISSED,
                f"no COMMIT by {settlement.commit_by_at.isoformat()} (the quote's expiry plus "
                "the commit grace): nobody is delivering this trade",
                actor=ACTOR,
            )
        else:
            outcome = await lifecycle.fault(
                settlement,
                FailureCode.DELIVERY_DEADLINE_MISSED,
                f"no valid REVEAL before the delivery deadline {settlement.delivery_deadline_ms}",
                actor=ACTOR,
            )
        if outcome.status is StepStatus.IN_FLIGHT:
            report.in_flight.append(intent_id)
            self.metrics.sweeps.labels("in_flight").inc()
            return
        if outcome.status is StepStatus.FAILED:  # logged by the executor (rail_step.failed)
            report.failed.append(intent_id)
            self.metrics.sweeps.labels("failed").inc()
            return
        report.ended[intent_id] = settlement.state
        self.metrics.sweeps.labels(settlement.state).inc()
        log.info(
            "sweeper.ended",
            intent_id=intent_id,
            settlement_id=settlement.id,
            outcome=settlement.state,
            rail_step=outcome.operation.step,
        )
