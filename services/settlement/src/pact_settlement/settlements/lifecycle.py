"""How a locked settlement ends: release to the seller, or refund (+ slash) to the buyer.

Shared by the delivery endpoints (REVEAL, challenges) and the sweeper, so a settlement ends
the same way whoever ends it. Every ending is one rail step through the two-phase executor
(:mod:`.rail_steps`) and one state-machine transition, and every terminal transition carries
its signed RECEIPT (:class:`LifecycleApplier`): the RECEIPT is written by the transition
itself (``settlements.receipt_json``) and appended to the transcript in the same transaction.

Faults are objective only (docs/protocol.md, "State machine"): a missed delivery deadline, an
invalid proof (the REVEAL does not hash to the COMMIT), or an upheld challenge. A fault refunds
the buyer and, when a seller bond is held, slashes it to the buyer (``slashed``); with no bond
held the settlement ends ``refunded``. Both carry the failure code.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

import structlog
from pact_schema import FailureCode
from sqlalchemy.ext.asyncio import AsyncSession

from pact_settlement.config import SettlementSettings
from pact_settlement.kit.money import decimal_text
from pact_settlement.kit.observability import Metrics
from pact_settlement.kit.time import from_ms
from pact_settlement.rails.base import RailError, RailStep
from pact_settlement.rails.clients import RailClients
from pact_settlement.rails.models import RailOperation
from pact_settlement.receipts.service import ReceiptIssuer
from pact_settlement.settlements import state_machine
from pact_settlement.settlements.models import Settlement
from pact_settlement.settlements.rail_steps import (
    PlannedTransition,
    RailStepExecutor,
    StepOutcome,
    StepPlan,
    TransitionApplier,
)
from pact_settlement.settlements.service import complete_create_record
from pact_settlement.settlements.state_machine import (
    TERMINAL_STATES,
    SettlementEventType,
)
from pact_settlement.transcripts.repository import TranscriptRepository

__all__ = ["Lifecycle", "LifecycleApplier"]

log = structlog.get_logger(__name__)
E = SettlementEventType


class LifecycleApplier(TransitionApplier):
    """The state-machine transition, plus the signed RECEIPT on every terminal one."""

    def __init__(self, issuer: ReceiptIssuer, metrics: Metrics) -> None:
        super().__init__(metrics)
        self.issuer = issuer
        self.lifecycle_metrics = metrics

    def now(self) -> datetime:
        return from_ms(self.issuer.clock())

    async def apply(
        self,
        session: AsyncSession,
        settlement: Settlement,
        planned: PlannedTransition,
        *,
        plan: StepPlan,
        operation: RailOperation | None,
        error: RailError | None = None,
    ) -> None:
        await self.transition(
            session,
            settlement,
            planned,
            actor=plan.actor,
            request_id=plan.request_id,
            operation=operation,
            error=error,
        )

    async def resolved_later(
        self,
        session: AsyncSession,
        settlement: Settlement,
        operation: RailOperation,
        plan: StepPlan,
    ) -> None:
        """A create answered 202 while its lock was in flight: now that the lock is resolved,
        its idempotency record gets the answer a first request would have had."""
        if plan.step is RailStep.LOCK and plan.request_key:
            await complete_create_record(session, settlement, plan.request_key)

    async def transition(
        self,
        session: AsyncSession,
        settlement: Settlement,
        planned: PlannedTransition,
        *,
        actor: str,
        request_id: str | None,
        operation: RailOperation | None = None,
        error: RailError | None = None,
        values: dict[str, Any] | None = None,
    ) -> None:
        target = state_machine.target_of(settlement, planned.event)
        row_values = self.values(settlement, planned, error, now=self.now())
        row_values.update(values or {})
        receipt: dict[str, Any] | None = None
        if target in TERMINAL_STATES:
            receipt = self.issuer.sign(self.issuer.message(settlement, target, row_values))
            row_values["receipt_json"] = self.issuer.to_text(receipt)
        data = dict(planned.data)
        if operation is not None:
            data = self.event_data(planned, operation, error)
        await state_machine.transition(
            session,
            settlement,
            planned.event,
            actor=actor,
            reason=planned.reason or (error.detail if error else None),
            data=data,
            values=row_values,
            request_id=request_id,
        )
        self.lifecycle_metrics.transitions.labels(planned.event.value, target.value).inc()
        if receipt is not None:
            await TranscriptRepository.from_session(session).store(
                settlement_id=settlement.id,
                kind="RECEIPT",
                envelope=receipt,
                message_hash_hex=str(receipt["message_hash_hex"]),
                signer=self.issuer.public_key_b58,
            )
            await session.flush()
            self.lifecycle_metrics.receipts.labels(target.value).inc()
            log.info(
                "settlement.closed",
                intent_id=settlement.intent_id,
                settlement_id=settlement.id,
                outcome=target.value,
                failure_code=settlement.failure_code,
                rail=settlement.rail,
            )


class Lifecycle:
    """Ending a settlement: one rail step + one transition (+ RECEIPT)."""

    def __init__(
        self,
        session: AsyncSession,
        *,
        settings: SettlementSettings,
        metrics: Metrics,
        applier: LifecycleApplier,
        clients: RailClients | None = None,
    ) -> None:
        self.session = session
        self.settings = settings
        self.metrics = metrics
        self.applier = applier
        self.clients = clients  # the app's gateways, for the stripe and evm rails

    @property
    def clock(self) -> Callable[[], int]:
        return self.applier.issuer.clock

    def executor(self) -> RailStepExecutor:
        return RailStepExecutor(
            self.session,
            settings=self.settings,
            metrics=self.metrics,
            applier=self.applier,
            clients=self.clients,
        )

    async def release(
        self, settlement: Settlement, *, actor: str, request_id: str | None = None
    ) -> StepOutcome:
        """Pay the seller and return the bond (``delivered`` → ``released``)."""
        return await self.executor().run(
            settlement,
            StepPlan(
                step=RailStep.RELEASE,
                on_succeeded=PlannedTransition(
                    E.RELEASED, reason="challenge window closed with no upheld challenge"
                ),
                actor=actor,
                request_id=request_id,
            ),
        )

    async def close_stream(
        self,
        settlement: Settlement,
        *,
        stop_code: str | None,
        reason: str,
        chunks: int | None,
        actor: str,
        request_id: str | None = None,
    ) -> StepOutcome:
        """End a stream at its highest recorded voucher: ONE rail step pays the seller exactly
        that voucher's amount and refunds the buyer the rest (``streaming`` → ``released``);
        with no voucher above 0 the buyer is refunded in full (``refunded``).
        ``stop_code`` ``None``: the stream ran to its budget (a fulfilled receipt)."""
        values: dict[str, Any] = {"stream_stop_code": stop_code, "stream_stop_reason": reason}
        if chunks is not None:
            values["stream_chunks"] = chunks
        paid = settlement.stream_paid_amount or Decimal(0)
        data = {"paid_amount": decimal_text(paid), "stop_code": stop_code}
        if paid > 0:
            plan = StepPlan(
                step=RailStep.RELEASE_PARTIAL,
                amount=paid,
                on_succeeded=PlannedTransition(
                    E.STREAM_CLOSED, reason=reason, data=data, values=values
                ),
                actor=actor,
                request_id=request_id,
            )
        else:
            code = stop_code or FailureCode.SETTLEMENT_FAILED
            plan = StepPlan(
                step=RailStep.REFUND,
                on_succeeded=PlannedTransition(
                    E.REFUNDED,
                    failure_code=code,
                    failure_detail=reason,
                    reason=reason,
                    data=data,
                    values=values,
                ),
                actor=actor,
                request_id=request_id,
            )
        return await self.executor().run(settlement, plan)

    async def fault(
        self,
        settlement: Settlement,
        code: str,
        detail: str,
        *,
        actor: str,
        request_id: str | None = None,
        data: dict[str, Any] | None = None,
        values: dict[str, Any] | None = None,
    ) -> StepOutcome:
        """Refund the buyer; slash the seller's bond to the buyer when one is held.
        ``values``: further columns the terminal transition sets (JSON, e.g. the reveal
        digest)."""
        return await self._refund(
            settlement,
            code,
            detail,
            slash=settlement.bond_locked > 0,
            actor=actor,
            request_id=request_id,
            data=data,
            values=values,
        )

    async def cancel(
        self,
        settlement: Settlement,
        code: str,
        detail: str,
        *,
        actor: str,
        request_id: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> StepOutcome:
        """Refund the buyer in full and return the seller's bond: nothing was delivered and
        nobody is at fault that the records can show (the seller's own abort before delivery,
        or a trade nobody started delivering in time)."""
        return await self._refund(
            settlement, code, detail, slash=False, actor=actor, request_id=request_id, data=data
        )

    async def _refund(
        self,
        settlement: Settlement,
        code: str,
        detail: str,
        *,
        slash: bool,
        actor: str,
        request_id: str | None,
        data: dict[str, Any] | None,
        values: dict[str, Any] | None = None,
    ) -> StepOutcome:
        return await self.executor().run(
            settlement,
            StepPlan(
                step=RailStep.SLASH if slash else RailStep.REFUND,
                on_succeeded=PlannedTransition(
                    E.SLASHED if slash else E.REFUNDED,
                    failure_code=code,
                    failure_detail=detail,
                    reason=detail,
                    data={"code": code, **(data or {})},
                    values=dict(values or {}),
                ),
                actor=actor,
                request_id=request_id,
            ),
        )
