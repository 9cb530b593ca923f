"""Card authorisations must never lapse silently (the Stripe rail's expiry sweep).

Stripe keeps an uncaptured card authorisation about 7 days (``capture_before`` when Stripe
reports it); after that the hold is voided and the seller can no longer be paid from it. The
Stripe rail records when each hold lapses (``rail_bindings.hold_expires_at``). Each pass takes
the holds that lapse within ``STRIPE_CAPTURE_MARGIN_S`` and, one settlement per transaction:

* ``delivered`` (proof accepted, the challenge window may still be open): **capture** now, so
  the money is taken from the card into the operator's Stripe balance before the hold lapses.
  The settlement stays ``delivered``: its release later converges on the captured
  PaymentIntent (same idempotency key ``settlement-{id}-release``), and a refund or slash
  after an upheld challenge refunds the captured charge. The capture is noted on the
  settlement's event trail (``settlement.funds_captured``). It moves no money between the
  parties — it only changes where the escrowed funds sit — so it is not a rail *step*;
* ``locked`` / ``committed`` (not delivered in time to keep the hold): **cancel** the
  authorisation through the normal refund step, ending ``refunded`` with
  ``DURATION_EXCEEDED``.

A hold that lapsed anyway (Stripe cancelled it first) ends ``refunded`` with
``FAILED_ESCROW`` here or through the webhook, loudly logged. A settlement with a rail step in
flight is left to that step / the reconciler. Safe with several replicas: each candidate is
re-read ``FOR UPDATE`` with its condition; the capture is idempotent on its key.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

import structlog
from pact_schema import FailureCode, now_ms
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from pact_settlement.config import SettlementSettings
from pact_settlement.kit.errors import is_unavailable
from pact_settlement.kit.observability import Metrics
from pact_settlement.kit.time import from_ms, session_now
from pact_settlement.rails.base import RailOpStatus, RailStep
from pact_settlement.rails.bindings import RailBinding, RailBindingRepository
from pact_settlement.rails.clients import RailClients
from pact_settlement.rails.repository import RailOperationRepository, rail_idempotency_key
from pact_settlement.rails.stripe.errors import StripeGatewayError, StripeUnexpectedStateError
from pact_settlement.rails.stripe.results import PaymentStatus
from pact_settlement.settlements import state_machine
from pact_settlement.settlements.models import Settlement
from pact_settlement.settlements.rail_steps import (
    PlannedTransition,
    RailStepExecutor,
    StepPlan,
    TransitionApplier,
)
from pact_settlement.settlements.repository import SettlementRepository
from pact_settlement.settlements.state_machine import SettlementEventType

__all__ = ["AuthorizationExpirySweeper", "ExpiryReport"]

log = structlog.get_logger(__name__)
ACTOR: Final = "authorization-expiry"
HOLDING: Final = ("locked", "committed", "delivered")
FUNDS_CAPTURED: Final = "settlement.funds_captured"


async def _holds_expiring(
    session: AsyncSession, rail: str, *, before: datetime, limit: int
) -> list[str]:
    """Holding settlements whose hold on ``rail`` lapses before ``before``, soonest first (the
    sweep's candidates; read without locks)."""
    rows = await session.execute(
        select(RailBinding.settlement_id)
        .join(Settlement, Settlement.id == RailBinding.settlement_id)
        .where(
            RailBinding.rail == rail,
            RailBinding.hold_expires_at.is_not(None),
            RailBinding.hold_expires_at <= before,
            Settlement.state.in_(HOLDING),
        )
        .order_by(RailBinding.hold_expires_at, RailBinding.settlement_id)
        .limit(limit)
    )
    return [str(r) for r in rows.scalars()]


@dataclass
class ExpiryReport:
    captured: list[str] = field(default_factory=list)  # intent ids
    canceled: list[str] = field(default_factory=list)
    lapsed: list[str] = field(default_factory=list)
    skipped: int = 0
    errors: int = 0


class AuthorizationExpirySweeper:
    name = "stripe-authorization-expiry"

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        settings: SettlementSettings,
        metrics: Metrics,
        clients: RailClients,
        applier: TransitionApplier | None = None,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.settings = settings
        self.metrics = metrics
        self.clients = clients
        self.applier = applier or TransitionApplier()
        self.clock = clock

    @property
    def interval_s(self) -> float:
        # Holds are acted on hours before they lapse; a pass a minute is plenty.
        return max(self.settings.sweep_interval_s, 60.0)

    async def run_once(self, *, now: datetime | None = None) -> ExpiryReport:
        report = ExpiryReport()
        if "stripe" not in self.settings.enabled_rails:
            return report
        now = now or from_ms(self.clock())
        before = now + timedelta(seconds=self.settings.stripe.capture_margin_s)
        async with self.sessionmaker() as session:
            ids = await _holds_expiring(
                session, "stripe", before=before, limit=self.settings.worker_batch_size
            )
        for settlement_id in ids:
            async with self.sessionmaker() as session:
                try:
                    await self._handle(session, settlement_id, before, report)
                    await session.commit()
                except Exception as exc:
                    with contextlib.suppress(Exception):
                        await session.rollback()
                    report.errors += 1
                    if is_unavailable(exc):  # end the pass; the runner backs off
                        raise
                    log.exception("authorization_expiry.error", settlement_id=settlement_id)
        return report

    async def _due(
        self, session: AsyncSession, settlement_id: str, before: datetime
    ) -> tuple[Settlement, RailBinding] | None:
        """The settlement, locked, if its hold is still due and no rail step is in flight."""
        settlement = await SettlementRepository.from_session(session).get_by_id(
            settlement_id, for_update=True
        )
        binding = await RailBindingRepository.from_session(session).get_for(settlement_id)
        if (
            settlement is None
            or binding is None
            or settlement.state not in HOLDING
            or binding.hold_expires_at is None
            or binding.hold_expires_at > before
        ):
            return None
        ops = await RailOperationRepository.from_session(session).for_settlement(settlement_id)
        if any(op.status == RailOpStatus.PENDING.value for op in ops):
            return None
        return settlement, binding

    async def _handle(
        self, session: AsyncSession, settlement_id: str, before: datetime, report: ExpiryReport
    ) -> None:
        due = await self._due(session, settlement_id, before)
        if due is None:
            report.skipped += 1
            return
        settlement, binding = due
        if settlement.state == "delivered" and binding.external_id:
            await self._capture(session, settlement, binding, before, report)
            return
        expires = binding.hold_expires_at.isoformat() if binding.hold_expires_at else "?"
        await self._cancel(
            session,
            settlement,
            FailureCode.DURATION_EXCEEDED,
            f"the card authorisation lapses at {expires}, before the settlement could "
            "complete; it was cancelled and the buyer was not charged",
        )
        report.canceled.append(settlement.intent_id)

    async def _capture(
        self,
        session: AsyncSession,
        settlement: Settlement,
        binding: RailBinding,
        before: datetime,
        report: ExpiryReport,
    ) -> None:
        settlement_id, pi = settlement.id, str(binding.external_id)
        await session.commit()  # no transaction (or row lock) is held during the Stripe call
        try:
            state = await self.clients.stripe().capture(
                settlement_id,
                pi,
                idempotency_key=rail_idempotency_key(settlement_id, RailStep.RELEASE),
            )
        except StripeUnexpectedStateError as exc:
            if exc.state.status is not PaymentStatus.CANCELED:
                raise
            due = await self._due(session, settlement_id, before)
            if due is None:
                return
            await self._cancel(
                session,
                due[0],
                FailureCode.FAILED_ESCROW,
                f"the card authorisation {pi} lapsed before it could be captured; the buyer "
                "was not charged and the seller could not be paid from it",
            )
            log.error("authorization_expiry.lapsed", settlement_id=settlement_id, payment_intent=pi)
            report.lapsed.append(settlement.intent_id)
            return
        except StripeGatewayError:
            raise  # logged by run_once; the next pass retries with the same key
        due = await self._due(session, settlement_id, before)
        if due is None:
            return
        row, fresh = due
        fresh.hold_expires_at = None  # captured funds do not lapse
        now = session_now(session)
        fresh.params = {**fresh.params, "captured_at": now.isoformat()}
        fresh.updated_at = now
        await state_machine.note(
            session,
            row,
            FUNDS_CAPTURED,
            actor=ACTOR,
            reason="the card authorisation was about to lapse: funds captured into escrow; "
            "release or refund follows the challenge window",
            data={"payment_intent": pi, "amount_minor": state.amount_minor},
        )
        log.info("authorization_expiry.captured", settlement_id=settlement_id, payment_intent=pi)
        report.captured.append(row.intent_id)

    async def _cancel(
        self, session: AsyncSession, settlement: Settlement, code: str, detail: str
    ) -> None:
        await RailStepExecutor(
            session,
            settings=self.settings,
            metrics=self.metrics,
            applier=self.applier,
            clients=self.clients,
        ).run(
            settlement,
            StepPlan(
                step=RailStep.REFUND,
                on_succeeded=PlannedTransition(
                    SettlementEventType.REFUNDED,
                    failure_code=code,
                    failure_detail=detail,
                    reason=detail,
                    data={"code": code},
                ),
                actor=ACTOR,
            ),
        )
        log.warning(
            "authorization_expiry.canceled",
            settlement_id=settlement.id,
            intent_id=settlement.intent_id,
            code=code,
        )
