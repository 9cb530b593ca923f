"""The reconciler: resolves rail operations left ``pending`` (docs/decisions.md, decision 3).

A non-transactional rail step is committed as ``pending`` before its call; a crash, timeout
or retryable error between the call and its resolution leaves it so. Each pass:

1. claims due operations in one short transaction: ``status = 'pending'`` and a lease that ran
   out (``lease_until <= now``; the first lease is ``RECONCILE_GRACE_S`` after recording, so an
   operation whose first call may still be running is never taken), ``FOR UPDATE SKIP LOCKED``
   on Postgres so replicas split the work; the claim sets a new lease and commits;
2. for each, in its own session: :meth:`RailStepExecutor.reconcile` asks ``rail.status(key)``
   outside any transaction, then applies the recorded outcome, re-issues the step with the
   SAME idempotency key (``not_found``), or backs off (``pending`` / rail unreachable:
   exponential, capped at an hour); the resolution and the planned transition commit
   together.

Each pass then does the same for seller payouts left ``pending``
(:func:`pact_settlement.payouts.service.reconcile_payout`): claimed by lease, resolved from the
rail's ``payout_status`` (or paid again under the same key when the rail never saw it).

Safe with several replicas: an operation is held by one lease at a time, and even when two
reconcilers race (a lease expired mid-call), rails are idempotent on the key and the
resolution re-locks the operation and only applies it while it is still pending.
"""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from pact_settlement.config import SettlementSettings
from pact_settlement.kit.errors import is_unavailable
from pact_settlement.kit.observability import Metrics
from pact_settlement.kit.time import session_now
from pact_settlement.payouts.repository import PayoutRepository
from pact_settlement.payouts.service import reconcile_payout
from pact_settlement.rails.clients import RailClients
from pact_settlement.rails.repository import RailOperationRepository
from pact_settlement.settlements.rail_steps import RailStepExecutor, TransitionApplier

__all__ = ["Reconciler"]

log = structlog.get_logger(__name__)


class Reconciler:
    name = "reconciler"

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        settings: SettlementSettings,
        metrics: Metrics,
        applier: TransitionApplier | None = None,
        clients: RailClients | None = None,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.settings = settings
        self.metrics = metrics
        self.applier = applier or TransitionApplier(metrics)
        self.clients = clients  # the app's gateways, for the stripe and evm rails

    @property
    def interval_s(self) -> float:
        return self.settings.reconcile_interval_s

    async def run_once(self, *, now: datetime | None = None) -> int:
        """One pass; returns how many operations were handled."""
        async with self.sessionmaker() as session, session.begin():
            now = now or session_now(session)
            lease_until = now + timedelta(seconds=self.settings.reconcile_grace_s)
            claimed = await RailOperationRepository.from_session(session).claim_due(
                now=now, lease_until=lease_until, limit=self.settings.worker_batch_size
            )
            work = [(op.id, op.step, op.settlement_id) for op in claimed]
        for op_id, step, settlement_id in work:
            async with self.sessionmaker() as session:
                try:
                    outcome = await RailStepExecutor(
                        session,
                        settings=self.settings,
                        metrics=self.metrics,
                        applier=self.applier,
                        clients=self.clients,
                    ).reconcile(op_id)
                    await session.commit()
                except Exception as exc:
                    with contextlib.suppress(Exception):
                        await session.rollback()
                    if is_unavailable(exc):  # end the pass; the runner backs off
                        self.metrics.reconciles.labels(step, "unavailable").inc()
                        raise
                    self.metrics.reconciles.labels(step, "error").inc()
                    log.exception(
                        "reconciler.error", operation_id=op_id, settlement_id=settlement_id
                    )
                    continue
            self.metrics.reconciles.labels(step, outcome.status.value).inc()
            log.info(
                "reconciler.resolved",
                operation_id=op_id,
                settlement_id=settlement_id,
                step=step,
                outcome=outcome.status.value,
                applied=outcome.applied,
            )
        return len(work) + await self._payouts(now)

    async def _payouts(self, now: datetime) -> int:
        """Pending payouts whose lease ran out: resolved from the rail's records."""
        async with self.sessionmaker() as session, session.begin():
            lease_until = now + timedelta(seconds=self.settings.reconcile_grace_s)
            claimed = await PayoutRepository.from_session(session).claim_due(
                now=now, lease_until=lease_until, limit=self.settings.worker_batch_size
            )
        for payout_id in claimed:
            async with self.sessionmaker() as session:
                try:
                    status = await reconcile_payout(
                        session, payout_id, settings=self.settings, clients=self.clients
                    )
                    await session.commit()
                except Exception as exc:
                    with contextlib.suppress(Exception):
                        await session.rollback()
                    if is_unavailable(exc):
                        raise
                    log.exception("reconciler.payout_error", payout_id=payout_id)
                    continue
            log.info("reconciler.payout_resolved", payout_id=payout_id, status=status)
        return len(claimed)
