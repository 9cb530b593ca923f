"""Two-phase rail steps: EVERY money movement (lock, release, refund, slash) goes through here.

docs/decisions.md, decision 3: "a rail call that may have happened is recorded as pending
*before* it is made and resolved afterwards from the rail's own records by the reconciler".

How to use it (rails authors: this is the only entry point; do not call a rail directly)
--------------------------------------------------------------------------------------

::

    executor = RailStepExecutor(session, settings=settings, metrics=metrics, applier=applier)
    outcome = await executor.run(settlement, StepPlan(
        step=RailStep.RELEASE,
        on_succeeded=PlannedTransition(SettlementEventType.RELEASED),
        actor="sweeper",
    ))
    outcome.status   # StepStatus.SUCCEEDED | FAILED | IN_FLIGHT

``settlement`` should be read ``FOR UPDATE`` by the caller in ``session``. The rail is
``get_rail(settlement.rail, …)`` from :mod:`pact_settlement.rails.registry` (or ``rail=`` for
tests). A :class:`StepPlan` says what resolving the step means for the settlement: the
transition on success, and optionally the transition on a definite failure (``None``: the
settlement keeps its state and the operation is ``failed``; a later :meth:`run` of the same
step re-opens it under the same idempotency key, up to ``RAIL_MAX_ATTEMPTS``). The plan is
stored with the operation (``rail_operations.plan``) so the reconciler can finish the step
after a crash without any request context. Transitions are applied by a
:class:`TransitionApplier` (the settlement lifecycle's one also signs the RECEIPT of a
terminal outcome), always through :mod:`.state_machine`.

The contract
------------

* One ``rail_operations`` row per (settlement, step), idempotency key
  ``settlement-{id}-{step}`` (unique). Rails MUST be idempotent on that key: a repeated call
  returns the first call's result and moves no money again; ``status(key)`` reports what the
  rail's own records say (``succeeded`` / ``failed`` / ``pending`` / ``not_found``).
* At most one step is in flight per settlement: opening a step while another step's operation
  is pending raises :class:`StepInFlight` (409). Opening a step whose operation already exists
  does not call the rail again: ``succeeded`` → the transition is applied if still due;
  ``pending`` → :attr:`StepStatus.IN_FLIGHT` (its owner or the reconciler finishes it);
  ``failed`` → re-opened (``attempts + 1``) when the plan has no failure transition.
* ``transactional`` rails (the ledger): the record, the movement (inside a SAVEPOINT, so a
  refusal moves nothing), the resolution and the transition all happen in the caller's
  transaction; nothing is committed here. Nothing can be left pending.
* Non-transactional rails (Stripe, EVM):

  1. the operation is recorded ``pending`` (with ``lease_until = now + RECONCILE_GRACE_S``) in
     the caller's session and the session is **committed** — together with whatever the
     caller wrote before (e.g. the new settlement and its idempotency record). This commit
     also releases the caller's row locks: the executor is, by design, a transaction boundary;
  2. the rail is called with NO database transaction open, bounded by
     ``RAIL_CALL_TIMEOUT_S``;
  3. a new transaction in the same session re-locks the settlement and the operation; if the
     operation is still pending it is resolved (``succeeded`` / ``failed``) and the planned
     transition applied. The caller (request / worker) commits it.

  A crash, timeout or ``RailError(retryable=True)`` between 1 and 3 leaves the operation
  pending: :attr:`StepStatus.IN_FLIGHT` is returned and the **reconciler**
  (:meth:`RailStepExecutor.reconcile`, driven by ``workers.Reconciler``) takes it once its
  lease ran out, asks ``rail.status(key)``, and either applies the recorded outcome, retries the
  step with the SAME key (``not_found``: the call never reached the rail), or leaves it for a
  later pass (``pending``). Never a second charge (same key), never a lost lock (the pending
  row is committed before the call).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

import structlog
from pact_schema import FailureCode
from sqlalchemy.ext.asyncio import AsyncSession

from pact_settlement.config import SettlementSettings
from pact_settlement.kit.deadline import time_left
from pact_settlement.kit.errors import ConflictError, ProblemCode
from pact_settlement.kit.money import decimal_text
from pact_settlement.kit.observability import Metrics
from pact_settlement.kit.time import session_now
from pact_settlement.rails.base import (
    CheckingRail,
    PartialReleaseRail,
    Rail,
    RailError,
    RailOpStatus,
    RailResult,
    RailSettlement,
    RailStep,
)
from pact_settlement.rails.clients import RailClients
from pact_settlement.rails.models import RailOperation
from pact_settlement.rails.registry import get_rail
from pact_settlement.rails.repository import RailOperationRepository, rail_idempotency_key
from pact_settlement.settlements import state_machine
from pact_settlement.settlements.models import Settlement, SettlementEvent
from pact_settlement.settlements.repository import SettlementRepository
from pact_settlement.settlements.state_machine import SettlementEventType

__all__ = [
    "PlannedTransition",
    "RailStepExecutor",
    "StepExhaustedError",
    "StepInFlightError",
    "StepOutcome",
    "StepPlan",
    "StepStatus",
    "TransitionApplier",
    "rail_view",
]

log = structlog.get_logger(__name__)

#: Longest back-off between two reconciler looks at the same unresolved operation, and between
#: two attempts of a failed release/refund/slash.
MAX_BACKOFF = timedelta(hours=1)


def rail_view(s: Settlement) -> RailSettlement:
    """What a rail is told about a settlement (never the ORM object)."""
    return RailSettlement(
        id=s.id,
        intent_id=s.intent_id,
        buyer=s.buyer,
        seller=s.seller,
        amount=s.amount,
        bond=s.bond_locked,
        asset=s.asset,
        delivery_deadline_at=s.delivery_deadline_at,
        challenge_window=timedelta(milliseconds=s.challenge_window_ms),
    )


@dataclass(frozen=True, slots=True)
class PlannedTransition:
    """A transition to apply when a step resolves. ``failure_code`` ``None`` on a failure
    transition means "the rail's error code" (e.g. INSUFFICIENT_ESCROW for a refused lock)."""

    event: SettlementEventType
    failure_code: str | None = None
    failure_detail: str | None = None
    reason: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    #: Further settlement columns the transition sets (JSON values, e.g. ``reveal_hash_hex``).
    values: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "event": self.event.value,
            "failure_code": self.failure_code,
            "failure_detail": self.failure_detail,
            "reason": self.reason,
            "data": self.data,
            "values": self.values,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> PlannedTransition:
        return cls(
            event=SettlementEventType(raw["event"]),
            failure_code=raw.get("failure_code"),
            failure_detail=raw.get("failure_detail"),
            reason=raw.get("reason"),
            data=dict(raw.get("data") or {}),
            values=dict(raw.get("values") or {}),
        )


@dataclass(frozen=True, slots=True)
class StepPlan:
    step: RailStep
    on_succeeded: PlannedTransition
    on_failed: PlannedTransition | None = None
    actor: str = "system"
    request_id: str | None = None
    #: The Idempotency-Key of the request whose answer is this step's outcome (a create's
    #: lock): when the step resolves after its caller answered "in flight", the applier's
    #: :meth:`TransitionApplier.resolved_later` completes that request's record.
    request_key: str | None = None
    #: A ``release_partial`` step's amount paid to the seller (the rest is refunded); stored
    #: with the plan so the reconciler repeats the same call.
    amount: Decimal | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "amount": decimal_text(self.amount) if self.amount is not None else None,
            "step": self.step.value,
            "on_succeeded": self.on_succeeded.to_json(),
            "on_failed": self.on_failed.to_json() if self.on_failed else None,
            "actor": self.actor,
            "request_id": self.request_id,
            "request_key": self.request_key,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> StepPlan:
        failed = raw.get("on_failed")
        return cls(
            step=RailStep(raw["step"]),
            on_succeeded=PlannedTransition.from_json(raw["on_succeeded"]),
            on_failed=PlannedTransition.from_json(failed) if failed else None,
            actor=str(raw.get("actor") or "system"),
            request_id=raw.get("request_id"),
            request_key=raw.get("request_key"),
            amount=Decimal(raw["amount"]) if raw.get("amount") is not None else None,
        )


class StepStatus(StrEnum):
    SUCCEEDED = "succeeded"  # the rail moved the money; the success transition is applied
    FAILED = "failed"  # the rail definitely refused; the failure transition (if any) applied
    IN_FLIGHT = "in_flight"  # outcome unknown yet; the operation is pending (reconciler)


@dataclass(frozen=True, slots=True)
class StepOutcome:
    status: StepStatus
    operation: RailOperation
    result: RailResult | None = None
    error: RailError | None = None
    applied: bool = False  # this call applied the planned transition


class StepInFlightError(ConflictError):
    """Another rail step of the settlement is pending; it must resolve first."""

    default_code = ProblemCode.STATE_CONFLICT


class StepExhaustedError(ConflictError):
    """The step failed ``RAIL_MAX_ATTEMPTS`` times; an operator has to look at it."""

    def __init__(self, detail: str, **kwargs: Any) -> None:
        super().__init__(detail, code=FailureCode.SETTLEMENT_FAILED, **kwargs)


class TransitionApplier:
    """Applies a planned transition through the state machine. The lifecycle subclasses it
    to add the signed RECEIPT to terminal transitions."""

    def __init__(self, metrics: Metrics | None = None) -> None:
        self.metrics = metrics

    async def apply(
        self,
        session: AsyncSession,
        settlement: Settlement,
        planned: PlannedTransition,
        *,
        plan: StepPlan,
        operation: RailOperation,
        error: RailError | None = None,
    ) -> None:
        await state_machine.transition(
            session,
            settlement,
            planned.event,
            actor=plan.actor,
            reason=planned.reason or (error.detail if error else None),
            data=self.event_data(planned, operation, error),
            values=self.values(settlement, planned, error, now=session_now(session)),
            request_id=plan.request_id,
        )
        if self.metrics is not None:
            self.metrics.transitions.labels(planned.event.value, settlement.state).inc()

    async def resolved_later(
        self,
        session: AsyncSession,
        settlement: Settlement,
        operation: RailOperation,
        plan: StepPlan,
    ) -> None:
        """A step whose caller stopped waiting for it (it answered "in flight") has been
        resolved by the reconciler (or a webhook), in ``session``'s transaction. Nothing here;
        the settlement lifecycle's applier completes the waiting request's record."""

    @staticmethod
    def event_data(
        planned: PlannedTransition, operation: RailOperation, error: RailError | None
    ) -> dict[str, Any]:
        data = {**planned.data, "rail_step": operation.step}
        if operation.external_ref:
            data["rail_reference"] = operation.external_ref
        if error is not None:
            data["code"] = error.code
        return data

    @staticmethod
    def values(
        settlement: Settlement,
        planned: PlannedTransition,
        error: RailError | None,
        *,
        now: datetime,
    ) -> dict[str, Any]:
        values: dict[str, Any] = dict(planned.values)
        if planned.event in (SettlementEventType.LOCKED, SettlementEventType.STREAM_OPENED):
            values["locked_at"] = now
        code = planned.failure_code or (error.code if error else None)
        if code:
            values["failure_code"] = code
            values["failure_detail"] = planned.failure_detail or (error.detail if error else None)
        return values


class RailStepExecutor:
    """Runs one rail step two-phase (see the module docstring for the contract)."""

    def __init__(
        self,
        session: AsyncSession,
        *,
        settings: SettlementSettings,
        metrics: Metrics,
        applier: TransitionApplier | None = None,
        rail: Rail | None = None,
        clients: RailClients | None = None,
    ) -> None:
        self.session = session
        self.settings = settings
        self.metrics = metrics
        self.applier = applier or TransitionApplier(metrics)
        self._rail = rail
        self.clients = clients  # the app's gateways, for the stripe and evm rails
        self.settlements = SettlementRepository.from_session(session)
        self.ops = RailOperationRepository.from_session(session)

    def rail_for(self, name: str) -> Rail:
        if self._rail is not None:
            return self._rail
        return get_rail(name, settings=self.settings, session=self.session, clients=self.clients)

    # ------------------------------------------------------------------ request / sweeper

    async def run(
        self, settlement: Settlement, plan: StepPlan, *, new_settlement: bool = False
    ) -> StepOutcome:
        """Record, call, resolve and transition (see the module docstring).

        ``new_settlement``: the settlement was inserted in this transaction, so it has no rail
        operations yet and there is nothing to look up."""
        state_machine.target_of(settlement, plan.on_succeeded.event)  # 409 if not due
        rail = self.rail_for(settlement.rail)
        op, fresh = await self._open(settlement, plan, rail, new_settlement=new_settlement)
        if not fresh:
            return await self._existing(settlement, op, plan)
        view = rail_view(settlement)
        if rail.transactional:
            try:
                async with self.session.begin_nested():
                    done = await self._call(rail, plan.step, view, op.idempotency_key, plan.amount)
            except RailError as exc:
                return await self._resolve(settlement, op, plan, error=exc)
            return await self._resolve(settlement, op, plan, result=done)

        # Phase 1: the pending record (and everything the caller wrote) is durable.
        await self.session.commit()
        # Phase 2: the rail call, no transaction open.
        answer, error = await self._call_external(rail, plan.step, view, op)
        if answer is None and (error is None or error.retryable):
            return await self._still_pending(settlement, op, error)
        # Phase 3: resolve and transition in a new transaction (the caller commits it).
        return await self._finish(settlement.id, op.id, result=answer, error=error)

    async def run_on_new(
        self, settlement: Settlement, plan: StepPlan, *, created: dict[str, Any]
    ) -> tuple[StepOutcome, list[SettlementEvent]] | None:
        """The lock of a settlement not written yet, in one go, when its rail can check the
        movement before anything is written (:class:`~pact_settlement.rails.base.CheckingRail`,
        the ledger): the movement is checked (its accounts row-locked); the settlement is
        inserted directly in the state the plan's success leads to, with both events
        (:func:`.state_machine.start_resolved`, ``created`` the first event's data); the
        movement is written; the operation is inserted already ``succeeded``. All in the
        caller's transaction, plain INSERTs: nothing is ever visible ``pending``, nothing is
        left for the reconciler, and a refusal has written nothing. The caller counts the
        metrics with :meth:`count_new` once the writes ran.

        ``None`` when this does not apply (an external rail, which keeps its write-ahead
        pending step; a non-checking rail; a terminal success transition, which needs the
        applier's RECEIPT) or the rail refuses: the caller then takes the general path
        (:func:`.state_machine.start`, then :meth:`run`), which records the refusal."""
        rail = self.rail_for(settlement.rail)
        planned = plan.on_succeeded
        target = state_machine.TRANSITIONS.get(
            (state_machine.SettlementState.PENDING, planned.event)
        )
        if (
            not rail.transactional
            or not isinstance(rail, CheckingRail)
            or plan.step is not RailStep.LOCK
            or target is None
            or target in state_machine.TERMINAL_STATES
        ):
            return None
        key = rail_idempotency_key(settlement.id, plan.step)
        try:
            movement = await rail.check_lock(rail_view(settlement), idempotency_key=key)
        except RailError:
            return None
        now = session_now(self.session)
        events = await state_machine.start_resolved(
            self.session,
            settlement,
            planned.event,
            actor=plan.actor,
            request_id=plan.request_id,
            data=created,
            reason=planned.reason,
            event_data={
                **planned.data,
                "rail_step": plan.step.value,
                "rail_reference": movement.reference,
            },
            values=self.applier.values(settlement, planned, None, now=now),
        )
        result = await movement.write()
        op = await self.ops.insert_resolved(
            settlement_id=settlement.id,
            rail=settlement.rail,
            step=plan.step,
            amount=plan.amount if plan.amount is not None else settlement.amount,
            bond=settlement.bond_locked,
            plan=plan.to_json(),
            reference=result.reference,
        )
        return StepOutcome(StepStatus.SUCCEEDED, op, result=result, applied=True), events

    def count_new(self, settlement: Settlement, plan: StepPlan, outcome: StepOutcome) -> None:
        """The metrics of a :meth:`run_on_new` lock, counted by the caller once its batched
        write ran: a write that fails (a duplicate intent) moved nothing and counts nothing."""
        op = outcome.operation
        self.metrics.rail_operations.labels(op.rail, op.step, "succeeded").inc()
        self.metrics.transitions.labels(plan.on_succeeded.event.value, settlement.state).inc()

    async def _open(
        self, settlement: Settlement, plan: StepPlan, rail: Rail, *, new_settlement: bool
    ) -> tuple[RailOperation, bool]:
        ops = [] if new_settlement else await self.ops.for_settlement(settlement.id)
        busy = [o for o in ops if o.status == RailOpStatus.PENDING and o.step != plan.step.value]
        if busy:
            raise StepInFlightError(
                f"settlement {settlement.intent_id}: rail step {busy[0].step!r} is still in "
                "flight; retry once it has resolved",
                extra={"state": settlement.state},
            )
        lease = session_now(self.session) + timedelta(seconds=self.settings.reconcile_grace_s)
        lease_until = None if rail.transactional else lease
        same = next((o for o in ops if o.step == plan.step.value), None)
        if same is None:
            op = await self.ops.begin(
                settlement_id=settlement.id,
                rail=settlement.rail,
                step=plan.step,
                amount=plan.amount if plan.amount is not None else settlement.amount,
                bond=settlement.bond_locked,
                plan=plan.to_json(),
                lease_until=lease_until,
            )
            return op, True
        if same.status == RailOpStatus.FAILED and plan.on_failed is None:
            if same.attempts >= self.settings.rail_max_attempts:
                raise StepExhaustedError(
                    f"settlement {settlement.intent_id}: rail step {same.step!r} failed "
                    f"{same.attempts} times (last: {same.error_code}: {same.error_detail})",
                    extra={"state": settlement.state},
                )
            await self.ops.reopen(same, plan=plan.to_json(), lease_until=lease_until)
            return same, True
        return same, False

    async def _existing(
        self, settlement: Settlement, op: RailOperation, plan: StepPlan
    ) -> StepOutcome:
        if op.status == RailOpStatus.PENDING:
            return StepOutcome(StepStatus.IN_FLIGHT, op)
        stored = StepPlan.from_json(op.plan) if op.plan else plan
        if op.status == RailOpStatus.SUCCEEDED:
            applied = await self._apply(settlement, op, stored, stored.on_succeeded, None)
            return StepOutcome(StepStatus.SUCCEEDED, op, applied=applied)
        error = RailError(op.error_code or FailureCode.FAILED_ESCROW, op.error_detail or "")
        applied = False
        if stored.on_failed is not None:
            applied = await self._apply(settlement, op, stored, stored.on_failed, error)
        return StepOutcome(StepStatus.FAILED, op, error=error, applied=applied)

    @staticmethod
    async def _call(
        rail: Rail,
        step: RailStep,
        view: RailSettlement,
        idempotency_key: str,
        amount: Decimal | None = None,
    ) -> RailResult:
        if step is RailStep.RELEASE_PARTIAL:
            if not isinstance(rail, PartialReleaseRail) or amount is None:
                raise RailError(
                    FailureCode.SETTLEMENT_MODE_NOT_ALLOWED,
                    f"rail {rail.name!r} cannot release part of a settlement",
                )
            return await rail.release_partial(view, amount, idempotency_key)
        method = getattr(rail, step.value)
        result: RailResult = await method(view, idempotency_key=idempotency_key)
        return result

    async def _call_external(
        self, rail: Rail, step: RailStep, view: RailSettlement, op: RailOperation
    ) -> tuple[RailResult | None, RailError | None]:
        """``(result, None)``, ``(None, definite or retryable error)``, or ``(None, None)``
        when the outcome is unknown (timeout, crash of the call, unexpected exception).

        Bounded by ``RAIL_CALL_TIMEOUT_S`` and, inside a request, by what is left of the
        request's budget (``REQUEST_TIMEOUT_S``, less the reserve for recording the outcome):
        the request then answers with the step in flight rather than running out of time."""
        limit = self.settings.rail_call_timeout_s
        left = time_left(for_rail_call=True)
        if left is not None:
            limit = min(limit, left)
        try:
            async with asyncio.timeout(limit):
                planned = StepPlan.from_json(op.plan) if op.plan else None
                amount = planned.amount if planned is not None else None
                result = await self._call(rail, step, view, op.idempotency_key, amount)
        except RailError as exc:
            return None, exc
        except Exception as exc:  # the call may or may not have happened
            log.warning(
                "rail_step.outcome_unknown",
                settlement_id=op.settlement_id,
                step=op.step,
                rail=op.rail,
                error_type=type(exc).__name__,
                error=str(exc)[:300],
            )
            return None, None
        if result.status == RailOpStatus.PENDING:
            return None, None  # accepted by the rail, not final yet (e.g. unconfirmed tx)
        if result.status != RailOpStatus.SUCCEEDED:
            detail = str(result.detail.get("detail") or f"rail answered {result.status}")
            code = str(result.detail.get("code") or FailureCode.FAILED_ESCROW)
            return None, RailError(code, detail)
        return result, None

    async def _still_pending(
        self, settlement: Settlement, op: RailOperation, error: RailError | None
    ) -> StepOutcome:
        self.metrics.rail_operations.labels(op.rail, op.step, "pending").inc()
        log.info(
            "rail_step.in_flight",
            settlement_id=settlement.id,
            intent_id=settlement.intent_id,
            step=op.step,
            rail=op.rail,
            code=error.code if error else None,
        )
        return StepOutcome(StepStatus.IN_FLIGHT, op, error=error)

    async def _finish(
        self,
        settlement_id: str,
        op_id: str,
        *,
        result: RailResult | None,
        error: RailError | None,
    ) -> StepOutcome:
        settlement = await self.settlements.get_by_id(settlement_id, for_update=True)
        op = await self.ops.get_for_update(op_id)
        assert settlement is not None
        assert op is not None
        plan = StepPlan.from_json(op.plan) if op.plan else None
        if plan is None:
            raise RuntimeError(f"rail operation {op.id} has no plan; cannot finish it")
        if op.status != RailOpStatus.PENDING:  # resolved meanwhile (by the reconciler)
            return await self._existing(settlement, op, plan)
        return await self._resolve(settlement, op, plan, result=result, error=error)

    async def _resolve(
        self,
        settlement: Settlement,
        op: RailOperation,
        plan: StepPlan,
        *,
        result: RailResult | None = None,
        error: RailError | None = None,
    ) -> StepOutcome:
        if result is not None:
            await self.ops.resolve(op, RailOpStatus.SUCCEEDED, reference=result.reference)
            self.metrics.rail_operations.labels(op.rail, op.step, "succeeded").inc()
            applied = await self._apply(settlement, op, plan, plan.on_succeeded, None)
            return StepOutcome(StepStatus.SUCCEEDED, op, result=result, applied=applied)
        assert error is not None
        retry_at = None
        if plan.on_failed is None:  # re-opened by a later run: not before its pause is over
            pause = timedelta(seconds=self.settings.sweep_interval_s)
            retry_at = session_now(self.session) + min(
                pause * 2 ** max(0, op.attempts - 1), MAX_BACKOFF
            )
        await self.ops.resolve(
            op,
            RailOpStatus.FAILED,
            error_code=error.code,
            error_detail=error.detail,
            retry_at=retry_at,
        )
        self.metrics.rail_operations.labels(op.rail, op.step, "failed").inc()
        log.warning(
            "rail_step.failed",
            settlement_id=settlement.id,
            intent_id=settlement.intent_id,
            step=op.step,
            rail=op.rail,
            code=error.code,
            detail=error.detail,
            attempts=op.attempts,
            retry_at=retry_at.isoformat() if retry_at else None,
        )
        if retry_at is not None and op.attempts >= self.settings.rail_max_attempts:
            log.error(
                "rail_step.exhausted",
                settlement_id=settlement.id,
                intent_id=settlement.intent_id,
                step=op.step,
                rail=op.rail,
                attempts=op.attempts,
                detail="left to an operator: the sweeper no longer retries this step",
            )
        applied = False
        if plan.on_failed is not None:
            applied = await self._apply(settlement, op, plan, plan.on_failed, error)
        return StepOutcome(StepStatus.FAILED, op, error=error, applied=applied)

    async def _apply(
        self,
        settlement: Settlement,
        op: RailOperation,
        plan: StepPlan,
        planned: PlannedTransition,
        error: RailError | None,
    ) -> bool:
        if not state_machine.check(settlement, planned.event):
            log.info(
                "rail_step.transition_not_due",
                settlement_id=settlement.id,
                state=settlement.state,
                planned_event=planned.event.value,
            )
            return False
        await self.applier.apply(
            self.session, settlement, planned, plan=plan, operation=op, error=error
        )
        return True

    # ----------------------------------------------------------------------- reconciler

    async def reconcile(self, op_id: str) -> StepOutcome:
        """Resolve one pending operation the reconciler has claimed (its claim committed).

        Asks the rail's own records (``status``) outside any transaction; ``not_found`` →
        the step is re-issued with the same key (until ``RAIL_MAX_ATTEMPTS``); then resolves
        and transitions in a new transaction, which the caller commits — together with what
        :meth:`TransitionApplier.resolved_later` writes once the step is resolved.
        """
        outcome = await self._reconcile(op_id)
        op = outcome.operation
        if outcome.status is not StepStatus.IN_FLIGHT and op.plan:
            settlement = await self.settlements.get_by_id(op.settlement_id)
            assert settlement is not None
            await self.applier.resolved_later(
                self.session, settlement, op, StepPlan.from_json(op.plan)
            )
        return outcome

    async def _reconcile(self, op_id: str) -> StepOutcome:
        op = await self.ops.get(op_id)
        settlement = await self.settlements.get_by_id(op.settlement_id) if op else None
        if op is None or settlement is None:
            raise LookupError(f"rail operation {op_id} not found")
        if op.status != RailOpStatus.PENDING or not op.plan:
            known = StepStatus.IN_FLIGHT if op.status == "pending" else StepStatus(op.status)
            return StepOutcome(known, op)
        rail = self.rail_for(op.rail)
        step = RailStep(op.step)
        view = rail_view(settlement)
        attempts = op.attempts
        if rail.transactional:
            # Its movement and resolution are one transaction: a pending row is a leftover
            # whose movement either committed with it (status says so) or never happened.
            report = await rail.status(view, idempotency_key=op.idempotency_key)
            if report.status == RailOpStatus.SUCCEEDED:
                return await self._finish(settlement.id, op.id, result=report, error=None)
            try:
                async with self.session.begin_nested():
                    done = await self._call(
                        rail, step, view, op.idempotency_key, StepPlan.from_json(op.plan).amount
                    )
            except RailError as exc:
                return await self._finish(settlement.id, op.id, result=None, error=exc)
            return await self._finish(settlement.id, op.id, result=done, error=None)

        await self.session.commit()  # no transaction open while the rail is asked
        result: RailResult | None = None
        error: RailError | None = None
        try:
            async with asyncio.timeout(self.settings.rail_call_timeout_s):
                report = await rail.status(view, idempotency_key=op.idempotency_key)
        except Exception as exc:
            log.warning(
                "reconciler.status_unavailable",
                operation_id=op.id,
                step=op.step,
                rail=op.rail,
                error_type=type(exc).__name__,
                error=str(exc)[:300],
            )
            return await self._back_off(op.id, attempts, "status unavailable")
        if report.status == RailOpStatus.SUCCEEDED:
            result = report
        elif report.status == RailOpStatus.FAILED:
            error = RailError(
                str(report.detail.get("code") or FailureCode.FAILED_ESCROW),
                str(report.detail.get("detail") or "the rail reports the step failed"),
            )
        elif report.status == RailOpStatus.PENDING:
            return await self._back_off(op.id, attempts, "the rail reports it pending")
        else:  # NOT_FOUND: the call never reached the rail; re-issue it with the same key
            if attempts > self.settings.rail_max_attempts:
                log.error(
                    "reconciler.operation_stuck",
                    operation_id=op.id,
                    settlement_id=op.settlement_id,
                    step=op.step,
                    rail=op.rail,
                    attempts=attempts,
                )
                return await self._back_off(op.id, attempts, "attempts exhausted")
            result, error = await self._call_external(rail, step, view, op)
            if result is None and (error is None or error.retryable):
                return await self._back_off(
                    op.id, attempts, error.detail if error else "outcome unknown"
                )
        return await self._finish(settlement.id, op.id, result=result, error=error)

    async def _back_off(self, op_id: str, attempts: int, why: str) -> StepOutcome:
        op = await self.ops.get_for_update(op_id)
        assert op is not None
        if op.status == RailOpStatus.PENDING:
            base = timedelta(seconds=self.settings.reconcile_interval_s)
            delay = min(base * (2 ** max(0, attempts - 1)), MAX_BACKOFF)
            await self.ops.note_attempt(
                op,
                lease_until=session_now(self.session) + delay,
                error_code=op.error_code,
                error_detail=why,
            )
        return StepOutcome(StepStatus.IN_FLIGHT, op)
